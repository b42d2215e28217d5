// The attention sublayer (attention.cuh); cpu attention.cc attention_chunk is the reference.
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/compressor.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/indexer.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics.cuh"
#include "backend/cuda/numerics_device.cuh"
#include "backend/cuda/sparse_attention.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 128;

// Query heads (§6.1): per-head unweighted RMSNorm, then RoPE of the last rope dims. One thread
// block per (token, head), in place.
__global__ void query_heads_kernel(float* q, const int32_t* positions, int heads, int head_dim,
                                   int rope_dims, const float* freqs, float eps) {
  const int64_t th = blockIdx.x;
  float* row = q + th * head_dim;
  cta_rms_norm(row, nullptr, head_dim, eps);
  cta_rope(row + head_dim - rope_dims, freqs, rope_dims / 2, positions[th / heads], false);
}

// The shared KV row (§6.2): RMSNorm, RoPE, then the compact row (FP8 rounding of the first
// head_dim − rope dims under the official numerics). One thread block per token.
__global__ void kv_rows_kernel(float* kv, const int32_t* positions, const float* norm, int head_dim,
                               int rope_dims, const float* freqs, float eps, RowCodec codec,
                               uint8_t* rows) {
  const int64_t t = blockIdx.x;
  float* row = kv + t * head_dim;
  cta_rms_norm(row, norm, head_dim, eps);
  cta_rope(row + head_dim - rope_dims, freqs, rope_dims / 2, positions[t], false);
  cta_encode_row(row, codec, rows + t * codec.row_bytes());
}

// Indexer queries (§6.5): RoPE, Hadamard, FP4 rounding (official). One block per (token, head).
__global__ void indexer_queries_kernel(float* q, const int32_t* positions, int heads, int dim,
                                       int rope_dims, const float* freqs, bool official) {
  const int64_t th = blockIdx.x;
  float* row = q + th * dim;
  cta_rope(row + dim - rope_dims, freqs, rope_dims / 2, positions[th / heads], false);
  cta_hadamard(row, dim);
  if (official) cta_simulate(row, dim, 32, fp4_format());
}

// ---- The fast twins (reference_order() false): the same bits, a shorter critical path. ----
//
// The reference kernels above wait for a global load per strided step, compute each RoPE pair's
// cosine and sine on one thread after the norm, and (kv rows) leave a whole FP8 block of 64 values
// to one thread. The fast ones issue every load of a thread at once, compute the RoPE table (one
// transcendental per thread) while those loads are in flight, keep the norm's sums in the same
// 128-thread order, and encode with a warp per block.

constexpr int kMaxRowPerThread = 8;                       // rows up to 1024 values
constexpr int kMaxFastRow = kThreads * kMaxRowPerThread;  // head_dim limit of the fast kernels
constexpr int kMaxFastIndexerDim = 1024;                  // one value per thread

// query_heads_kernel's results: norm in registers, RoPE from the table in shared memory.
__global__ void query_heads_fast_kernel(float* q, const int32_t* positions, int heads, int head_dim,
                                        int rope_dims, const float* freqs, float eps) {
  __shared__ float row[kMaxFastRow];
  __shared__ float trig[kMaxFastRow];
  const int64_t th = blockIdx.x;
  float* g = q + th * head_dim;
  float v[kMaxRowPerThread];
  load_strided(v, g, head_dim);
  cta_rope_table(trig, freqs, rope_dims / 2, positions[th / heads], false);
  const float r = rms_scale(v, head_dim, eps);
#pragma unroll
  for (int k = 0; k < kMaxRowPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < head_dim) row[i] = v[k] * r;
  }
  __syncthreads();
  cta_rope_from(row + head_dim - rope_dims, trig, rope_dims / 2);
  for (int i = threadIdx.x; i < head_dim; i += kThreads) g[i] = row[i];
}

// kv_rows_kernel's rows (the float row kv is left as it was: nothing reads it afterwards).
__global__ void kv_rows_fast_kernel(const float* kv, const int32_t* positions, const float* norm,
                                    int head_dim, int rope_dims, const float* freqs, float eps,
                                    RowCodec codec, uint8_t* rows) {
  __shared__ float row[kMaxFastRow];
  __shared__ float trig[kMaxFastRow];
  const int64_t t = blockIdx.x;
  float v[kMaxRowPerThread], w[kMaxRowPerThread];
  load_strided(v, kv + t * head_dim, head_dim);
  load_strided(w, norm, head_dim);
  cta_rope_table(trig, freqs, rope_dims / 2, positions[t], false);
  const float r = rms_scale(v, head_dim, eps);
#pragma unroll
  for (int k = 0; k < kMaxRowPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < head_dim) {
      const float normalized = v[k] * r;
      row[i] = w[k] * normalized;
    }
  }
  __syncthreads();
  cta_rope_from(row + head_dim - rope_dims, trig, rope_dims / 2);
  cta_encode_row_fast(row, codec, rows + t * codec.row_bytes());
}

