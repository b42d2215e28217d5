// The attention sublayer (attention.cuh); cpu attention.cc attention_chunk is the reference.
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/compressor.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/gemv.cuh"
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

// ---- The fast path (reference_order() false): one launch, the same bits. ----
//
// The reference kernels above wait for a global load per strided step, compute each RoPE pair's
// cosine and sine on one thread after the norm, and (KV rows) leave a whole FP8 block of 64 values
// to one thread, in three launches. The fast kernel runs the three kinds of rows in one launch of
// 128-thread blocks (the KV rows first: theirs is the longest path); each block issues all of a
// thread's loads at once, computes its RoPE table (one transcendental per thread) while they are in
// flight, keeps the norm's sums in the same 128-thread order, and encodes a warp per block.

constexpr int kMaxRowPerThread = 8;                       // rows up to 1024 values
constexpr int kMaxFastRow = kThreads * kMaxRowPerThread;  // head_dim limit of the fast kernel

// Whether the fast kernel takes the indexer queries: one value per thread of a 128-thread block,
// a power of two from 32 (a warp per FP4 block), the two values of a RoPE pair in one warp.
bool indexer_fits_fast(int dim, int rope_dims) {
  return dim >= 32 && dim <= kThreads && (dim & (dim - 1)) == 0 && rope_dims <= dim &&
         (dim - rope_dims) % 2 == 0;
}

// query_heads_kernel's row th: the norm in registers, RoPE from the table in shared memory.
__device__ void fast_query_head(const TokenRows& a, int64_t th, float* row, float* trig) {
  float* g = a.q + th * a.head_dim;
  float v[kMaxRowPerThread];
  load_strided(v, g, a.head_dim);
  cta_rope_table(trig, a.rope_freqs, a.rope_dims / 2, a.positions[th / a.heads], false);
  const float r = rms_scale(v, a.head_dim, a.eps);
#pragma unroll
  for (int k = 0; k < kMaxRowPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < a.head_dim) row[i] = v[k] * r;
  }
  __syncthreads();
  cta_rope_from(row + a.head_dim - a.rope_dims, trig, a.rope_dims / 2);
  for (int i = threadIdx.x; i < a.head_dim; i += kThreads) g[i] = row[i];
}

// kv_rows_kernel's row t (the float row kv is left as it was: nothing reads it afterwards).
__device__ void fast_kv_row(const TokenRows& a, int64_t t, float* row, float* trig) {
  float v[kMaxRowPerThread], w[kMaxRowPerThread];
  load_strided(v, a.kv + t * a.head_dim, a.head_dim);
  load_strided(w, a.kv_norm, a.head_dim);
  cta_rope_table(trig, a.rope_freqs, a.rope_dims / 2, a.positions[t], false);
  const float r = rms_scale(v, a.head_dim, a.eps);
#pragma unroll
  for (int k = 0; k < kMaxRowPerThread; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < a.head_dim) {
      const float normalized = v[k] * r;
      row[i] = w[k] * normalized;
    }
  }
  __syncthreads();
  cta_rope_from(row + a.head_dim - a.rope_dims, trig, a.rope_dims / 2);
  cta_encode_row_fast(row, a.codec, a.kv_rows + t * a.codec.row_bytes());
}

// indexer_queries_kernel's row th with one value per thread (indexer_fits_fast): the two values of
// a RoPE pair sit in neighbouring lanes, which compute its cosine and its sine and swap them; the
// Hadamard transform runs in registers (cta_hadamard_value), and each FP4 block of 32 is one warp.
__device__ void fast_indexer_head(const TokenRows& a, int64_t th, float* exchange) {
  const int dim = a.index_dim;
  const int i = threadIdx.x;
  float* g = a.index_q + th * dim;
  float v = i < dim ? g[i] : 0.0f;
  const int offset = i - (dim - a.rope_dims);  // in the rotated part from 0 to 2 · pairs
  const bool rotated = i < dim && offset >= 0 && offset < a.rope_dims / 2 * 2;
  float own = 0.0f;  // the cosine (first of the pair) or sine (second) of the pair's angle
  if (rotated) {
    const float theta = rope_angle(a.rope_freqs[offset / 2], a.positions[th / a.index_heads]);
    own = (offset & 1) ? rope_sin(theta, false) : cos_f32(theta);
  }
  const float partner_v = __shfl_xor_sync(0xffffffffu, v, 1);
  const float partner_trig = __shfl_xor_sync(0xffffffffu, own, 1);
  if (rotated) {
    v = (offset & 1) ? rotated_second(partner_v, v, partner_trig, own)
                     : rotated_first(v, partner_v, own, partner_trig);
  }
  v = cta_hadamard_value(v, dim, exchange);
  if (a.official) {
    const MinifloatFormat f = fp4_format();
    const float s = pow2_ceil(warp_max(fmaxf(f.amax_floor, fabsf(v))) * f.inv_max);
    v = round_to_format(f, v / s) * s;
  }
  if (i < dim) g[i] = v;
}

