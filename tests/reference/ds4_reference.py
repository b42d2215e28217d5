"""Independent NumPy reference of the DeepSeek V4 forward pass (test oracle for Magnetar).

Written from the specification only: /work/shared/spec/model.md (§ numbers below refer to it
unless marked "gguf.md") and the GGUF layout of gguf.md §1-§3. No engine or third-party model
code was consulted.

Scope and numerics
------------------
* Every hyperparameter comes from the `deepseek4.*` metadata (gguf.md §2.2); the Flash constants
  of the spec are generalized to the config (nope dims = head_dim - rope_dim, heads per output
  group = n_head / o_groups, Hadamard size = indexer head dim, scales from the head dims, ...).
* Arithmetic runs in one compute dtype, float64 by default (float32 selectable, used only to
  measure rounding sensitivity). There is NO bfloat16 rounding anywhere: the engine under test is
  float32 and skips every bf16 rounding of the official reference.
* The RoPE frequency table (§3.7) and the angle `f32(f32(t) * f_j)` are evaluated exactly as the
  spec defines them, with float32 intermediates, in every mode: they are part of the model's
  definition, not an accumulation-precision choice. cos/sin of that angle use the compute dtype.
* Two numerics modes:
  - "plain":    no FP8/FP4 simulation at all (the indexer's Hadamard transform is still applied).
  - "official": exactly these simulations and nothing else:
      (a) act_quant (FP8 E4M3, 1x128 blocks, power-of-two scale, §3.3) of the input activation of
          every FP8/FP4 linear: wq_a, wq_b, wkv, wo_b, indexer.wq_b, shared and routed expert
          w1/w3/w2, MTP e_proj/h_proj. Not before wo_a, indexer weights_proj, compressors,
          router, HC mixers or the LM head. Weights are used as stored (float32).
      (b) fp8sim(row[0:nope], 64) on window KV rows (§6.2 step 4) and on attention-compressor
          rows (§6.4 step 3).
      (c) fp4sim(., 32) after the Hadamard transform on indexer queries (§6.5 step 3) and on
          indexer-compressor rows (§6.4 step 3).
    Block rule for lengths that are not a multiple of the block size (e.g. act_quant of the
    64-wide q-LoRA latent of the tiny model): consecutive blocks of the nominal size from the
    start, the last block shorter (a 64-wide input is one block of 64).
* Tie-breaking of every top-k (indexer, router) and of the MTP argmax: largest values first,
  among equal values the lower index wins (§6.5).
* Tokens are processed one at a time in order (§6.9: that is the definition of the semantics).
  Only the LM head is batched over positions, which cannot change any result.
"""

from dataclasses import dataclass

import numpy as np

from gguf_reader import GGUFFile

F32 = np.float32


# =================================================================================================
# §1 Hyperparameters (read from gguf.md §2.2 metadata; nothing hard-coded to Flash sizes)
# =================================================================================================