// indexer_queries_kernel's results with one value per thread (blockDim.x = dim, a power of two
// from 32 to 1024, dim − rope_dims even): the two values of a RoPE pair sit in neighbouring lanes,
// which compute its cosine and its sine and swap them; the Hadamard transform runs in registers
// (cta_hadamard_value), and each FP4 block of 32 is one warp.
__global__ void indexer_queries_fast_kernel(float* q, const int32_t* positions, int heads, int dim,
                                            int rope_dims, const float* freqs, bool official) {
  __shared__ float exchange[2 * kMaxFastIndexerDim];
  const int64_t th = blockIdx.x;
  const int i = threadIdx.x;
  float* g = q + th * dim;
  float v = g[i];
  const int offset = i - (dim - rope_dims);  // in the rotated part from 0 to 2 · pairs
  const bool rotated = offset >= 0 && offset < rope_dims / 2 * 2;
  float own = 0.0f;  // the cosine (first of the pair) or sine (second) of the pair's angle
  if (rotated) {
    const float theta = rope_angle(freqs[offset / 2], positions[th / heads]);
    own = (offset & 1) ? rope_sin(theta, false) : cos_f32(theta);
  }
  const float partner_v = __shfl_xor_sync(0xffffffffu, v, 1);
  const float partner_trig = __shfl_xor_sync(0xffffffffu, own, 1);
  if (rotated) {
    v = (offset & 1) ? rotated_second(partner_v, v, partner_trig, own)
                     : rotated_first(v, partner_v, own, partner_trig);
  }
  v = cta_hadamard_value(v, dim, exchange);
  if (official) {
    const MinifloatFormat f = fp4_format();
    const float s = pow2_ceil(warp_max(fmaxf(f.amax_floor, fabsf(v))) * f.inv_max);
    v = round_to_format(f, v / s) * s;
  }
  g[i] = v;
}

void check_launch() { MAGNETAR_CUDA_CHECK(cudaGetLastError()); }

// Projections of a compressor for the whole batch (the chunk adds the position bias).
void compressor_projections(const DeviceCompressor& w, const float* x, int64_t n, float* kv,
                            float* score, cudaStream_t stream) {
  linear_cuda(w.kv, x, n, kv, stream);
  linear_cuda(w.gate, x, n, score, stream);
}

}  // namespace

void query_heads_cuda(float* q, const int32_t* positions, int64_t n_tokens, int heads, int head_dim,
                      int rope_dims, const float* freqs, float eps, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const unsigned grid = static_cast<unsigned>(n_tokens * heads);
  if (reference_order() || head_dim > kMaxFastRow) {
    query_heads_kernel<<<grid, kThreads, 0, stream>>>(q, positions, heads, head_dim, rope_dims,
                                                      freqs, eps);
  } else {
    query_heads_fast_kernel<<<grid, kThreads, 0, stream>>>(q, positions, heads, head_dim, rope_dims,
                                                           freqs, eps);
  }
  check_launch();
}

void kv_rows_cuda(float* kv, const int32_t* positions, int64_t n_tokens, const float* norm,
                  int head_dim, int rope_dims, const float* freqs, float eps, const RowCodec& codec,
                  uint8_t* rows, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const unsigned grid = static_cast<unsigned>(n_tokens);
  if (reference_order() || head_dim > kMaxFastRow) {
    kv_rows_kernel<<<grid, kThreads, 0, stream>>>(kv, positions, norm, head_dim, rope_dims, freqs,
                                                  eps, codec, rows);
  } else {
    kv_rows_fast_kernel<<<grid, kThreads, 0, stream>>>(kv, positions, norm, head_dim, rope_dims,
                                                       freqs, eps, codec, rows);
  }
  check_launch();
}

void indexer_queries_cuda(float* q, const int32_t* positions, int64_t n_tokens, int heads, int dim,
                          int rope_dims, const float* freqs, bool official, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const unsigned grid = static_cast<unsigned>(n_tokens * heads);
  const bool fast_shape = dim >= 32 && dim <= kMaxFastIndexerDim && (dim & (dim - 1)) == 0 &&
                          rope_dims <= dim && (dim - rope_dims) % 2 == 0;
  if (reference_order() || !fast_shape) {
    indexer_queries_kernel<<<grid, kThreads, 0, stream>>>(q, positions, heads, dim, rope_dims,
                                                          freqs, official);
  } else {
    indexer_queries_fast_kernel<<<grid, static_cast<unsigned>(dim), 0, stream>>>(
        q, positions, heads, dim, rope_dims, freqs, official);
  }
  check_launch();
}

