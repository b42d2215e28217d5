// The header of a model whose weights are made on the GPU (engine/synthetic_model.h): the preset's
// hyperparameters, the real tokenizer, labels, and an identity that depends on preset, types and
// seed. The weights themselves need a GPU (tests/backend/cuda/synthetic_weights_test.cc).
#include "engine/synthetic_model.h"

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "gguf/gguf_reader.h"
#include "model/model_config.h"
#include "model/model_presets.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::engine {
namespace {

TEST(SyntheticModel, HeaderCarriesThePresetTheTokenizerAndTheLabels) {
  const std::vector<uint8_t> image = synthetic_model_header("flash", synth::QuantMix::kQ2, 42);
  const gguf::GgufFile file = gguf::GgufFile::parse(image, "synthetic flash");
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(model::ModelConfig::from_metadata(file.metadata()), model::flash_config());
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(file);
  EXPECT_EQ(tok.vocab_size(), model::flash_config().n_vocab);
  EXPECT_EQ(tok.decode(tok.encode("Hello, world!")), "Hello, world!");
  EXPECT_TRUE(file.metadata().find("magnetar.synthetic")->as_bool().value_or(false));
  EXPECT_EQ(*file.metadata().find("magnetar.synthetic.preset")->as_string(), "flash");
  EXPECT_EQ(*file.metadata().find("magnetar.synthetic.quant_mix")->as_string(), "q2");
}

TEST(SyntheticModel, HeaderDependsOnPresetTypesAndSeedAlone) {
  const auto header = [](const char* preset, synth::QuantMix mix, uint64_t seed) {
    return synthetic_model_header(preset, mix, seed);
  };
  EXPECT_EQ(header("tiny", synth::QuantMix::kQ2, 1), header("tiny", synth::QuantMix::kQ2, 1));
  EXPECT_NE(header("tiny", synth::QuantMix::kQ2, 1), header("tiny", synth::QuantMix::kQ2, 2));
  EXPECT_NE(header("tiny", synth::QuantMix::kQ2, 1), header("tiny", synth::QuantMix::kQ4, 1));
  EXPECT_NE(header("tiny", synth::QuantMix::kQ2, 1), header("pro", synth::QuantMix::kQ2, 1));
  EXPECT_THROW(header("huge", synth::QuantMix::kQ2, 1), std::invalid_argument);
}

TEST(SyntheticModel, EngineRefusesBadSyntheticOptionsClearly) {
  EngineOptions o;
  o.synthetic = "tiny";
  o.backend = "cpu";
  try {
    Engine engine(o);
    FAIL() << "synthetic weights on the CPU were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA backend"), std::string::npos) << e.what();
  }
  o.synthetic_types = "q3";
  EXPECT_THROW(Engine{o}, std::invalid_argument);
  o.synthetic_types = "q2";
  o.model = "some.gguf";
  EXPECT_THROW(Engine{o}, std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::engine