@dataclass
class Config:
    n_layer: int
    n_embd: int
    n_vocab: int
    n_head: int
    head_dim: int               # attention.key_length (= value_length); Dh
    rope_dim: int               # rope.dimension_count; R, rotary dims at the END of each head
    q_lora_rank: int
    o_lora_rank: int
    o_groups: int
    window: int                 # attention.sliding_window
    indexer_heads: int
    indexer_dim: int
    indexer_top_k: int
    compress_ratios: list       # n_layer entries for the main layers
    mtp_compress_ratio: int     # entry n_layer of the array (the MTP block's)
    rope_base: float            # rope.freq_base (ratio-0 layers and MTP)
    compress_rope_base: float   # attention.compress_rope_freq_base (compressed layers)
    yarn_factor: float
    yarn_orig_ctx: int
    yarn_beta_fast: float
    yarn_beta_slow: float
    rms_eps: float
    n_expert: int
    n_expert_used: int
    expert_ffn: int
    route_scale: float          # expert_weights_scale
    hash_layer_count: int
    swiglu_limits: list         # per main layer; the MTP block's limit is mtp_swiglu_limit
    mtp_swiglu_limit: float
    hc: int                     # hyper_connection.count
    sinkhorn_iters: int
    hc_eps: float

    @staticmethod
    def from_metadata(md):
        p = "deepseek4."
        n_layer = md[p + "block_count"]
        ratios = list(md[p + "attention.compress_ratios"])
        limits = list(md[p + "swiglu_clamp_exp"])
        if len(ratios) < n_layer or len(limits) < n_layer:
            raise ValueError("compress_ratios / swiglu_clamp_exp shorter than block_count")
        if md[p + "attention.head_count_kv"] != 1 or md[p + "expert_shared_count"] != 1:
            raise ValueError("the reference supports one KV head and one shared expert (§1.1)")
        if md[p + "attention.key_length"] != md[p + "attention.value_length"]:
            raise ValueError("key_length must equal value_length (shared K = V, §6.2)")
        cfg = Config(
            n_layer=n_layer,
            n_embd=md[p + "embedding_length"],
            n_vocab=md[p + "vocab_size"],
            n_head=md[p + "attention.head_count"],
            head_dim=md[p + "attention.key_length"],
            rope_dim=md[p + "rope.dimension_count"],
            q_lora_rank=md[p + "attention.q_lora_rank"],
            o_lora_rank=md[p + "attention.output_lora_rank"],
            o_groups=md[p + "attention.output_group_count"],
            window=md[p + "attention.sliding_window"],
            indexer_heads=md[p + "attention.indexer.head_count"],
            indexer_dim=md[p + "attention.indexer.key_length"],
            indexer_top_k=md[p + "attention.indexer.top_k"],
            compress_ratios=ratios[:n_layer],
            # §1.2: the array has n_layer + n_mtp entries, the MTP entry is 0 (window-only).
            mtp_compress_ratio=ratios[n_layer] if len(ratios) > n_layer else 0,
            rope_base=md[p + "rope.freq_base"],
            compress_rope_base=md[p + "attention.compress_rope_freq_base"],
            yarn_factor=md[p + "rope.scaling.factor"],
            yarn_orig_ctx=md[p + "rope.scaling.original_context_length"],
            yarn_beta_fast=md[p + "rope.scaling.yarn_beta_fast"],
            yarn_beta_slow=md[p + "rope.scaling.yarn_beta_slow"],
            rms_eps=md[p + "attention.layer_norm_rms_epsilon"],
            n_expert=md[p + "expert_count"],
            n_expert_used=md[p + "expert_used_count"],
            expert_ffn=md[p + "expert_feed_forward_length"],
            route_scale=md[p + "expert_weights_scale"],
            hash_layer_count=md[p + "hash_layer_count"],
            swiglu_limits=limits[:n_layer],
            # The official code has one scalar swiglu_limit; the GGUF array is per main layer.
            # The MTP block uses entry n_layer if the array has one, else the last main layer's.
            mtp_swiglu_limit=limits[n_layer] if len(limits) > n_layer else limits[n_layer - 1],
            hc=md[p + "hyper_connection.count"],
            sinkhorn_iters=md[p + "hyper_connection.sinkhorn_iterations"],
            hc_eps=md[p + "hyper_connection.epsilon"],
        )
        if cfg.mtp_compress_ratio != 0:
            raise ValueError("the MTP block must be window-only (compress ratio 0, §9.1)")
        if cfg.n_head % cfg.o_groups:
            raise ValueError("head_count must be a multiple of output_group_count (§6.8)")
        if cfg.indexer_dim & (cfg.indexer_dim - 1):
            raise ValueError("indexer head dim must be a power of two (Hadamard, §3.6)")
        return cfg

    @property
    def nope_dim(self):
        """Dn = Dh - R: the non-rotary dims of a head ("448" in Flash)."""
        return self.head_dim - self.rope_dim

    @property
    def hc_mix(self):
        """Mixer width (2 + HC) * HC: HC pre, HC post, HC x HC comb values (§5.1)."""
        return (2 + self.hc) * self.hc


# =================================================================================================
# §3 Numeric primitives
# =================================================================================================

# ---- §3.3 / §3.4 power-of-two block scales and E4M3 / E2M1 rounding ----------------------------

FP8_MAX = 448.0                      # E4M3 max (§1.4)
FP8_AMAX_FLOOR = F32(1e-4)           # §1.4
FP4_MAX = 6.0                        # E2M1 max
FP4_AMAX_FLOOR = F32(6.0 * 2.0 ** -126)  # §1.4, exact in float32
ACT_BLOCK = 128                      # act_quant block along K (§1.4)
KV_FP8_BLOCK = 64                    # KV nope fp8 simulation block
INDEXER_FP4_BLOCK = 32               # indexer fp4 simulation block


def ceil_log2(s):
    """ceil(log2(s)) for positive normal float32 s, by the exact bit rule of §3.3.

    s = 1.M * 2^(E-127): result E-127 if M == 0 else E-127+1. With frexp (s = m * 2^e,
    m in [0.5, 1)) this is e-1 when m == 0.5 (exact power of two) and e otherwise.
    """
    m, e = np.frexp(s)
    return np.where(m == 0.5, e - 1, e)


def pow2_scale(amax, amax_floor, qmax):
    """Block scale s = 2^ceil_log2(f32(max(amax, floor) * f32(1/qmax))) (§3.3 steps 1-3).

    Evaluated with float32 operations as the spec defines it, whatever the compute dtype.
    """
    amax32 = np.maximum(amax.astype(F32), amax_floor)
    s_prime = amax32 * F32(1.0 / qmax)  # float32 product: f32(amax * f32(1/qmax))
    return np.ldexp(1.0, ceil_log2(s_prime))


def round_to_minifloat(y, mant_bits, min_exp):
    """Round-to-nearest-even onto a small float grid (no overflow: callers clamp first).

    The grid has `mant_bits` explicit mantissa bits, normal binades 2^e for e >= min_exp and
    subnormals (spacing 2^(min_exp - mant_bits)) below 2^min_exp. Ties to even value = ties to the
    even code, so this is e4m3_RNE with (3, -6) and e2m1_RNE with (1, 0) (§3.3, §3.4).
    Every step is exact in float32 and float64.
    """
    a = np.abs(y)
    _, e = np.frexp(a)                          # a = m * 2^e, m in [0.5, 1): binade 2^(e-1)
    binade = np.maximum(e - 1, min_exp)
    quantum = np.ldexp(np.ones_like(a), binade - mant_bits)
    return np.copysign(np.rint(a / quantum) * quantum, y)


