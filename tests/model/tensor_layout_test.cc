// The V4 tensor inventory and the layout check. Counts come from gguf.md §3.
#include "model/tensor_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "model/model_presets.h"

namespace magnetar::model {
namespace {

using quant::GgmlType;

// A tensor directory as ds4's q2 file would have it (types: first ds4 type of each class).
std::vector<gguf::TensorInfo> directory(const ModelConfig& c, bool mtp) {
  std::vector<gguf::TensorInfo> out;
  for (const ExpectedTensor& e : model_tensors(c, mtp)) {
    if (e.optional) continue;
    gguf::TensorInfo t;
    t.name = e.name;
    t.ne = e.ne;
    t.type = ds4_types(e.cls).front();
    out.push_back(t);
  }
  return out;
}

int count_prefix(const std::vector<ExpectedTensor>& v, const std::string& prefix) {
  return static_cast<int>(std::count_if(v.begin(), v.end(), [&](const ExpectedTensor& e) {
    return !e.optional && e.name.rfind(prefix, 0) == 0;
  }));
}

TEST(TensorLayout, FlashInventoryMatchesDs4) {
  std::vector<ExpectedTensor> t = model_tensors(flash_config(), false);
  int required =
      static_cast<int>(std::count_if(t.begin(), t.end(), [](auto& e) { return !e.optional; }));
  EXPECT_EQ(required, 1328);
  EXPECT_EQ(count_prefix(t, "blk.0."), 24);
  EXPECT_EQ(count_prefix(t, "blk.1."), 24);
  EXPECT_EQ(count_prefix(t, "blk.2."), 34);
  EXPECT_EQ(count_prefix(t, "blk.3."), 28);
  EXPECT_EQ(count_prefix(t, "blk.41."), 28);
  EXPECT_EQ(count_prefix(t, "blk.42."), 34);
  auto find = [&](const std::string& name) {
    return *std::find_if(t.begin(), t.end(), [&](auto& e) { return e.name == name; });
  };
  EXPECT_EQ(find("blk.7.ffn_down_exps.weight").ne, (std::vector<int64_t>{2048, 4096, 256}));
  EXPECT_EQ(find("blk.2.attn_output_a.weight").ne, (std::vector<int64_t>{4096, 8192}));
  EXPECT_EQ(find("blk.3.attn_compressor_ape.weight").ne, (std::vector<int64_t>{512, 128}));
  EXPECT_EQ(find("blk.4.indexer_compressor_ape.weight").ne, (std::vector<int64_t>{256, 4}));
  EXPECT_EQ(find("blk.1.ffn_gate_tid2eid.weight").ne, (std::vector<int64_t>{6, 129280}));
  EXPECT_EQ(find("blk.2.attn_compressor_norm.weight").ne, (std::vector<int64_t>{512}));
  EXPECT_EQ(find("output_hc_fn.weight").ne, (std::vector<int64_t>{16384, 4}));
}

TEST(TensorLayout, MtpBlockHas32Tensors) {
  EXPECT_EQ(mtp_tensors(flash_config()).size(), 32u);
  std::vector<ExpectedTensor> all = model_tensors(flash_config(), true);
  EXPECT_EQ(count_prefix(all, kMtpPrefix), 32);
}

TEST(TensorLayout, Ds4DirectoriesPass) {
  for (const char* name : {"flash", "pro", "tiny"}) {
    for (bool mtp : {false, true}) {
      ModelConfig c = *config_by_name(name);
      LayoutReport r = check_layout(c, directory(c, mtp));
      EXPECT_TRUE(r.ok()) << name
                          << (r.ok() ? "" : ": " + r.issues[0].tensor + " " + r.issues[0].detail);
      EXPECT_TRUE(r.ds4_types);
      EXPECT_EQ(r.has_mtp, mtp);
    }
  }
}

TEST(TensorLayout, ReportsEveryKindOfProblem) {
  ModelConfig c = tiny_config();
  std::vector<gguf::TensorInfo> dir = directory(c, true);
  auto with = [&](auto mutate) {
    std::vector<gguf::TensorInfo> d = dir;
    mutate(d);
    return check_layout(c, d);
  };
  auto named = [](std::vector<gguf::TensorInfo>& d, const std::string& name) -> gguf::TensorInfo& {
    return *std::find_if(d.begin(), d.end(), [&](auto& t) { return t.name == name; });
  };
  LayoutReport r = with([&](auto& d) {
    d.erase(
        std::find_if(d.begin(), d.end(), [](auto& t) { return t.name == "blk.1.attn_kv.weight"; }));
  });
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, LayoutIssue::Kind::kMissing);
  EXPECT_EQ(r.issues[0].tensor, "blk.1.attn_kv.weight");

  r = with([&](auto& d) { named(d, "blk.2.attn_q_b.weight").ne = {64, 511}; });
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, LayoutIssue::Kind::kShape);
  EXPECT_EQ(r.issues[0].detail, "shape [64, 511], expected [64, 512]");

  r = with([&](auto& d) { named(d, "output.weight").type = GgmlType::kQ4_0; });
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, LayoutIssue::Kind::kType);

  r = with([&](auto& d) { named(d, "blk.0.attn_norm.weight").type = GgmlType::kF16; });
  ASSERT_EQ(r.issues.size(), 1u) << "norms must be F32";

  r = with([&](auto& d) {
    gguf::TensorInfo extra;
    extra.name = "blk.9.attn_kv.weight";
    extra.ne = {4};
    d.push_back(extra);
  });
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, LayoutIssue::Kind::kExtra);

  r = with([&](auto& d) { named(d, "blk.3.ffn_up_exps.weight").type = GgmlType::kQ4_K; });
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, LayoutIssue::Kind::kPairing);

  r = with([&](auto& d) {
    d.erase(
        std::find_if(d.begin(), d.end(), [](auto& t) { return t.name == "mtp.0.e_proj.weight"; }));
  });
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_FALSE(r.has_mtp);
  EXPECT_NE(r.issues[0].detail.find("MTP block is incomplete"), std::string::npos);

  // Float32 twins are valid for Magnetar but not a ds4 type mix.
  r = with([&](auto& d) { named(d, "token_embd.weight").type = GgmlType::kF32; });
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.ds4_types);
  ASSERT_EQ(r.ds4_type_notes.size(), 1u);

  // The optional router bias of a hash layer may be present.
  r = with([&](auto& d) {
    gguf::TensorInfo bias;
    bias.name = "blk.0.exp_probs_b.bias";
    bias.ne = {static_cast<int64_t>(c.n_expert)};
    d.push_back(bias);
  });
  EXPECT_TRUE(r.ok());
}

}  // namespace
}  // namespace magnetar::model
