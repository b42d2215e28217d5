// ModelConfig: metadata round trips, ds4's key types, derived sizes and precise errors. Expected
// numbers come from shared/spec (model.md §1, gguf.md §2.2), not from the code under test.
#include "model/model_config.h"

#include <gtest/gtest.h>

#include "model/model_presets.h"

namespace magnetar::model {
namespace {

using gguf::GgufMetadata;
using gguf::GgufType;
using gguf::GgufValue;

GgufMetadata metadata_of(const ModelConfig& c) {
  GgufMetadata m;
  c.to_metadata(m);
  return m;
}

std::string error_of(const GgufMetadata& m) {
  try {
    ModelConfig::from_metadata(m);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, PresetsRoundTripThroughMetadata) {
  for (const char* name : {"flash", "pro", "tiny"}) {
    SCOPED_TRACE(name);
    ModelConfig c = *config_by_name(name);
    EXPECT_EQ(ModelConfig::from_metadata(metadata_of(c)), c);
  }
}

TEST(ModelConfig, WritesDs4KeyTypes) {
  GgufMetadata m = metadata_of(flash_config());
  EXPECT_EQ(m.find("deepseek4.block_count")->type(), GgufType::kUint32);
  EXPECT_EQ(m.find("deepseek4.expert_weights_scale")->type(), GgufType::kFloat32);
  EXPECT_EQ(m.find("deepseek4.expert_weights_norm")->type(), GgufType::kBool);
  const GgufValue* ratios = m.find("deepseek4.attention.compress_ratios");
  EXPECT_EQ(ratios->element_type(), GgufType::kInt32);
  EXPECT_EQ(ratios->array_size(), 44u) << "43 layers + the MTP entry";
  const GgufValue* clamp = m.find("deepseek4.swiglu_clamp_exp");
  EXPECT_EQ(clamp->element_type(), GgufType::kFloat32);
  EXPECT_EQ(clamp->array_size(), 43u);
  EXPECT_EQ(*m.get_string("general.architecture"), "deepseek4");
}

TEST(ModelConfig, FlashDerivedSizesMatchTheSpec) {
  ModelConfig c = flash_config();
  EXPECT_EQ(c.hc_mix(), 24u);
  EXPECT_EQ(c.hc_dim(), 16384u);
  EXPECT_EQ(c.q_dim(), 32768u);
  EXPECT_EQ(c.o_group_in(), 4096u);
  EXPECT_EQ(c.o_low_rank(), 8192u);
  EXPECT_EQ(c.compressor_width(2), 1024u);
  EXPECT_EQ(c.compressor_width(3), 512u);
  EXPECT_EQ(c.indexer_q_dim(), 8192u);
  EXPECT_EQ(c.indexer_compressor_width(), 256u);
}

TEST(ModelConfig, LayerSchedules) {
  auto count = [](const ModelConfig& c, uint32_t ratio) {
    int n = 0;
    for (uint32_t l = 0; l < c.n_layer; ++l) n += c.ratio(l) == ratio;
    return n;
  };
  ModelConfig flash = flash_config();
  EXPECT_EQ(count(flash, 0), 2);
  EXPECT_EQ(count(flash, 4), 21);
  EXPECT_EQ(count(flash, 128), 20);
  EXPECT_EQ(flash.ratio(42), 4u) << "the last Flash layer is ratio 4";
  EXPECT_TRUE(flash.is_hash_layer(2));
  EXPECT_FALSE(flash.is_hash_layer(3));
  ModelConfig pro = pro_config();
  EXPECT_EQ(count(pro, 0), 0);
  EXPECT_EQ(count(pro, 4), 30);
  EXPECT_EQ(count(pro, 128), 31);
  ModelConfig tiny = tiny_config();
  EXPECT_EQ(count(tiny, 0), 1);
  EXPECT_GE(count(tiny, 4), 1);
  EXPECT_GE(count(tiny, 128), 1);
  EXPECT_GE(tiny.indexer_heads, 16u);
  EXPECT_LT(tiny.n_hash_layers, tiny.n_layer);
}

TEST(ModelConfig, AcceptsOtherConvertersTypes) {
  GgufMetadata m = metadata_of(flash_config());
  m.set("deepseek4.block_count", GgufValue::i32(43));
  m.set("deepseek4.rope.scaling.original_context_length", GgufValue::u64(65536));
  m.set("deepseek4.rope.freq_base", GgufValue::f64(10000.0));
  m.set("deepseek4.attention.compress_ratios",
        GgufValue::u32_array(flash_config().compress_ratios));
  m.set("deepseek4.expert_group_count", GgufValue::u32(0));
  EXPECT_EQ(ModelConfig::from_metadata(m), flash_config());
}

TEST(ModelConfig, ErrorsNameTheKey) {
  GgufMetadata m = metadata_of(flash_config());
  m.erase("deepseek4.attention.q_lora_rank");
  EXPECT_EQ(error_of(m), "missing metadata key deepseek4.attention.q_lora_rank");

  m = metadata_of(flash_config());
  m.set("deepseek4.block_count", GgufValue::string("43"));
  EXPECT_NE(error_of(m).find("deepseek4.block_count must be an unsigned 32-bit integer"),
            std::string::npos);

  m = metadata_of(flash_config());
  m.set("deepseek4.embedding_length", GgufValue::i32(-1));
  EXPECT_NE(error_of(m).find("deepseek4.embedding_length"), std::string::npos);

  m = metadata_of(flash_config());
  m.set("deepseek4.attention.value_length", GgufValue::u32(256));
  EXPECT_NE(error_of(m).find("must equal attention.key_length"), std::string::npos);

  m = metadata_of(flash_config());
  m.set("deepseek4.expert_group_count", GgufValue::u32(8));
  EXPECT_NE(error_of(m).find("expert_group_count must be 0"), std::string::npos);

  m = metadata_of(flash_config());
  m.set("deepseek4.expert_weights_norm", GgufValue::u32(1));
  EXPECT_NE(error_of(m).find("expert_weights_norm must be a bool"), std::string::npos);

  m = metadata_of(flash_config());
  m.set("general.architecture", GgufValue::string("llama"));
  EXPECT_NE(error_of(m).find("expected \"deepseek4\""), std::string::npos);

  m = metadata_of(flash_config());
  m.set("deepseek4.swiglu_clamp_exp", GgufValue::f32_array(std::vector<float>(10, 10.0f)));
  EXPECT_NE(error_of(m).find("swiglu_clamp_exp has 10 entries"), std::string::npos);

  m = metadata_of(flash_config());
  m.set("deepseek4.rope.freq_base", GgufValue::f32(std::numeric_limits<float>::infinity()));
  EXPECT_NE(error_of(m).find("rope.freq_base must be a finite number"), std::string::npos);
}

TEST(ModelConfig, ValidateRejectsUnrunnableShapes) {
  auto invalid = [](auto mutate) {
    ModelConfig c = tiny_config();
    mutate(c);
    try {
      c.validate();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(invalid([](ModelConfig& c) { c.n_head_kv = 2; }).find("head_count_kv must be 1"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.o_groups = 3; }).find("must divide head_count"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.rope_dim = 96; }).find("multiple of 64"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.compress_ratios[1] = 1; }).find("must be 0 or >= 2"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.compress_ratios.resize(2); }).find("entries"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.indexer_head_dim = 96; }).find("power of two"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.n_expert_used = 9; }).find("expert_used_count"),
            std::string::npos);
  EXPECT_NE(invalid([](ModelConfig& c) { c.compress_ratios[4] = 4; }).find("MTP"),
            std::string::npos);
  EXPECT_EQ(invalid([](ModelConfig&) {}), "");
}

}  // namespace
}  // namespace magnetar::model