def e4m3_round(y):
    return round_to_minifloat(y, 3, -6)


def e2m1_round(y):
    return round_to_minifloat(y, 1, 0)


def _block_qdq(v, block, amax_floor, qmax, rounder):
    """Quantize-dequantize every `block`-long run along the last axis (last run may be shorter)."""
    out = np.empty_like(v)
    n = v.shape[-1]
    for start in range(0, n, block):
        blk = v[..., start:start + block]
        amax = np.max(np.abs(blk), axis=-1, keepdims=True)
        s = pow2_scale(amax, amax_floor, qmax).astype(v.dtype)
        q = rounder(np.clip(blk / s, -qmax, qmax))  # division by a power of two is exact
        out[..., start:start + block] = q * s
    return out


def fp8sim(v, block):
    """§3.3 E4M3 quantize-dequantize in blocks of `block` along the last axis (no bf16 output)."""
    return _block_qdq(v, block, FP8_AMAX_FLOOR, FP8_MAX, e4m3_round)


def fp4sim(v, block):
    """§3.4 E2M1 quantize-dequantize in blocks of `block` along the last axis."""
    return _block_qdq(v, block, FP4_AMAX_FLOOR, FP4_MAX, e2m1_round)


def act_quant(x):
    """§3.3 act_quant: FP8 simulation of a linear's input activation, 1x128 blocks."""
    return fp8sim(x, ACT_BLOCK)


# ---- §3.2 RMSNorm, activations ----------------------------------------------------------------

