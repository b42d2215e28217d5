// Embedding and row gathers (embedding.cuh).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/weight_decode.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;

template <typename Decoder>
__global__ void embed_kernel(const uint8_t* table, int64_t row_bytes, int64_t dim,
                             const int32_t* tokens, int streams, float* X, Iq2xxsTables tables) {
  const int64_t t = blockIdx.x;
  const uint8_t* row = table + static_cast<int64_t>(tokens[t]) * row_bytes;
  float* xt = X + t * streams * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    const float v = Decoder::at(row, d, tables);
    for (int h = 0; h < streams; ++h) xt[h * dim + d] = v;
  }
}

__global__ void add_to_streams_kernel(const float* v, int streams, int64_t dim, float* X) {
  const int64_t t = blockIdx.x;
  const float* vt = v + t * dim;
  float* xt = X + t * streams * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    for (int h = 0; h < streams; ++h) xt[h * dim + d] += vt[d];
  }
}

__global__ void gather_kernel(const float* src, const int32_t* rows, int64_t width, float* dst) {
  const float* s = src + static_cast<int64_t>(rows[blockIdx.x]) * width;
  float* d = dst + static_cast<int64_t>(blockIdx.x) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) d[i] = s[i];
}

}  // namespace

void embed_tokens_cuda(const DeviceMatrix& table, const int32_t* tokens, int64_t n_tokens,
                       int streams, float* X, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const Iq2xxsTables tables =
      table.type == quant::GgmlType::kIQ2_XXS ? iq2xxs_device_tables() : Iq2xxsTables{};
  const bool known = with_row_decoder(table.type, [&]<typename Decoder>() {
    embed_kernel<Decoder><<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(
        table.data, table.row_bytes, table.cols, tokens, streams, X, tables);
  });
  if (!known) {
    throw std::invalid_argument("embed_tokens_cuda: the embedding has type " +
                                std::string(quant::type_name(table.type)) +
                                ", which has no GPU decoder");
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void add_to_streams_cuda(const float* v, int64_t n_tokens, int streams, int64_t dim, float* X,
                         cudaStream_t stream) {
  if (n_tokens <= 0) return;
  add_to_streams_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(v, streams, dim,
                                                                                  X);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void gather_rows_cuda(const float* src, const int32_t* rows, int64_t n_rows, int64_t width,
                      float* dst, cudaStream_t stream) {
  if (n_rows <= 0) return;
  gather_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, stream>>>(src, rows, width, dst);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
