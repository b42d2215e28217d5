// The `magnetar` binary as a user runs it: exit codes, one-line errors, no crashes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gguf/gguf_writer.h"
#include "gguf_corpus.h"
#include "run_magnetar.h"
#include "scratch_dir.h"
#include "synth/synth_writer.h"

namespace magnetar {
namespace {

namespace fs = std::filesystem;

using RunResult = testing::CommandResult;

RunResult run(const std::vector<std::string>& args) { return testing::run_magnetar(args); }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

fs::path scratch(const std::string& name) { return testing::scratch_dir("cli") / name; }

size_t lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RunResult r = run({"synth", "--preset", "tiny", "-o", tiny().string()});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { fs::remove(tiny()); }
  static fs::path tiny() { return scratch("tiny.gguf"); }
};

TEST_F(Cli, SynthThenInspectSucceeds) {
  RunResult r = run({"inspect", tiny().string()});
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("validation    OK"), std::string::npos);
  EXPECT_NE(r.out.find("RANDOM WEIGHTS"), std::string::npos);
  EXPECT_NE(r.out.find("blk.3.ffn_down_exps.weight"), std::string::npos);
}

TEST_F(Cli, InspectJson) {
  RunResult r = run({"inspect", "--json", tiny().string()});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["synthetic"], true);
  EXPECT_EQ(j["config"]["n_layer"], 4);
  EXPECT_EQ(j["tokenizer"]["special"]["think"], 128821);
  EXPECT_EQ(j["tokenizer"]["special"]["dsml"], 128825);
  EXPECT_EQ(j["tensors"].size(), j["total_tensors"].get<size_t>());
  EXPECT_TRUE(j["problems"].empty());
  EXPECT_EQ(j["has_mtp"], true) << "the tiny preset carries the MTP block";
}

// `logits` writes a NumPy file whose header names the shape; bad token ids are one-line errors.
TEST_F(Cli, LogitsWritesNpy) {
  fs::path out = scratch("logits.npy");
  RunResult r = run({"logits", "-m", tiny().string(), "--tokens", "1,2,3", "--all-positions",
                     "--mtp", "-o", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string npy = slurp(out);
  ASSERT_GT(npy.size(), 128u);
  EXPECT_EQ(npy.substr(0, 6), "\x93NUMPY");
  EXPECT_NE(npy.find("'shape': (2, 3, 129280)"), std::string::npos);
  uint16_t header_len = static_cast<uint8_t>(npy[8]) | static_cast<uint8_t>(npy[9]) << 8;
  EXPECT_EQ((10 + header_len) % 64, 0);
  EXPECT_EQ(npy.size(), 10 + header_len + 2 * 3 * 129280 * sizeof(float));
  // Any backend through the same interface: the CPU's by name gives the same file.
  fs::path by_name = scratch("logits-cpu.npy");
  r = run({"logits", "-m", tiny().string(), "--tokens", "1,2,3", "--all-positions", "--mtp",
           "--backend", "cpu", "-o", by_name.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(by_name), npy);
  r = run({"logits", "-m", tiny().string(), "--tokens", "1,999999", "-o", out.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("outside the vocabulary"), std::string::npos) << r.err;
  r = run({"logits", "-m", tiny().string(), "--tokens", "1,x", "-o", out.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("'x' is not a token id"), std::string::npos) << r.err;
}

TEST(CliDryRun, ReportsThePublishedSizes) {
  RunResult q2 = run({"synth", "--preset", "v4-flash-q2", "--dry-run"});
  ASSERT_EQ(q2.code, 0) << q2.err;
  EXPECT_NE(q2.out.find("tensors 1328, tensor bytes 86,714,775,900 (80.76 GiB)"), std::string::npos)
      << q2.out.substr(q2.out.size() - 400);
  RunResult q4 = run({"synth", "--preset", "v4-flash-q4", "--dry-run"});
  ASSERT_EQ(q4.code, 0) << q4.err;
  EXPECT_NE(q4.out.find("tensors 1328, tensor bytes 164,628,167,004 (153.32 GiB)"),
            std::string::npos);
}

TEST(CliErrors, EveryCorruptFileGivesOneLineAndExitCode2) {
  for (const testing::CorruptCase& c : testing::corrupt_cases(/*all_truncations=*/false)) {
    SCOPED_TRACE(c.name);
    fs::path p = scratch(c.name + ".gguf");
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(c.bytes.data()), static_cast<long>(c.bytes.size()));
    RunResult r = run({"inspect", p.string()});
    EXPECT_TRUE(r.exited) << "killed by a signal";
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("magnetar inspect: error: " + p.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    fs::remove(p);
  }
}

TEST(CliErrors, BadArgumentsAndMissingFiles) {
  RunResult r = run({"inspect", "/nonexistent.gguf"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  r = run({"synth", "--preset", "nope", "--dry-run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown preset 'nope'"), std::string::npos) << r.err;
  r = run({"synth", "--preset", "tiny", "--o-groups", "3", "--dry-run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("must divide head_count"), std::string::npos) << r.err;
  r = run({"synth", "--preset", "tiny", "-o", "/nonexistent-dir/x.gguf"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  r = run({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  for (const char* command : {"run", "chat", "serve"}) {
    r = run({command, "-m", "/dev/null", "--gpu-mem", "0"});
    EXPECT_EQ(r.code, 2) << command;
    EXPECT_NE(r.err.find("--gpu-mem"), std::string::npos) << command << ": " << r.err;
  }
}

// A readable GGUF that is not a valid V4 model: exit 1 and the problem named.
TEST(CliErrors, InvalidLayoutExitsWithOne) {
  synth::SynthOptions o;
  o.preset = *synth::preset_by_name("tiny");
  synth::SynthPlan plan =
      synth::plan_synthetic_model(o, synth::load_deepseek_v4_vocab(synth::find_tokenizer_dir()));
  plan.specs.erase(plan.specs.begin() + 3);  // drop one tensor of layer 0
  std::string dropped = plan.tensors[3].name;
  fs::path p = scratch("missing-tensor.gguf");
  {
    gguf::GgufWriter w(p, plan.metadata, plan.specs);
    for (size_t i = 0; i < w.tensors().size(); ++i) {
      w.write(i, 0, std::vector<uint8_t>(w.tensors()[i].size, 0));
    }
    w.commit();
  }
  RunResult r = run({"inspect", "--no-tensors", p.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("missing: " + dropped), std::string::npos) << r.out;
  fs::remove(p);
}

}  // namespace
}  // namespace magnetar