def rms_norm(x, w, eps):
    """§3.2 weighted RMSNorm along the last axis: w * (x * r), r = 1/sqrt(mean(x^2) + eps)."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return w * (x * r)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softplus(z):
    """PyTorch softplus (beta 1, threshold 20): z for z > 20, else ln(1 + e^z) (§7.1)."""
    return np.where(z > 20.0, z, np.log1p(np.exp(np.minimum(z, 20.0))))


def silu(z):
    return z * sigmoid(z)


def topk_lower_index_wins(values, k):
    """Indices of the k largest values; among equal values the lower index wins (§6.5)."""
    order = np.argsort(-values, kind="stable")
    return order[:k]


# ---- §3.6 Hadamard --------------------------------------------------------------------------

def hadamard_matrix(n, dtype):
    """Sylvester (natural-order) Hadamard matrix H[i][j] = (-1)^popcount(i & j), scaled n^-1/2."""
    h = np.ones((1, 1), dtype=dtype)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(dtype(n))


# ---- §3.7 RoPE ------------------------------------------------------------------------------

def rope_freqs(rope_dim, base, yarn=None):
    """Frequency table f_j, j = 0 .. rope_dim/2 - 1, with the float32 steps of §3.7.

    `yarn` = (factor, original_ctx, beta_fast, beta_slow) for compressed layers, None for
    window-only layers (and MTP). Returns float32.
    """
    j = np.arange(rope_dim // 2)
    exponent = (2.0 * j / rope_dim).astype(F32)                      # f32(2j/R)
    freqs = (F32(1.0) / (float(base) ** exponent.astype(np.float64)).astype(F32)).astype(F32)
    if yarn is None:
        return freqs
    factor, orig_ctx, beta_fast, beta_slow = yarn

    # YaRN correction range in double precision, over the rotary dim R (Flash: low 15, high 25).
    def corr(beta):
        return rope_dim * np.log(orig_ctx / (beta * 2.0 * np.pi)) / (2.0 * np.log(base))

    low = max(int(np.floor(corr(beta_fast))), 0)
    high = min(int(np.ceil(corr(beta_slow))), rope_dim - 1)
    span = (high + 0.001 if low == high else high) - low
    # Ramp over the pair index j; every intermediate is a separate float32 operation.
    ramp = np.clip((j - low).astype(F32) / F32(span), F32(0.0), F32(1.0)).astype(F32)
    smooth = (F32(1.0) - ramp).astype(F32)
    scaled = (freqs / F32(factor)).astype(F32)
    return ((scaled * (F32(1.0) - smooth)).astype(F32) + (freqs * smooth).astype(F32)).astype(F32)


class Rope:
    """Interleaved partial RoPE on the LAST rope_dim dims of a vector or of each head (§3.7)."""

    def __init__(self, freqs, dtype):
        self.freqs = freqs  # float32 [R/2]
        self.dtype = dtype

    def cos_sin(self, t):
        theta = (F32(t) * self.freqs).astype(F32)  # single float32 product f32(f32(t) * f_j)
        theta = theta.astype(self.dtype)
        return np.cos(theta), np.sin(theta)

    def apply(self, x, t, inverse=False):
        """Rotate pairs (x[off+2j], x[off+2j+1]) by +theta_j(t) (or -theta for inverse)."""
        cos, sin = self.cos_sin(t)
        if inverse:
            sin = -sin
        r = 2 * len(self.freqs)
        y = x.copy()
        x0 = x[..., -r::2]
        x1 = x[..., -r + 1::2]
        y[..., -r::2] = x0 * cos - x1 * sin
        y[..., -r + 1::2] = x0 * sin + x1 * cos
        return y


# ---- §3.8 Softmax with sink -----------------------------------------------------------------

def sink_attention(q, rows, sinks, scale):
    """Per-head attention over shared K = V rows with a sink logit in the denominator (§3.8, §6.7).

    q [H, Dh], rows [n, Dh], sinks [H] -> [H, Dh].
    """
    z = (q @ rows.T) * scale                                 # [H, n]
    m = np.max(z, axis=1, keepdims=True)
    e = np.exp(z - m)
    den = np.sum(e, axis=1, keepdims=True) + np.exp(sinks[:, None] - m)
    return (e / den) @ rows


# =================================================================================================
# Numerics mode: where the official FP8/FP4 simulations apply (see the module docstring)
# =================================================================================================

class Numerics:
    def __init__(self, mode, dtype):
        if mode not in ("plain", "official"):
            raise ValueError(f"numerics must be 'plain' or 'official', not {mode!r}")
        self.official = mode == "official"
        self.dtype = dtype

    def quant_linear(self, w, x):
        """FP8-/FP4-linear (§3.5): W.x with the input act_quant'ed in official mode.

        x may be one vector or a stack of rows (each row quantized on its own).
        """
        if self.official:
            x = act_quant(x)
        return x @ w.T

    def kv_row_sim(self, row, nope):
        """§6.2 step 4 / §6.4 step 3: fp8sim(row[0:nope], 64) in official mode."""
        if not self.official:
            return row
        out = row.copy()
        out[:nope] = fp8sim(row[:nope], KV_FP8_BLOCK)
        return out

    def indexer_sim(self, v):
        """§6.5 step 3 / §6.4 step 3: fp4sim(., 32) after the Hadamard, official mode only."""
        return fp4sim(v, INDEXER_FP4_BLOCK) if self.official else v


# =================================================================================================
# Weights
# =================================================================================================

class Weights:
    """Tensors of one GGUF, converted to the compute dtype on first use (I32 kept as is)."""

    def __init__(self, gguf, dtype):
        self.gguf = gguf
        self.dtype = dtype

    def has(self, name):
        return name in self.gguf.tensor_infos

    def __call__(self, name):
        t = self.gguf.tensor(name)
        return t if t.dtype.kind == "i" else t.astype(self.dtype)


# =================================================================================================
# §5 Manifold-constrained hyper-connections
# =================================================================================================

class HyperConnection:
    """hc_pre / hc_post of one sublayer (§5.1, §5.2)."""

    def __init__(self, cfg, fn, scale, base):
        self.cfg = cfg
        self.fn, self.scale, self.base = fn, scale, base  # [mix, HC*D], [3], [mix]

    def pre(self, X):
        """§5.1: returns (sublayer input y [D], post [HC], C [HC, HC])."""
        cfg = self.cfg
        n = cfg.hc
        xf = X.reshape(-1)                                   # stream-major flattening
        r = 1.0 / np.sqrt(np.mean(xf * xf) + cfg.rms_eps)
        m = (self.fn @ xf) * r                               # GEMV of the un-normalized vector
        pre = sigmoid(m[:n] * self.scale[0] + self.base[:n]) + cfg.hc_eps
        post = 2.0 * sigmoid(m[n:2 * n] * self.scale[1] + self.base[n:2 * n])
        c0 = (m[2 * n:] * self.scale[2] + self.base[2 * n:]).reshape(n, n)  # [j][k] = 2n + n*j + k
        C = self.sinkhorn(c0)
        y = pre @ X                                          # y[d] = sum_h pre[h] X[h][d]
        return y, post, C

    def sinkhorn(self, c0):
        """§5.1 step 7: row softmax + eps, column normalize, then (iters-1) x (row, column)."""
        eps = self.cfg.hc_eps
        e = np.exp(c0 - np.max(c0, axis=1, keepdims=True))
        C = e / np.sum(e, axis=1, keepdims=True) + eps
        C = C / (np.sum(C, axis=0, keepdims=True) + eps)
        for _ in range(self.cfg.sinkhorn_iters - 1):
            C = C / (np.sum(C, axis=1, keepdims=True) + eps)
            C = C / (np.sum(C, axis=0, keepdims=True) + eps)
        return C

    @staticmethod
    def post(f, X, post, C):
        """§5.2: X'[k] = post[k] f + sum_j C[j][k] X[j] (row j = source, column k = destination)."""
        return post[:, None] * f[None, :] + C.T @ X


def hc_head(cfg, X, fn, scale, base):
    """§5.3: collapse the HC streams to one vector (no Sinkhorn)."""
    xf = X.reshape(-1)
    r = 1.0 / np.sqrt(np.mean(xf * xf) + cfg.rms_eps)
    m = (fn @ xf) * r
    w = sigmoid(m * scale[0] + base) + cfg.hc_eps
    return w @ X


# =================================================================================================
# §6 Attention
# =================================================================================================

