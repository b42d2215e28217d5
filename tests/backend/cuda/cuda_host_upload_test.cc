// The staging pipeline of host-to-device copies (host_upload.h): every byte of every destination
// is read back and compared, for sizes around the staging buffer's (0, 1, 17, one buffer exactly,
// 2.5 buffers, ...), for many small copies interleaved with big ones (several copies share a
// buffer, buffers are reused while others are in flight), from ordinary and from mmap'ed memory,
// with the source overwritten as soon as copy() returns; the fallbacks (no staging, a pinned
// allocation that fails) and the weight upload of the tiny model through it. Needs a CUDA GPU
// except for the staging sizes.
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/host_upload.h"
#include "gguf/gguf_reader.h"
#include "logit_agreement.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "scratch_dir.h"

namespace magnetar::gpu {
namespace {

#define REQUIRE_GPU() \
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device"

constexpr size_t kMiB = size_t{1} << 20;
// Small buffers keep the tests fast; 4 MiB pieces are still split among the threads (uneven
// slices with 3 threads), while pieces under 1 MiB are copied by the calling thread alone.
const HostUploadOptions kSmall{.staging_bytes = 4 * kMiB, .buffers = 3, .threads = 3};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Uploads slices of `source` of the given sizes, back to back from an odd offset, into arrays of
// their own (garbage written over each slice right after copy() returns, when `clobber`), and
// checks every byte after finish().
void upload_and_check(HostUpload& up, uint8_t* source, const std::vector<size_t>& sizes,
                      bool clobber) {
  std::vector<uint8_t> expected;
  std::vector<DeviceArray<uint8_t>> arrays;
  size_t offset = 3;
  for (size_t n : sizes) {
    arrays.emplace_back(n);
    expected.insert(expected.end(), source + offset, source + offset + n);
    up.copy(arrays.back().data(), source + offset, n);
    if (clobber) std::fill(source + offset, source + offset + n, uint8_t{0xA5});
    offset += n;
  }
  up.finish();
  size_t at = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<uint8_t> back = arrays[i].download();
    ASSERT_EQ(back.size(), sizes[i]);
    for (size_t j = 0; j < back.size(); ++j) {
      ASSERT_EQ(back[j], expected[at + j])
          << "copy " << i << " of " << sizes[i] << " bytes, byte " << j;
    }
    at += sizes[i];
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// Sizes around the staging buffer's, then many small copies between big ones.
std::vector<size_t> edge_sizes(size_t staging) {
  return {0, 1, 17, staging, staging * 5 / 2, staging - 1, staging + 1, 0, 4095, 2 * staging};
}
std::vector<size_t> mixed_sizes(size_t staging, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<size_t> sizes;
  for (int i = 0; i < 300; ++i) {
    sizes.push_back(rng() % 5000);  // norms, biases, tables
    if (i % 25 == 0) sizes.push_back(staging / 2 + rng() % (3 * staging));
  }
  return sizes;
}
size_t sum(const std::vector<size_t>& v) {
  size_t s = 0;
  for (size_t x : v) s += x;
  return s;
}

TEST(HostUploadStaging, SizedByTheTotal) {
  EXPECT_EQ(staging_for(0).buffers, 0);
  EXPECT_EQ(staging_for(1).buffers, 4);
  EXPECT_EQ(staging_for(1).staging_bytes, kMiB);  // a tiny model pins 4 MiB, not 256
  EXPECT_EQ(staging_for(10 * kMiB).staging_bytes, 3 * kMiB);
  EXPECT_EQ(staging_for(size_t{81} << 30).staging_bytes, 64 * kMiB);
  for (size_t total : {size_t{1}, 5 * kMiB, 200 * kMiB}) {
    const HostUploadOptions o = staging_for(total);
    EXPECT_GE(o.staging_bytes * o.buffers, total) << total;  // up to 256 MiB: in one round
  }
}

TEST(HostUpload, EdgeSizesFromOrdinaryMemory) {
  REQUIRE_GPU();
  const std::vector<size_t> sizes = edge_sizes(kSmall.staging_bytes);
  std::vector<uint8_t> source = random_bytes(sum(sizes) + 8, 1);
  HostUpload up(kSmall);
  ASSERT_TRUE(up.staged());
  upload_and_check(up, source.data(), sizes, /*clobber=*/true);
}

TEST(HostUpload, SmallCopiesBetweenBigOnesFromOrdinaryMemory) {
  REQUIRE_GPU();
  const std::vector<size_t> sizes = mixed_sizes(kSmall.staging_bytes, 2);
  std::vector<uint8_t> source = random_bytes(sum(sizes) + 8, 3);
  HostUpload up(kSmall);
  upload_and_check(up, source.data(), sizes, /*clobber=*/true);
}

// The weights' case: the source is a read-only shared mapping of a file.
TEST(HostUpload, FromAMappedFile) {
  REQUIRE_GPU();
  std::vector<size_t> sizes = edge_sizes(kSmall.staging_bytes);
  const std::vector<size_t> mixed = mixed_sizes(kSmall.staging_bytes, 4);
  sizes.insert(sizes.end(), mixed.begin(), mixed.end());
  const std::vector<uint8_t> content = random_bytes(sum(sizes) + 8, 5);
  const std::filesystem::path path = testing::scratch_dir("host_upload") / "source.bin";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()), std::streamsize(content.size()));
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* map = ::mmap(nullptr, content.size(), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(map, MAP_FAILED);
  HostUpload up(kSmall);
  upload_and_check(up, static_cast<uint8_t*>(map), sizes, /*clobber=*/false);
  ::munmap(map, content.size());
}

// One pipeline serves several uploads (buffers left half full and in flight by the previous one),
// with the default thread count, and is destroyed cleanly, also with a copy still unfinished,
// which the destructor lets land before it frees the staging buffers.
TEST(HostUpload, ReusedAndDestroyed) {
  REQUIRE_GPU();
  const HostUploadOptions options = staging_for(12 * kMiB);  // 4 buffers of 4 MiB
  DeviceArray<uint8_t> pending(10 * kMiB + 5);
  const std::vector<uint8_t> last = random_bytes(pending.size(), 20);
  {
    HostUpload up(options);
    for (uint32_t round = 0; round < 3; ++round) {
      const std::vector<size_t> sizes = round == 1 ? edge_sizes(options.staging_bytes)
                                                   : mixed_sizes(options.staging_bytes, round);
      std::vector<uint8_t> source = random_bytes(sum(sizes) + 8, 10 + round);
      upload_and_check(up, source.data(), sizes, /*clobber=*/true);
    }
    up.copy(pending.data(), last.data(), last.size());
  }
  EXPECT_TRUE(pending.download() == last);  // not EXPECT_EQ: 10 MiB in a failure message
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// Without staging buffers, or when they cannot be pinned, copies are plain and still right, and
// the failed allocation leaves no error behind for later checks.
TEST(HostUpload, FallsBackToPlainCopies) {
  REQUIRE_GPU();
  const std::vector<size_t> sizes = edge_sizes(kSmall.staging_bytes);
  std::vector<uint8_t> source = random_bytes(sum(sizes) + 8, 6);
  HostUpload none(HostUploadOptions{.buffers = 0});
  EXPECT_FALSE(none.staged());
  upload_and_check(none, source.data(), sizes, /*clobber=*/true);

  source = random_bytes(sum(sizes) + 8, 7);
  HostUpload unpinnable(HostUploadOptions{.staging_bytes = size_t{1} << 46, .buffers = 2});
  EXPECT_FALSE(unpinnable.staged());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  upload_and_check(unpinnable, source.data(), sizes, /*clobber=*/true);
}

// The tiny model's weights through upload_weights: device bytes equal the file's, the stats
// count every copied byte.
TEST(HostUpload, TinyModelWeights) {
  REQUIRE_GPU();
  const gguf::GgufFile file = gguf::GgufFile::open(tiny_model_path("q2"));
  const model::ModelConfig config = model::ModelConfig::from_metadata(file.metadata());
  const model::ModelWeights host = model::bind_weights(file, config);
  const DeviceModelWeights d = upload_weights(host, config, UploadOptions{.progress = false});
  EXPECT_TRUE(d.upload.staged);
  EXPECT_EQ(d.upload.bytes, weight_bytes(host, config).total);
  EXPECT_EQ(d.upload.bytes, d.device_bytes);
  EXPECT_GT(d.upload.seconds, 0);

  auto same = [](const DeviceMatrix& dm, const model::WeightMatrix& hm, const uint8_t* data) {
    const size_t n = static_cast<size_t>(hm.rows * hm.row_bytes);
    std::vector<uint8_t> back(n);
    MAGNETAR_CUDA_CHECK(cudaMemcpy(back.data(), data, n, cudaMemcpyDeviceToHost));
    EXPECT_EQ(dm.bytes(), static_cast<int64_t>(n)) << hm.name;
    return std::equal(back.begin(), back.end(), hm.data);
  };
  EXPECT_TRUE(same(d.token_embd, host.token_embd, d.token_embd.data));
  EXPECT_TRUE(same(d.output, host.output, d.output.data));
  for (size_t l = 0; l < host.layers.size(); ++l) {
    const model::BlockWeights& h = host.layers[l];
    const DeviceBlock& b = d.layers[l];
    using Pair = std::pair<const DeviceMatrix*, const model::WeightMatrix*>;
    for (auto [dm, hm] : {Pair{&b.q_a, &h.q_a}, Pair{&b.q_b, &h.q_b}, Pair{&b.kv, &h.kv},
                          Pair{&b.out_a, &h.out_a}, Pair{&b.out_b, &h.out_b},
                          Pair{&b.gate_inp, &h.gate_inp}, Pair{&b.down_shexp, &h.down_shexp}}) {
      EXPECT_TRUE(same(*dm, *hm, dm->data)) << hm->name;
    }
    std::vector<const uint8_t*> table(static_cast<size_t>(h.down_exps.experts));
    MAGNETAR_CUDA_CHECK(cudaMemcpy(table.data(), b.down_exps.table, table.size() * sizeof(void*),
                                   cudaMemcpyDeviceToHost));
    for (size_t e = 0; e < table.size(); ++e) {
      const model::WeightMatrix expert = h.down_exps.expert(static_cast<int64_t>(e));
      EXPECT_TRUE(same(b.down_exps.shape, expert, table[e])) << "layer " << l << " expert " << e;
    }
    std::vector<float> norm(h.attn_norm.size());
    MAGNETAR_CUDA_CHECK(
        cudaMemcpy(norm.data(), b.attn_norm, norm.size() * sizeof(float), cudaMemcpyDeviceToHost));
    EXPECT_EQ(norm, h.attn_norm) << "layer " << l;
  }
}

}  // namespace
}  // namespace magnetar::gpu
