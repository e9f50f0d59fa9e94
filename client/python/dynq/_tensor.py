"""Tensors on the wire: numpy arrays to and from {dtype, shape, data} maps.

The checks mirror libdynqclient's (client/api.c): a wrong input is refused
here, naming the input, before anything is sent; a reply that does not fit
the protocol is EPROTO naming the output, never a crash.
"""
import numpy as np

from ._errors import EDTYPE, EPARAMS, EPROTO, ESHAPE

MAX_RANK = 8

# Wire names and their little-endian numpy dtypes (docs/PROTOCOL.md "Tensors").
DTYPES = {
    "float32": np.dtype("<f4"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
_WIRE_NAME = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}


def wire_dtype(dtype):
    """The wire name of a numpy dtype, or None when the protocol has no such dtype."""
    dt = np.dtype(dtype)
    if dt.kind not in "fiu" or dt.fields is not None:
        return None
    return _WIRE_NAME.get((dt.kind, dt.itemsize))


def as_input(name, value):
    """The C-contiguous little-endian array to send for input `name`.

    numpy arrays keep their dtype, which must be one the protocol has.
    Anything else (lists, scalars) goes through numpy.asarray, and Python
    floats become float32 (ints are already int64), the dtypes models take.
    """
    if not isinstance(name, str) or not name:
        raise EPARAMS(f"input name {name!r} is not a non-empty string")
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as e:
            raise EDTYPE(f"input '{name}': cannot make an array of {type(value).__name__}: {e}") from None
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
    wname = wire_dtype(arr.dtype)
    if wname is None:
        raise EDTYPE(f"input '{name}': dtype {arr.dtype} is not on the wire "
                     f"(float32, int8, uint8, int32, int64); convert it first, "
                     f"e.g. x.astype(numpy.float32)")
    if arr.ndim > MAX_RANK:
        raise ESHAPE(f"input '{name}': rank {arr.ndim} outside 0..{MAX_RANK}")
    want = DTYPES[wname]
    if arr.dtype != want or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=want)
    return wname, arr


def encode_inline(wname, arr):
    # A memoryview of the contiguous array: msgpack writes it as bin
    # without an intermediate bytes copy.
    data = memoryview(arr.reshape(-1)).cast("B") if arr.size else b""
    return {"dtype": wname, "shape": list(arr.shape), "data": data}


def _shape(name, shape):
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise EPROTO(f"infer: output '{name}': 'shape' is not an array of at most {MAX_RANK} dims")
    n = 1
    for d, v in enumerate(shape):
        if type(v) is not int or v < 0:
            raise EPROTO(f"infer: output '{name}': 'shape'[{d}] is not a dimension")
        n *= v
    return n


def _dtype(name, t):
    dt = DTYPES.get(t.get("dtype"))
    if dt is None:
        raise EPROTO(f"infer: output '{name}': unknown dtype {t.get('dtype')!r}")
    return dt


def decode(name, t, regions):
    """numpy array of the output tensor map `t` (inline, or a reference into
    one of this connection's shared-memory regions)."""
    if not isinstance(t, dict):
        raise EPROTO(f"infer: output '{name}' is not a map")
    shape = t.get("shape")
    numel = _shape(name, shape)
    dt = _dtype(name, t)
    ref = t.get("shm")
    if ref is not None:
        if not isinstance(ref, dict):
            raise EPROTO(f"infer: output '{name}': 'shm' is not a map")
        region = regions.get(ref.get("region"))
        off, size = ref.get("offset"), ref.get("size")
        if region is None or type(off) is not int or type(size) is not int:
            raise EPROTO(f"infer: output '{name}': shm reference {ref!r} names no region of this client")
        if size != numel * dt.itemsize or off < 0 or off + size > region.size:
            raise EPROTO(f"infer: output '{name}': shm reference {ref!r} does not fit "
                         f"its shape {shape} or region {region.id} ({region.size} bytes)")
        return region.ndarray(shape, dt, off)
    data = t.get("data")
    if not isinstance(data, (bytes, bytearray)):
        raise EPROTO(f"infer: output '{name}': 'data' is not bin")
    if len(data) != numel * dt.itemsize:
        raise EPROTO(f"infer: output '{name}': {len(data)} bytes of data, shape {shape} needs "
                     f"{numel * dt.itemsize}")
    return np.frombuffer(data, dtype=dt).reshape(shape)