class WindowRing:
    """§6.3 / §10.1: KV rows of the last `size` positions, slot t mod size."""

    def __init__(self, size, dim, dtype):
        self.rows = np.zeros((size, dim), dtype=dtype)
        self.pos = np.full(size, -1, dtype=np.int64)
        self.wraps = 0  # writes that overwrote an older position (positions t >= size)

    def write(self, t, row):
        slot = t % len(self.pos)
        if self.pos[slot] >= 0:
            self.wraps += 1
        self.rows[slot] = row
        self.pos[slot] = t

    def visible(self, t):
        """Rows of positions max(0, t - size + 1) .. t (after position t was written)."""
        keep = (self.pos >= 0) & (self.pos > t - len(self.pos)) & (self.pos <= t)
        return self.rows[keep]


class Compressor:
    """§6.4 token-streaming compressor: pools blocks of `ratio` tokens into one row of width c.

    kind "attention": c = head_dim, rows get fp8sim on the nope dims (official).
    kind "indexer":   c = indexer_dim, rows get Hadamard, then fp4sim (official).
    """

    def __init__(self, cfg, numerics, rope, w, prefix, ratio, c, kind):
        self.cfg, self.num, self.rope = cfg, numerics, rope
        self.ratio, self.c, self.kind = ratio, c, kind
        self.overlap = ratio == 4            # two-window pooling iff ratio 4 (§1.4)
        coff = 2 if self.overlap else 1
        self.wkv = w(prefix + "_kv.weight")      # [coff*c, D]
        self.wgate = w(prefix + "_gate.weight")  # [coff*c, D]
        self.ape = w(prefix + "_ape.weight")     # [ratio, coff*c]
        self.norm = w(prefix + "_norm.weight")   # [c]
        assert self.wkv.shape == (coff * c, cfg.n_embd), (prefix, self.wkv.shape)
        assert self.ape.shape == (ratio, coff * c), (prefix, self.ape.shape)
        if kind == "indexer":
            self.hadamard = hadamard_matrix(c, numerics.dtype)
        dt = numerics.dtype
        # §10.1 state: current partial block and (ratio 4) the previous block; the initial
        # "previous block" has scores -inf and values 0, so block 0 pools only its own tokens.
        self.cur_kv = np.zeros((ratio, coff * c), dtype=dt)
        self.cur_sc = np.zeros((ratio, coff * c), dtype=dt)
        self.prev_kv = np.zeros((ratio, coff * c), dtype=dt)
        self.prev_sc = np.full((ratio, coff * c), -np.inf, dtype=dt)
        self.rows = []

    def step(self, x, t):
        """Feed token t (normalized sublayer input x); emits row b when (t+1) % ratio == 0."""
        r, c = self.ratio, self.c
        slot = t % r                                  # position within the block
        self.cur_kv[slot] = self.wkv @ x              # FP32-linear, no act quant
        self.cur_sc[slot] = self.wgate @ x + self.ape[slot]
        if (t + 1) % r:
            return
        b = (t + 1) // r - 1
        if self.overlap:
            # Previous block: first-half columns; current block: second-half columns.
            scores = np.concatenate([self.prev_sc[:, :c], self.cur_sc[:, c:]])
            values = np.concatenate([self.prev_kv[:, :c], self.cur_kv[:, c:]])
        else:
            scores, values = self.cur_sc, self.cur_kv
        e = np.exp(scores - np.max(scores, axis=0, keepdims=True))  # per-channel softmax
        pooled = np.sum(e / np.sum(e, axis=0, keepdims=True) * values, axis=0)

        v = rms_norm(pooled, self.norm, self.cfg.rms_eps)
        v = self.rope.apply(v, b * r)                 # RoPE at the block's first position b*r
        if self.kind == "attention":
            v = self.num.kv_row_sim(v, c - self.cfg.rope_dim)
        else:
            v = self.num.indexer_sim(v @ self.hadamard)  # Hadamard (always), then fp4sim
        self.rows.append(v)

        self.prev_kv, self.prev_sc = self.cur_kv.copy(), self.cur_sc.copy()
        self.cur_kv[:] = 0.0
        self.cur_sc[:] = 0.0


class Indexer:
    """§6.5 (ratio-4 layers): selects up to top_k compressed rows for each query."""

    def __init__(self, cfg, numerics, rope, w, prefix):
        self.cfg, self.num, self.rope = cfg, numerics, rope
        self.wq_b = w(prefix + "indexer.attn_q_b.weight")      # [heads*dim, q_lora]
        self.weights_proj = w(prefix + "indexer.proj.weight")  # [heads, D]
        self.hadamard = hadamard_matrix(cfg.indexer_dim, numerics.dtype)
        self.weight_scale = cfg.indexer_dim ** -0.5 * cfg.indexer_heads ** -0.5
        self.compressor = Compressor(cfg, numerics, rope, w, prefix + "indexer_compressor",
                                     4, cfg.indexer_dim, "indexer")
        self.partial_selections = 0  # queries that selected strictly fewer rows than available

    def select(self, x, qr, t):
        cfg = self.cfg
        qi = self.num.quant_linear(self.wq_b, qr).reshape(cfg.indexer_heads, cfg.indexer_dim)
        qi = self.rope.apply(qi, t)                        # last rope_dim dims of each head
        qi = self.num.indexer_sim(qi @ self.hadamard)      # Hadamard per head, then fp4sim
        self.compressor.step(x, t)                         # may emit row (t+1)/4 - 1 first
        n_rows = len(self.compressor.rows)
        assert n_rows == (t + 1) // 4
        if n_rows <= cfg.indexer_top_k:
            return np.arange(n_rows)
        w = (self.weights_proj @ x) * self.weight_scale    # BF16-linear: no act quant
        keys = np.stack(self.compressor.rows)              # [n, dim]
        s = np.maximum(qi @ keys.T, 0.0)                   # relu(q_h . K_i) [heads, n]
        scores = w @ s                                     # sum_h w_h relu(...)
        self.partial_selections += 1
        return topk_lower_index_wins(scores, cfg.indexer_top_k)