void AttentionBuffers::reserve(const StateLayout& layout, int64_t n_tokens, int64_t item_tokens,
                               int64_t rows, int64_t index_rows) {
  const model::ModelConfig& c = layout.config;
  const size_t N = static_cast<size_t>(n_tokens), T = static_cast<size_t>(item_tokens);
  ensure_size(xq, N * c.n_embd);
  ensure_size(qr, N * c.q_lora_rank);
  ensure_size(qr_quant, N * c.q_lora_rank);
  ensure_size(q, N * c.q_dim());
  ensure_size(kv, N * c.head_dim);
  ensure_size(kv_rows, N * layout.kv.row_bytes());
  ensure_size(comp_kv, N * 2 * c.head_dim);
  ensure_size(comp_score, N * 2 * c.head_dim);
  ensure_size(index_q, N * c.indexer_q_dim());
  ensure_size(index_weights, N * c.indexer_heads);
  ensure_size(index_kv, N * 2 * c.indexer_head_dim);
  ensure_size(index_score, N * 2 * c.indexer_head_dim);
  ensure_size(index_scores, T * static_cast<size_t>(index_rows));
  ensure_size(selected, N * c.indexer_top_k);
  ensure_size(selected_count, N);
  ensure_size(probs, T * c.n_head * static_cast<size_t>(rows));
  ensure_size(o, N * c.q_dim());
  ensure_size(low, N * c.o_low_rank());
  max_rows = rows;
  max_index_rows = index_rows;
}

