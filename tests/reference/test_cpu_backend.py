"""Compare Magnetar's CPU backend (`magnetar logits`) with the independent NumPy reference.

Run:  MAGNETAR=build/src/cli/magnetar /usr/bin/python3 -m pytest -v tests/reference
The self tests of the reference's numeric primitives (`test_ref_*`) need no binary; the
end-to-end tests fail with a clear message when MAGNETAR is not set.
"""

import os
import struct
import subprocess

import numpy as np
import pytest

from ds4_reference import (Model, ceil_log2, e2m1_round, e4m3_round, fp4sim, fp8sim,
                           hadamard_matrix, pow2_scale, rope_freqs, FP8_AMAX_FLOOR, FP8_MAX)
from gguf_reader import GGUFError, GGUFFile

CASES = [(1, 150), (2, 300)]       # (seed, number of tokens)
MODES = ["plain", "official"]
TOKEN_ID_LIMIT = 128000            # random prompt ids in [0, 128000)

# Tolerances on the metric of `relative_error_per_position` (max |diff| / max |ref| per position).
#
# plain: no FP8/FP4 simulation, everything is continuous; a float32 engine against this float64
#   reference differs only by float32 rounding (the reference's own float32 run differs from its
#   float64 run by <= 8.5e-7 on these cases; the CPU backend measured 5.4e-7), so 1e-4 leaves two
#   orders of magnitude of margin.
#
# official: 1e-4 is NOT achievable. E4M3 keeps 3 mantissa bits, so any float32 rounding
#   difference that moves a value across an E4M3 rounding boundary changes it by up to 1/16 of
#   its block scale; that perturbation enters the KV cache and the HC state and flips further
#   elements downstream. Measured (main / MTP logits; max, median over positions, first position
#   above 1e-4):
#     reference float32 vs float64     seed 1, T=150: 0.181 / 0.142, 0.021 / 0.027, 6
#                                      seed 2, T=300: 0.253 / 0.232, 0.022 / 0.029, 11
#     CPU backend vs reference         seed 1, T=150: 0.176 / 0.146, 0.024 / 0.027, 30
#                                      seed 2, T=300: 0.226 / 0.181, 0.022 / 0.030, 40
#   Known-wrong variants of the official mode against the correct one (float64, same cases),
#   median main / MTP:
#     plain numerics                   0.060-0.105 / 0.054-0.089   (max up to 0.37)
#     no KV fp8sim                     0.065-0.111 / 0.056-0.093
#     no indexer fp4sim                0.062-0.100 / 0.053-0.082
#     non-power-of-two block scale     0.074-0.129 / 0.071-0.113
#   The per-position maximum cannot separate a bug from rounding noise (0.25 vs 0.37); the median
#   over positions can. Official mode therefore checks the median at 0.05 (1.7x the worst
#   measured noise, below every wrong variant) and the maximum at 0.5 (2x the worst noise; catches
#   divergence and garbage). Plain mode is the tight end-to-end check of the model semantics; the
#   simulation primitives themselves are pinned by exact hand cases (test_ref_* below).
PLAIN_TOL = 1e-4
OFFICIAL_MAX_TOL = 0.5
OFFICIAL_MEDIAN_TOL = 0.05