class Attention:
    """§6.1-§6.8 attention sublayer of one layer, with its decode state (§10.1)."""

    def __init__(self, cfg, numerics, w, prefix, ratio):
        self.cfg, self.num, self.ratio = cfg, numerics, ratio
        dt = numerics.dtype
        if ratio == 0:   # window-only layers and MTP: base rope_theta, no YaRN
            freqs = rope_freqs(cfg.rope_dim, cfg.rope_base)
        else:            # compressed layers (and their indexer / compressors): YaRN
            freqs = rope_freqs(cfg.rope_dim, cfg.compress_rope_base,
                               (cfg.yarn_factor, cfg.yarn_orig_ctx,
                                cfg.yarn_beta_fast, cfg.yarn_beta_slow))
        self.rope = Rope(freqs, dt)
        self.wq_a = w(prefix + "attn_q_a.weight")
        self.q_norm = w(prefix + "attn_q_a_norm.weight")
        self.wq_b = w(prefix + "attn_q_b.weight")
        self.wkv = w(prefix + "attn_kv.weight")
        self.kv_norm = w(prefix + "attn_kv_a_norm.weight")
        self.sinks = w(prefix + "attn_sinks.weight")
        self.wo_a = w(prefix + "attn_output_a.weight")   # [G*o_rank, H*Dh/G]
        self.wo_b = w(prefix + "attn_output_b.weight")   # [D, G*o_rank]
        self.scale = cfg.head_dim ** -0.5
        self.window = WindowRing(cfg.window, cfg.head_dim, dt)
        self.compressor = None
        self.indexer = None
        if ratio:
            self.compressor = Compressor(cfg, numerics, self.rope, w, prefix + "attn_compressor",
                                         ratio, cfg.head_dim, "attention")
        if ratio == 4:
            self.indexer = Indexer(cfg, numerics, self.rope, w, prefix)

    def forward(self, x, t):
        cfg, num = self.cfg, self.num
        # §6.1 query path.
        qr = rms_norm(num.quant_linear(self.wq_a, x), self.q_norm, cfg.rms_eps)
        q = num.quant_linear(self.wq_b, qr).reshape(cfg.n_head, cfg.head_dim)
        q = q / np.sqrt(np.mean(q * q, axis=1, keepdims=True) + cfg.rms_eps)  # per-head, no weight
        q = self.rope.apply(q, t)

        # §6.2 KV path: one shared head, key = value.
        kv = rms_norm(num.quant_linear(self.wkv, x), self.kv_norm, cfg.rms_eps)
        kv = num.kv_row_sim(self.rope.apply(kv, t), cfg.nope_dim)
        self.window.write(t, kv)

        # §6.5 indexer, §6.4 compressor, §6.6 attended row set.
        rows = [self.window.visible(t)]
        if self.ratio == 4:
            selected = self.indexer.select(x, qr, t)
        if self.compressor is not None:
            self.compressor.step(x, t)
            n_visible = (t + 1) // self.ratio        # rows with (i+1)*r - 1 <= t
            assert len(self.compressor.rows) == n_visible
            if self.ratio == 4:
                rows += [self.compressor.rows[i][None, :] for i in selected]
            else:
                rows += [np.stack(self.compressor.rows)] if n_visible else []
        rows = np.concatenate(rows)

        # §6.7 sparse attention with sinks, then inverse RoPE at the query position.
        o = sink_attention(q, rows, self.sinks, self.scale)
        o = self.rope.apply(o, t, inverse=True)

        # §6.8 grouped low-rank output: n_head / o_groups consecutive heads per group.
        u = o.reshape(cfg.o_groups, -1)                                  # [G, H*Dh/G]
        wo_a = self.wo_a.reshape(cfg.o_groups, cfg.o_lora_rank, -1)      # [G, o_rank, H*Dh/G]
        low = np.einsum("gri,gi->gr", wo_a, u).reshape(-1)              # BF16-linear: no quant
        return num.quant_linear(self.wo_b, low)


# =================================================================================================
# §7 Mixture of experts
# =================================================================================================