// Blocks [0, N): KV rows; [N, N + N·heads): query heads; then the indexer heads, if any.
__global__ void token_rows_fast_kernel(TokenRows a) {
  __shared__ float row[kMaxFastRow];  // also the Hadamard exchange (2 · 128 floats)
  __shared__ float trig[kMaxFastRow];
  int64_t b = blockIdx.x;
  if (b < a.n_tokens) {
    fast_kv_row(a, b, row, trig);
    return;
  }
  b -= a.n_tokens;
  if (b < a.n_tokens * a.heads) {
    fast_query_head(a, b, row, trig);
    return;
  }
  fast_indexer_head(a, b - a.n_tokens * a.heads, row);
}

void check_launch() { MAGNETAR_CUDA_CHECK(cudaGetLastError()); }

// Projections of a compressor for the whole batch (the chunk adds the position bias).
void compressor_projections(const DeviceCompressor& w, const float* x, int64_t n, float* kv,
                            float* score, cudaStream_t stream) {
  linear_cuda(w.kv, x, n, kv, stream);
  linear_cuda(w.gate, x, n, score, stream);
}

}  // namespace

void token_rows_cuda(const TokenRows& a, cudaStream_t stream) {
  if (a.n_tokens <= 0) return;
  const int64_t N = a.n_tokens;
  const bool indexer = a.index_q != nullptr;
  const bool fast = !reference_order() && a.head_dim <= kMaxFastRow;
  const bool fast_indexer = fast && indexer && indexer_fits_fast(a.index_dim, a.rope_dims);
  if (fast) {
    const int64_t blocks = N + N * a.heads + (fast_indexer ? N * a.index_heads : 0);
    token_rows_fast_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a);
  } else {
    query_heads_kernel<<<static_cast<unsigned>(N * a.heads), kThreads, 0, stream>>>(
        a.q, a.positions, a.heads, a.head_dim, a.rope_dims, a.rope_freqs, a.eps);
    check_launch();
    kv_rows_kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(
        a.kv, a.positions, a.kv_norm, a.head_dim, a.rope_dims, a.rope_freqs, a.eps, a.codec,
        a.kv_rows);
  }
  check_launch();
  if (indexer && !fast_indexer) {
    indexer_queries_kernel<<<static_cast<unsigned>(N * a.index_heads), kThreads, 0, stream>>>(
        a.index_q, a.positions, a.index_heads, a.index_dim, a.rope_dims, a.rope_freqs, a.official);
    check_launch();
  }
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

  // The shared key/value row (§6.2), stored compactly for the window and the attention, and the
  // indexer's queries (§6.5, ratio-4 layers): the rows of every token in one call.
  linear_cuda(w.kv, xq, N, b.kv.data(), stream);
  TokenRows rows;
  rows.positions = positions;
  rows.n_tokens = N;
  rows.rope_freqs = ctx.rope_freqs;
  rows.rope_dims = static_cast<int>(R);
  rows.eps = c.rms_eps;
  rows.q = b.q.data();
  rows.heads = static_cast<int>(H);
  rows.head_dim = static_cast<int>(hd);
  rows.kv = b.kv.data();
  rows.kv_norm = w.kv_norm;
  rows.codec = ctx.layout.kv;
  rows.kv_rows = b.kv_rows.data();
  if (ctx.ratio == 4) {
    linear_cuda(w.indexer->q_b, qr_quant, N, b.index_q.data(), stream);
    rows.index_q = b.index_q.data();
    rows.index_heads = static_cast<int>(c.indexer_heads);
    rows.index_dim = static_cast<int>(c.indexer_head_dim);
    rows.official = ctx.official;
  }
  token_rows_cuda(rows, stream);

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
  // Below the tensor-core threshold (decode), where linear_cuda would take the GEMV for each
  // group: all groups in one GEMV launch instead, with the same bits.
  const int64_t groups = c.o_groups, group_in = c.o_group_in(), rank = c.o_lora_rank;
  const TensorCoreGemm* tc = current_tensor_core_gemm();
  const bool gemv_regime = tc == nullptr || N < tc->options().min_tokens;
  if (!reference_order() && gemv_regime && H * hd == groups * group_in &&
      gemv_supports(w.out_a.row_slice(0, rank), b.o.data(), group_in)) {
    gemv_grouped_cuda(w.out_a, groups, b.o.data(), N, b.low.data(), stream);
  } else {
    for (int64_t g = 0; g < groups; ++g) {
      linear_cuda(w.out_a.row_slice(g * rank, rank), b.o.data() + g * group_in, H * hd, N,
                  b.low.data() + g * rank, groups * rank, stream);
    }
  }
  if (ctx.official) act_quant_fp8_cuda(b.low.data(), N, groups * rank, b.low.data(), stream);
  linear_cuda(w.out_b, b.low.data(), N, out, stream);
}

}  // namespace magnetar::gpu