def relative_error_per_position(out, ref):
    """max_abs(out[t] - ref[t]) / max_abs(ref[t]) for every position t."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return np.max(np.abs(out - ref), axis=1) / np.max(np.abs(ref), axis=1)


# -------------------------------------------------------------------------------------------------
# End-to-end: magnetar logits vs the reference
# -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def magnetar():
    path = os.environ.get("MAGNETAR")
    if not path:
        pytest.fail("MAGNETAR is not set: export MAGNETAR=/path/to/build/src/cli/magnetar "
                    "(the test_ref_* self tests run without it)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"MAGNETAR={path} is not an executable file")
    return path


@pytest.fixture(scope="session")
def tiny_model(magnetar, tmp_path_factory):
    """tiny_model(seed) -> path of the tiny float32 model with an MTP block (built once)."""
    built = {}

    def get(seed):
        if seed not in built:
            out = tmp_path_factory.mktemp(f"tiny-seed{seed}") / "tiny-f32.gguf"
            run([magnetar, "synth", "--preset", "tiny", "--types", "f32", "--mtp",
                 "--seed", str(seed), "-o", str(out)])
            built[seed] = str(out)
        return built[seed]

    return get


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def check_close(name, out, ref, numerics):
    rel = relative_error_per_position(out, ref)
    worst = int(np.argmax(rel))
    summary = (f"{name} ({numerics}): max {rel.max():.3g} at position {worst}, "
               f"median {np.median(rel):.3g}")
    if numerics == "plain":
        assert rel.max() <= PLAIN_TOL, summary
    else:
        assert rel.max() <= OFFICIAL_MAX_TOL, summary
        assert np.median(rel) <= OFFICIAL_MEDIAN_TOL, summary


@pytest.mark.parametrize("numerics", MODES)
@pytest.mark.parametrize("seed,n_tokens", CASES)
def test_logits_match_reference(magnetar, tiny_model, tmp_path, seed, n_tokens, numerics):
    model_path = tiny_model(seed)
    tokens = np.random.default_rng(seed).integers(0, TOKEN_ID_LIMIT, size=n_tokens)
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text(" ".join(str(int(t)) for t in tokens) + "\n")
    out_file = tmp_path / "out.npy"
    run([magnetar, "logits", "-m", model_path, "--tokens-file", str(tokens_file),
         "--all-positions", "--mtp", "--numerics", numerics, "-o", str(out_file)])

    out = np.load(out_file)
    model = Model(model_path, numerics)
    assert out.shape == (2, n_tokens, model.cfg.n_vocab), out.shape
    assert out.dtype == np.float32, out.dtype
    assert np.all(np.isfinite(out))

    # The last MTP position drafts from the argmax of the main logits at T-1. Give the reference
    # the engine's argmax: in official mode rounding noise can decide a near-tie differently,
    # and the main-logits check below already bounds how far the engine's logits may be off.
    engine_argmax = int(np.argmax(out[0, -1]))
    ref_logits, ref_mtp, counters = model.forward(tokens, mtp=True, mtp_last_token=engine_argmax)
    check_close("main logits", out[0], ref_logits, numerics)
    check_close("MTP logits", out[1], ref_mtp, numerics)

    # The case must exercise the long-context paths (properties of the reference run).
    cfg = model.cfg
    assert n_tokens > cfg.window and min(counters["ring_wraps"]) > 0, counters
    ratio128 = [l for l, r in enumerate(cfg.compress_ratios) if r == 128]
    assert ratio128 and all(counters["compressed_rows"][l] >= 1 for l in ratio128), counters
    ratio4 = [l for l, r in enumerate(cfg.compress_ratios) if r == 4]
    assert ratio4 and all(counters["indexer_partial_selections"][l] > 0 for l in ratio4), counters


# -------------------------------------------------------------------------------------------------
# Self tests of the reference (no binary needed)
# -------------------------------------------------------------------------------------------------

def test_ref_e2m1_ties_to_even():
    # model.md §3.4: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4.
    x = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.5, 6.0, 0.2, 2.2])
    want = np.array([0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 0.0, 2.0])
    np.testing.assert_array_equal(e2m1_round(x), want)
    np.testing.assert_array_equal(e2m1_round(-x), -want)
    # Through fp4sim: a block whose amax is 6 has scale exactly 1 ...
    block = np.concatenate([x, -x, np.zeros(32 - 2 * len(x))])
    want_block = np.concatenate([want, -want, np.zeros(32 - 2 * len(x))])
    np.testing.assert_array_equal(fp4sim(block, 32), want_block)
    # ... and scaling the block by a power of two scales the result exactly.
    np.testing.assert_array_equal(fp4sim(block * 2.0 ** -5, 32), want_block * 2.0 ** -5)
    # float32 input gives the same values.
    np.testing.assert_array_equal(fp4sim(block.astype(np.float32), 32), want_block)


def test_ref_e4m3_rounding():
    x = np.array([448.0, 440.0, 1.0625, 1.1875, 17.0, 19.0, 2.0 ** -9, 2.0 ** -10,
                  3 * 2.0 ** -10, 0.0, 0.3])
    want = np.array([448.0, 448.0, 1.0, 1.25, 16.0, 20.0, 2.0 ** -9, 0.0,
                     2.0 ** -8, 0.0, 0.3125])
    np.testing.assert_array_equal(e4m3_round(x), want)
    np.testing.assert_array_equal(e4m3_round(-x), -want)
    # A block with amax 448 has scale 1 (f32(448 * f32(1/448)) == 1 exactly).
    block = np.concatenate([x, np.zeros(64 - len(x))])
    np.testing.assert_array_equal(fp8sim(block, 64), np.concatenate([want, np.zeros(64 - len(x))]))
    # amax 448*2^3 -> scale 8: the block maps onto the same grid, scaled by 8.
    np.testing.assert_array_equal(fp8sim(np.array([3584.0, -3584.0, 8.0]), 64),
                                  [3584.0, -3584.0, 8.0])


def test_ref_fp8_scale_bit_rule():
    # §3.3: s = 2^ceil_log2(f32(amax * f32(1/448))), exact bit rule.
    for k in range(-10, 10):
        exact = np.array([FP8_MAX * 2.0 ** k])
        assert pow2_scale(exact, FP8_AMAX_FLOOR, FP8_MAX)[0] == 2.0 ** k
        above = np.array([FP8_MAX * 2.0 ** k * (1 + 2.0 ** -20)])
        assert pow2_scale(above, FP8_AMAX_FLOOR, FP8_MAX)[0] == 2.0 ** (k + 1)
    # amax floor 1e-4: 1e-4/448 = 2.23e-7 -> 2^-22.
    assert pow2_scale(np.array([0.0]), FP8_AMAX_FLOOR, FP8_MAX)[0] == 2.0 ** -22
    np.testing.assert_array_equal(ceil_log2(np.array([1.0, 1.5, 2.0, 0.75], np.float32)),
                                  [0, 1, 1, 0])
    # Blocks are independent: the block size changes which amax a value is scaled by.
    v = np.concatenate([np.full(128, 1.0), np.full(8, 0.01)])
    q = fp8sim(v, 128)
    np.testing.assert_array_equal(q[:128], 1.0)
    assert abs(q[128] - 0.01) < 0.01 / 16   # its own short block keeps full relative precision


# model.md §3.7 reference table: j -> (f_j base 1e4, f_j base 1.6e5 + YaRN).
ROPE_TABLE = {
    0: (1.0, 1.0),
    1: (0.749894202, 0.687656045),
    4: (0.316227764, 0.223606795),
    8: (0.100000001, 0.0500000007),
    15: (0.0133352149, 0.00363553851),
    16: (0.00999999978, 0.00226562493),
    20: (0.00316227786, 0.000296977785),
    24: (0.00100000005, 1.95312532e-05),
    25: (0.000749894185, 5.37231244e-06),
    31: (0.00013335215, 5.6805294e-07),
}


def test_ref_rope_frequency_table():
    plain = rope_freqs(64, 10000.0)
    yarn = rope_freqs(64, 160000.0, (16.0, 65536, 32.0, 1.0))
    assert plain.dtype == np.float32 and yarn.dtype == np.float32
    for j, (want_plain, want_yarn) in ROPE_TABLE.items():
        assert abs(plain[j] / want_plain - 1) <= 1e-6, (j, plain[j], want_plain)
        assert abs(yarn[j] / want_yarn - 1) <= 1e-6, (j, yarn[j], want_yarn)
    # Pairs 0..15 unscaled, 25..31 divided by the factor (ramp low 15, high 25).
    unscaled = rope_freqs(64, 160000.0)
    np.testing.assert_array_equal(yarn[:16], unscaled[:16])
    np.testing.assert_allclose(yarn[25:], unscaled[25:] / 16, rtol=1e-6)


@pytest.mark.parametrize("n", [32, 128])
def test_ref_hadamard(n):
    h = hadamard_matrix(n, np.float64)
    np.testing.assert_allclose(h @ h.T, np.eye(n), atol=1e-12)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    parity = np.vectorize(lambda a: bin(a).count("1") % 2)(i & j)
    np.testing.assert_array_equal(np.sign(h), np.where(parity, -1.0, 1.0))
    np.testing.assert_allclose(np.abs(h), n ** -0.5)


def test_ref_gguf_reader_layout(tmp_path):
    """A hand-built GGUF v3 (gguf.md §1): every scalar type, nested arrays, alignment 64."""
    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    kv = [
        ("general.alignment", 4, struct.pack("<I", 64)),
        ("u8", 0, struct.pack("<B", 200)), ("i8", 1, struct.pack("<b", -3)),
        ("u16", 2, struct.pack("<H", 60000)), ("i16", 3, struct.pack("<h", -2)),
        ("i32", 5, struct.pack("<i", -7)), ("f32", 6, struct.pack("<f", 1.5)),
        ("bool", 7, struct.pack("<B", 1)), ("str", 8, string("héllo")),
        ("u64", 10, struct.pack("<Q", 2 ** 40)), ("i64", 11, struct.pack("<q", -2 ** 40)),
        ("f64", 12, struct.pack("<d", 0.1)),
        ("arr", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", 0, 4, 128)),
        ("strs", 9, struct.pack("<IQ", 8, 2) + string("a") + string("bc")),
        ("nested", 9, struct.pack("<IQ", 9, 2) + struct.pack("<IQ", 4, 1) + struct.pack("<I", 9)
         + struct.pack("<IQ", 4, 0)),
    ]
    f32 = np.arange(24, dtype=np.float32)
    i32 = np.arange(6, dtype=np.int32)
    infos = [("w", [4, 3, 2], 0, 0, f32), ("t", [3, 2], 26, 128, i32)]  # name, ne, type, offset
    body = struct.pack("<IIQQ", 0x46554747, 3, len(infos), len(kv))
    for key, vtype, value in kv:
        body += string(key) + struct.pack("<I", vtype) + value
    for name, ne, tid, off, _ in infos:
        body += string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        body += struct.pack("<IQ", tid, off)
    data_pos = -(-len(body) // 64) * 64
    blob = bytearray(body + bytes(data_pos - len(body)) + bytes(256))
    for _, _, _, off, arr in infos:
        blob[data_pos + off:data_pos + off + arr.nbytes] = arr.tobytes()
    path = tmp_path / "hand.gguf"
    path.write_bytes(bytes(blob))

    g = GGUFFile(str(path))
    assert g.alignment == 64 and g.data_pos == data_pos
    md = g.metadata
    assert (md["u8"], md["i8"], md["u16"], md["i16"], md["i32"]) == (200, -3, 60000, -2, -7)
    assert (md["f32"], md["bool"], md["str"]) == (1.5, True, "héllo")
    assert (md["u64"], md["i64"], md["f64"]) == (2 ** 40, -2 ** 40, 0.1)
    assert md["arr"] == [0, 4, 128] and md["strs"] == ["a", "bc"] and md["nested"] == [[9], []]
    np.testing.assert_array_equal(g.tensor("w"), f32.reshape(2, 3, 4))   # ne reversed
    np.testing.assert_array_equal(g.tensor("t"), i32.reshape(2, 3))

    # The same file with tensor "t" re-typed to F16: the reader refuses its data.
    bad = bytearray(blob)
    t_type_at = body.rindex(struct.pack("<IQ", 26, 128))
    bad[t_type_at:t_type_at + 4] = struct.pack("<I", 1)
    (tmp_path / "f16.gguf").write_bytes(bytes(bad))
    with pytest.raises(GGUFError):
        GGUFFile(str(tmp_path / "f16.gguf")).tensor("t")