void attention_chunk_cuda(const AttentionContext& ctx, std::span<const AttentionItem> items,
                          const int32_t* positions, const float* x, int64_t N, float* out,
                          AttentionBuffers& b, cudaStream_t stream) {
  const model::ModelConfig& c = ctx.layout.config;
  const DeviceBlock& w = ctx.weights;
  const int64_t D = c.n_embd, H = c.n_head, hd = c.head_dim, R = c.rope_dim;
  const int64_t ql = w.q_a.rows, rb = ctx.layout.kv.row_bytes();
  if (N <= 0) return;

  // Query path (§6.1): low-rank q, its RMSNorm, heads, per-head unweighted RMSNorm, RoPE.
  const float* xq = x;
  if (ctx.official) {
    act_quant_fp8_cuda(x, N, D, b.xq.data(), stream);
    xq = b.xq.data();
  }
  linear_cuda(w.q_a, xq, N, b.qr.data(), stream);
  rms_norm_rows_cuda(b.qr.data(), w.q_a_norm, b.qr.data(), N, ql, c.rms_eps, stream);
  const float* qr_quant = b.qr.data();
  if (ctx.official) {
    act_quant_fp8_cuda(b.qr.data(), N, ql, b.qr_quant.data(), stream);
    qr_quant = b.qr_quant.data();
  }
  linear_cuda(w.q_b, qr_quant, N, b.q.data(), stream);
  query_heads_cuda(b.q.data(), positions, N, static_cast<int>(H), static_cast<int>(hd),
                   static_cast<int>(R), ctx.rope_freqs, c.rms_eps, stream);

  // The shared key/value row (§6.2), stored compactly for the window and the attention.
  linear_cuda(w.kv, xq, N, b.kv.data(), stream);
  kv_rows_cuda(b.kv.data(), positions, N, w.kv_norm, static_cast<int>(hd), static_cast<int>(R),
               ctx.rope_freqs, c.rms_eps, ctx.layout.kv, b.kv_rows.data(), stream);

  // Compressed rows (§6.4).
  if (ctx.ratio != 0) {
    const DeviceCompressor& cw = *w.compressor;
    compressor_projections(cw, x, N, b.comp_kv.data(), b.comp_score.data(), stream);
    for (const AttentionItem& item : items) {
      CompressorChunk chunk;
      chunk.state = &*item.state->compressor;
      chunk.codec = ctx.layout.kv;
      chunk.kv = b.comp_kv.data() + item.offset * cw.width;
      chunk.score = b.comp_score.data() + item.offset * cw.width;
      chunk.ape = cw.ape;
      chunk.norm = cw.norm;
      chunk.rope_freqs = ctx.rope_freqs;
      chunk.rope_dims = static_cast<int>(R);
      chunk.eps = c.rms_eps;
      chunk.first = item.first;
      chunk.n_tokens = item.n_tokens;
      compressor_chunk_cuda(chunk, stream);
    }
  }

  // The indexer's choice among them in ratio-4 layers (§6.5).
  if (ctx.ratio == 4) {
    const DeviceIndexer& iw = *w.indexer;
    const int64_t ih = c.indexer_heads, id = c.indexer_head_dim;
    linear_cuda(iw.q_b, qr_quant, N, b.index_q.data(), stream);
    indexer_queries_cuda(b.index_q.data(), positions, N, static_cast<int>(ih), static_cast<int>(id),
                         static_cast<int>(R), ctx.rope_freqs, ctx.official, stream);
    const DeviceCompressor& icw = iw.compressor;
    compressor_projections(icw, x, N, b.index_kv.data(), b.index_score.data(), stream);
    linear_cuda(iw.proj, x, N, b.index_weights.data(), stream);
    for (const AttentionItem& item : items) {
      CompressorChunk chunk;
      chunk.state = &*item.state->indexer;
      chunk.codec = ctx.layout.indexer;
      chunk.kv = b.index_kv.data() + item.offset * icw.width;
      chunk.score = b.index_score.data() + item.offset * icw.width;
      chunk.ape = icw.ape;
      chunk.norm = icw.norm;
      chunk.rope_freqs = ctx.rope_freqs;
      chunk.rope_dims = static_cast<int>(R);
      chunk.eps = c.rms_eps;
      chunk.hadamard = true;
      chunk.first = item.first;
      chunk.n_tokens = item.n_tokens;
      compressor_chunk_cuda(chunk, stream);

      IndexerQuery query;
      query.q = b.index_q.data() + item.offset * ih * id;
      query.weights = b.index_weights.data() + item.offset * ih;
      query.rows = item.state->indexer->rows.data();
      query.codec = ctx.layout.indexer;
      query.heads = static_cast<int>(ih);
      query.dim = static_cast<int>(id);
      query.top_k = static_cast<int>(c.indexer_top_k);
      query.weight_scale = 1.0f / std::sqrt(static_cast<float>(id * ih));
      query.first = item.first;
      query.n_tokens = item.n_tokens;
      query.scores = b.index_scores.data();
      query.max_rows = b.max_index_rows;
      indexer_select_cuda(query, b.selected.data() + item.offset * c.indexer_top_k,
                          b.selected_count.data() + item.offset, stream);
    }
  }

  // Sparse attention with sinks (§6.7), then the window update.
  for (const AttentionItem& item : items) {
    SparseAttention a;
    a.q = b.q.data() + item.offset * H * hd;
    a.chunk_rows = b.kv_rows.data() + item.offset * rb;
    a.window = item.state->window.data();
    a.compressed = ctx.ratio != 0 ? item.state->compressor->rows.data() : nullptr;
    if (ctx.ratio == 4) {
      a.selected = b.selected.data() + item.offset * c.indexer_top_k;
      a.selected_count = b.selected_count.data() + item.offset;
    }
    a.codec = ctx.layout.kv;
    a.ratio = static_cast<int>(ctx.ratio);
    a.top_k = static_cast<int>(c.indexer_top_k);
    a.window_size = c.sliding_window;
    a.heads = static_cast<int>(H);
    a.head_dim = static_cast<int>(hd);
    a.rope_dims = static_cast<int>(R);
    a.rope_freqs = ctx.rope_freqs;
    a.sinks = w.sinks;
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    a.first = item.first;
    a.n_tokens = item.n_tokens;
    a.probs = b.probs.data();
    a.max_rows = b.max_rows;
    a.out = b.o.data() + item.offset * H * hd;
    sparse_attention_cuda(a, stream);
    if (ctx.commit) {
      commit_window_cuda(a.chunk_rows, rb, item.first, item.n_tokens, c.sliding_window,
                         item.state->window.data(), stream);
    }
  }

  // Grouped low-rank output projection (§6.8): each group's heads through its own rows of wo_a.
  const int64_t groups = c.o_groups, group_in = c.o_group_in(), rank = c.o_lora_rank;
  for (int64_t g = 0; g < groups; ++g) {
    linear_cuda(w.out_a.row_slice(g * rank, rank), b.o.data() + g * group_in, H * hd, N,
                b.low.data() + g * rank, groups * rank, stream);
  }
  if (ctx.official) act_quant_fp8_cuda(b.low.data(), N, groups * rank, b.low.data(), stream);
  linear_cuda(w.out_b, b.low.data(), N, out, stream);
}

}  // namespace magnetar::gpu