class MoE:
    def __init__(self, cfg, numerics, w, prefix, hash_routed, swiglu_limit):
        self.cfg, self.num = cfg, numerics
        self.gate = w(prefix + "ffn_gate_inp.weight")                 # [E, D]
        self.hash_routed = hash_routed
        if hash_routed:
            self.tid2eid = w(prefix + "ffn_gate_tid2eid.weight")      # [V, n_used] int32
            assert self.tid2eid.shape[1] == cfg.n_expert_used
        else:
            self.bias = w(prefix + "exp_probs_b.bias")                # [E]
        self.w1 = w(prefix + "ffn_gate_exps.weight")                  # [E, F, D]
        self.w3 = w(prefix + "ffn_up_exps.weight")                    # [E, F, D]
        self.w2 = w(prefix + "ffn_down_exps.weight")                  # [E, D, F]
        self.sw1 = w(prefix + "ffn_gate_shexp.weight")
        self.sw3 = w(prefix + "ffn_up_shexp.weight")
        self.sw2 = w(prefix + "ffn_down_shexp.weight")
        self.limit = swiglu_limit

    def route(self, x, token):
        """§7.1-§7.2: selected expert ids and their weights."""
        cfg = self.cfg
        s = np.sqrt(softplus(self.gate @ x))                          # FP32-linear, no act quant
        if self.hash_routed:
            sel = self.tid2eid[token].astype(np.int64)
        else:
            sel = topk_lower_index_wins(s + self.bias, cfg.n_expert_used)  # bias: selection only
        weights = s[sel] / np.sum(s[sel]) * cfg.route_scale           # unbiased scores
        return sel, weights

    def expert(self, w1, w3, w2, x, weight):
        """§7.3: clamped SwiGLU; the routing weight multiplies the activation before w2."""
        gate = self.num.quant_linear(w1, x)
        up = np.clip(self.num.quant_linear(w3, x), -self.limit, self.limit)
        gate = np.minimum(gate, self.limit)                            # upper clamp only
        h = silu(gate) * up
        if weight is not None:
            h = h * weight
        return self.num.quant_linear(w2, h)

    def forward(self, x, token):
        sel, weights = self.route(x, token)
        acc = np.zeros_like(x)
        # §7.4: routed experts in increasing expert id (stable for repeated ids), then shared.
        for k in np.argsort(sel, kind="stable"):
            e = sel[k]
            acc += self.expert(self.w1[e], self.w3[e], self.w2[e], x, weights[k])
        acc += self.expert(self.sw1, self.sw3, self.sw2, x, None)
        return acc


# =================================================================================================
# §4 / §12 One transformer block (attention + FFN sublayers with hyper-connections)
# =================================================================================================

class Block:
    def __init__(self, cfg, numerics, w, prefix, ratio, hash_routed, swiglu_limit):
        self.cfg = cfg
        self.hc_attn = HyperConnection(cfg, w(prefix + "hc_attn_fn.weight"),
                                       w(prefix + "hc_attn_scale.weight"),
                                       w(prefix + "hc_attn_base.weight"))
        self.hc_ffn = HyperConnection(cfg, w(prefix + "hc_ffn_fn.weight"),
                                      w(prefix + "hc_ffn_scale.weight"),
                                      w(prefix + "hc_ffn_base.weight"))
        self.attn_norm = w(prefix + "attn_norm.weight")
        self.ffn_norm = w(prefix + "ffn_norm.weight")
        self.attn = Attention(cfg, numerics, w, prefix, ratio)
        self.moe = MoE(cfg, numerics, w, prefix, hash_routed, swiglu_limit)

    def forward(self, X, t, token):
        eps = self.cfg.rms_eps
        y, post, C = self.hc_attn.pre(X)
        a = self.attn.forward(rms_norm(y, self.attn_norm, eps), t)
        X = HyperConnection.post(a, X, post, C)
        y, post, C = self.hc_ffn.pre(X)
        f = self.moe.forward(rms_norm(y, self.ffn_norm, eps), token)
        return HyperConnection.post(f, X, post, C)


# =================================================================================================
# §9 MTP block
# =================================================================================================

class MTP:
    """§9.1: e_proj/h_proj input mixing, one window-only block, its own hc_head and norm."""

    def __init__(self, cfg, numerics, w):
        p = "mtp.0."
        self.cfg, self.num = cfg, numerics
        self.e_proj = w(p + "e_proj.weight")
        self.h_proj = w(p + "h_proj.weight")
        self.enorm = w(p + "enorm.weight")
        self.hnorm = w(p + "hnorm.weight")
        self.norm = w(p + "norm.weight")
        self.hc_head = (w(p + "hc_head_fn.weight"), w(p + "hc_head_scale.weight"),
                        w(p + "hc_head_base.weight"))
        # Layer index n_layer >= hash_layer_count: biased top-k routing (§7.2).
        self.block = Block(cfg, numerics, w, p, cfg.mtp_compress_ratio, False,
                           cfg.mtp_swiglu_limit)

    def forward(self, hs, embedding, t, token):
        """One position: hs = main final HC state [HC, D], embedding = embed[token]."""
        eps = self.cfg.rms_eps
        e = rms_norm(embedding, self.enorm, eps)
        hn = rms_norm(hs, self.hnorm, eps)                     # per stream, over D
        X0 = self.num.quant_linear(self.e_proj, e)[None, :] + self.num.quant_linear(self.h_proj, hn)
        X1 = self.block.forward(X0, t, token)
        fn, scale, base = self.hc_head
        return rms_norm(hc_head(self.cfg, X1, fn, scale, base), self.norm, eps)


# =================================================================================================
# §4 / §8 Model
# =================================================================================================

