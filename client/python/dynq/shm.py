"""Shared-memory tensors: a sealed memfd handed to dynqd once, then used by reference.

A region is created with ``Client.shm(size)``: a memfd sealed against
shrinking (dynqd refuses one that could shrink under it: a shrink would turn
its reads into SIGBUS) and against further seals, mapped read-write here and
registered with dynqd over the socket (SCM_RIGHTS).  ``region.ndarray(shape,
dtype, offset)`` is a numpy view of part of it; an input that is such a view
travels as a reference instead of its bytes, and an ``out=`` view receives an
output in place.  Regions belong to the connection that registered them.
"""
import fcntl
import mmap
import os

import numpy as np

from ._errors import EINVAL, EPARAMS
from ._tensor import DTYPES, wire_dtype

# Same bound as libdynqclient's dynq_shm_create (a size must fit off_t).
_MAX_SIZE = (1 << 63) - 1


def create_memfd(size):
    """(fd, mmap) of a new sealed memfd of `size` bytes, as dynq_shm_create()."""
    if type(size) is not int or size <= 0 or size > _MAX_SIZE:
        raise EINVAL(f"shm size {size!r} is not a positive byte count")
    fd = os.memfd_create("dynq-tensor", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd, mm


class ShmRegion:
    """A shared-memory region registered with dynqd on one connection.

    Use as a context manager or call close(): that unregisters the region
    and releases the mapping (views still alive keep their pages mapped
    until they are gone).
    """

    def __init__(self, client, size):
        self.size = size
        self.fd, self.mm = create_memfd(size)
        self._bytes = np.frombuffer(self.mm, dtype=np.uint8)
        self.addr = self._bytes.ctypes.data
        self.id = None
        self._client = client
        try:
            self.id = client.shm_register(self.fd, size)
        except BaseException:
            self._release()
            raise
        client._regions[self.id] = self

    def ndarray(self, shape, dtype=np.float32, offset=0):
        """A numpy view of the region: `shape` elements of `dtype` from byte `offset`."""
        if self._bytes is None:
            raise EINVAL(f"shm region {self.id} is closed")
        dt = np.dtype(dtype)
        if wire_dtype(dt) is None:
            raise EPARAMS(f"shm view: dtype {dt} is not on the wire (float32, int8, uint8, int32, int64)")
        dt = DTYPES[wire_dtype(dt)]
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = 1
        for d in shape:
            if type(d) is not int or d < 0:
                raise EPARAMS(f"shm view: shape {shape} has a bad dimension {d!r}")
            count *= d
        if type(offset) is not int or offset < 0 or offset + count * dt.itemsize > self.size:
            raise EPARAMS(f"shm view: {count * dt.itemsize} bytes at offset {offset} do not fit "
                          f"the {self.size}-byte region {self.id}")
        return self._bytes[offset:offset + count * dt.itemsize].view(dt).reshape(shape)

    def ref_of(self, arr):
        """{region, offset, size} when `arr` is a contiguous view inside this region, else None."""
        if self._bytes is None or not arr.flags.c_contiguous:
            return None
        a = arr.__array_interface__["data"][0]
        if a < self.addr or a + arr.nbytes > self.addr + self.size:
            return None
        return {"region": self.id, "offset": a - self.addr, "size": arr.nbytes}

    def _release(self):
        self._bytes = None
        try:
            self.mm.close()
        except BufferError:
            pass  # views still exported: the mapping goes with the last of them
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self):
        if self._bytes is None:
            return
        c, rid = self._client, self.id
        c._regions.pop(rid, None)
        try:
            if not c.closed:
                c.shm_unregister(rid)
        finally:
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<dynq.ShmRegion {self.id} {self.size} bytes>"
