"""Minimal, independent GGUF v3 reader for the NumPy reference (spec: gguf.md §1).

Only what the oracle needs: the header, every metadata value type, tensor infos, alignment and
data offsets, and tensor data for the plain types F32 and I32. Any other tensor type raises
(the oracle runs on float32 twins of the synthetic models, `magnetar synth --types f32`).

Tensors are returned in PyTorch (row-major) order, i.e. the reverse of ggml's `ne`
(gguf.md §3.1): ne = [K, N] becomes an array [N, K]; ne = [K, N, E] becomes [E, N, K].
"""

import mmap
import struct

import numpy as np

GGUF_MAGIC = 0x46554747  # bytes "GGUF" read as little-endian u32 (gguf.md §1.3)
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32  # gguf.md §1.6

# Metadata value type ids (gguf.md §1.4) -> struct format of one scalar.
_SCALAR_FORMATS = {
    0: "<B",  # UINT8
    1: "<b",  # INT8
    2: "<H",  # UINT16
    3: "<h",  # INT16
    4: "<I",  # UINT32
    5: "<i",  # INT32
    6: "<f",  # FLOAT32
    7: "<?",  # BOOL (one byte)
    10: "<Q",  # UINT64
    11: "<q",  # INT64
    12: "<d",  # FLOAT64
}
_TYPE_STRING = 8
_TYPE_ARRAY = 9
_MAX_ARRAY_NESTING = 8

# ggml tensor types this reader decodes (gguf.md §1.7): id -> (name, NumPy dtype).
_TENSOR_TYPES = {
    0: ("F32", np.dtype("<f4")),
    26: ("I32", np.dtype("<i4")),
}


class GGUFError(ValueError):
    """The file is not a readable GGUF v3 file, or holds a tensor type this reader refuses."""


class _Cursor:
    """Bounds-checked little-endian reader over a byte buffer (gguf.md §1.1)."""

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise GGUFError(f"truncated GGUF file: need {n} bytes at offset {self.pos}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def u32(self):
        return self.scalar("<I")

    def u64(self):
        return self.scalar("<Q")

    def string(self):
        # u64 byte length, then UTF-8 bytes, no terminator (gguf.md §1.1).
        return bytes(self.take(self.u64())).decode("utf-8")


def _read_value(cur, vtype, depth=0):
    """One metadata value of type `vtype` (gguf.md §1.4). Arrays become Python lists."""
    if vtype in _SCALAR_FORMATS:
        return cur.scalar(_SCALAR_FORMATS[vtype])
    if vtype == _TYPE_STRING:
        return cur.string()
    if vtype == _TYPE_ARRAY:
        if depth >= _MAX_ARRAY_NESTING:
            raise GGUFError("metadata array nested too deeply")
        etype = cur.u32()
        count = cur.u64()
        if etype in _SCALAR_FORMATS:
            # Packed scalars: decode the whole array at once.
            fmt = _SCALAR_FORMATS[etype]
            size = struct.calcsize(fmt)
            raw = cur.take(count * size)
            return np.frombuffer(raw, dtype=np.dtype(fmt)).tolist()
        return [_read_value(cur, etype, depth + 1) for _ in range(count)]
    raise GGUFError(f"unknown metadata value type {vtype}")


class GGUFTensorInfo:
    """One tensor info record (gguf.md §1.5), with its absolute data offset resolved."""

    def __init__(self, name, ne, type_id, rel_offset):
        self.name = name
        self.ne = ne  # ggml order, fastest-varying first
        self.type_id = type_id
        self.rel_offset = rel_offset
        self.abs_offset = None

    @property
    def shape(self):
        """Row-major (PyTorch) shape: ne reversed (gguf.md §3.1)."""
        return tuple(reversed(self.ne))


class GGUFFile:
    """A parsed GGUF v3 file: `metadata` (dict key -> value), `tensor_infos` (dict name -> info).

    Tensor data is memory-mapped; `tensor(name)` returns a read-only NumPy view.
    """

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        buf = memoryview(self._map)
        cur = _Cursor(buf)

        # §1.3 header.
        magic = cur.u32()
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{path}: bad magic 0x{magic:08x}")
        version = cur.u32()
        if version != GGUF_VERSION:
            raise GGUFError(f"{path}: GGUF version {version}, only 3 is supported")
        tensor_count = cur.u64()
        kv_count = cur.u64()

        # §1.4 metadata records: key, u32 type, value. The first occurrence of a key wins.
        self.metadata = {}
        alignment = DEFAULT_ALIGNMENT
        for _ in range(kv_count):
            key = cur.string()
            vtype = cur.u32()
            value = _read_value(cur, vtype)
            if key in self.metadata:
                continue
            self.metadata[key] = value
            # §1.6: general.alignment counts only as a non-zero UINT32.
            if key == "general.alignment" and vtype == 4 and value != 0:
                alignment = value
        self.alignment = alignment

        # §1.5 tensor info records.
        self.tensor_infos = {}
        for _ in range(tensor_count):
            name = cur.string()
            n_dims = cur.u32()
            if not 1 <= n_dims <= 8:
                raise GGUFError(f"tensor {name}: {n_dims} dimensions")
            ne = [cur.u64() for _ in range(n_dims)]
            type_id = cur.u32()
            rel_offset = cur.u64()
            if name not in self.tensor_infos:
                self.tensor_infos[name] = GGUFTensorInfo(name, ne, type_id, rel_offset)

        # §1.6 data position: the end of the tensor infos, aligned up.
        self.data_pos = cur.pos + (alignment - cur.pos % alignment) % alignment
        for info in self.tensor_infos.values():
            info.abs_offset = self.data_pos + info.rel_offset

    def tensor(self, name):
        """Tensor `name` as a read-only array in row-major shape; F32 and I32 only."""
        info = self.tensor_infos[name]
        if info.type_id not in _TENSOR_TYPES:
            raise GGUFError(
                f"tensor {name}: ggml type {info.type_id} is not supported by the reference "
                "reader (F32 and I32 only; use a model made with --types f32)")
        _, dtype = _TENSOR_TYPES[info.type_id]
        count = int(np.prod(info.ne, dtype=np.int64))
        end = info.abs_offset + count * dtype.itemsize
        if end > len(self._map):
            raise GGUFError(f"tensor {name} points outside the file")
        arr = np.frombuffer(self._map, dtype=dtype, count=count, offset=info.abs_offset)
        return arr.reshape(info.shape)

    def tensors(self):
        """Every tensor as a dict name -> array (raises on any non-F32/I32 tensor)."""
        return {name: self.tensor(name) for name in self.tensor_infos}


def read_gguf(path):
    """Read a GGUF v3 file: returns (metadata dict, tensors dict of NumPy arrays)."""
    gguf = GGUFFile(path)
    return gguf.metadata, gguf.tensors()