class Model:
    """The reference model: `forward(tokens)` -> logits [T, vocab] (+ MTP logits, counters)."""

    def __init__(self, path, numerics="plain", dtype=np.float64):
        self.gguf = GGUFFile(path)
        self.cfg = Config.from_metadata(self.gguf.metadata)
        self.numerics_mode = numerics
        self.dtype = dtype
        w = Weights(self.gguf, dtype)
        self.w = w
        self.embed = self.gguf.tensor("token_embd.weight")    # float32 [V, D]; rows cast on use
        self.head = w("output.weight")                        # [V, D]
        self.out_norm = w("output_norm.weight")
        self.hc_head = (w("output_hc_fn.weight"), w("output_hc_scale.weight"),
                        w("output_hc_base.weight"))
        self.has_mtp = w.has("mtp.0.e_proj.weight")

    def _fresh_state(self):
        """Blocks hold the per-sequence state (§10.1); build them anew for every sequence."""
        cfg = self.cfg
        num = Numerics(self.numerics_mode, self.dtype)
        blocks = [Block(cfg, num, self.w, f"blk.{l}.", cfg.compress_ratios[l],
                        l < cfg.hash_layer_count, cfg.swiglu_limits[l])
                  for l in range(cfg.n_layer)]
        mtp = MTP(cfg, num, self.w) if self.has_mtp else None
        return blocks, mtp

    def lm_head(self, normed):
        """§8 FP32-linear LM head for a stack of positions. (einsum: the reference BLAS that
        NumPy links here is several times slower for this shape.)"""
        return np.einsum("td,vd->tv", normed, self.head)

    def embedding(self, token):
        return self.embed[token].astype(self.dtype)

    def forward(self, tokens, mtp=False, mtp_last_token=None):
        """Returns (logits [T, V], mtp_logits [T, V] or None, counters dict).

        MTP (§9.2, V3 convention): position i uses Hs = final HC state at i, token
        tokens[i+1], RoPE position i; the MTP block runs over every position in order so its
        window ring is filled. The last position's token is `mtp_last_token` if given, else the
        argmax of the main logits at T-1 (a test passes the engine's own argmax there, so that
        a near-tie decided differently by rounding does not change the compared draft).
        """
        cfg = self.cfg
        tokens = [int(tok) for tok in tokens]
        T = len(tokens)
        blocks, mtp_model = self._fresh_state()
        if mtp and mtp_model is None:
            raise ValueError("the model has no MTP block (mtp.0.*)")

        finals = np.empty((T, cfg.hc, cfg.n_embd), dtype=self.dtype)
        normed = np.empty((T, cfg.n_embd), dtype=self.dtype)
        fn, scale, base = self.hc_head
        for t, token in enumerate(tokens):
            X = np.tile(self.embedding(token), (cfg.hc, 1))    # §4: HC copies of the embedding
            for block in blocks:
                X = block.forward(X, t, token)
            finals[t] = X
            normed[t] = rms_norm(hc_head(cfg, X, fn, scale, base), self.out_norm, cfg.rms_eps)
        logits = self.lm_head(normed)

        mtp_logits = None
        if mtp:
            mtp_normed = np.empty_like(normed)
            for i in range(T):
                if i + 1 < T:
                    nxt = tokens[i + 1]
                elif mtp_last_token is not None:
                    nxt = int(mtp_last_token)
                else:
                    nxt = int(np.argmax(logits[T - 1]))
                mtp_normed[i] = mtp_model.forward(finals[i], self.embedding(nxt), i, nxt)
            mtp_logits = self.lm_head(mtp_normed)

        counters = {
            "ring_wraps": [b.attn.window.wraps for b in blocks],
            "compressed_rows": [len(b.attn.compressor.rows) if b.attn.compressor else 0
                                for b in blocks],
            "indexer_rows": [len(b.attn.indexer.compressor.rows) if b.attn.indexer else 0
                             for b in blocks],
            "indexer_partial_selections": [b.attn.indexer.partial_selections if b.attn.indexer
                                           else 0 for b in blocks],
        }
        if mtp:
            counters["mtp_ring_wraps"] = mtp_model.block.attn.window.wraps
        return logits, mtp_logits, counters


def main():
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Run the NumPy DeepSeek V4 reference on a GGUF")
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=16, help="number of random tokens")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--numerics", choices=["plain", "official"], default="plain")
    ap.add_argument("--float32", action="store_true", help="compute in float32")
    ap.add_argument("--mtp", action="store_true")
    ap.add_argument("-o", "--output", help="write logits (.npy; [2, T, V] with --mtp)")
    args = ap.parse_args()

    model = Model(args.model, args.numerics, np.float32 if args.float32 else np.float64)
    tokens = np.random.default_rng(args.seed).integers(0, 128000, size=args.tokens)
    start = time.time()
    logits, mtp_logits, counters = model.forward(tokens, mtp=args.mtp)
    print(f"T={len(tokens)} {args.numerics} {'float32' if args.float32 else 'float64'}: "
          f"{time.time() - start:.2f} s; counters {counters}")
    if args.output:
        out = np.stack([logits, mtp_logits]) if args.mtp else logits
        np.save(args.output, out.astype(np.float32))


if __name__ == "__main__":
    main()
