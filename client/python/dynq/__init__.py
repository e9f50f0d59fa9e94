"""dynq: Python client for dynqd, the dynamic-INT8 inference daemon.

    import numpy as np, dynq
    with dynq.Client() as c:                      # same socket search as dynqctl
        y = c.infer("linear", {"x": np.ones((1, 768), np.float32)})["y"]

Errors are exceptions named as on the wire (dynq.ENOMODEL, dynq.EOVERLOAD,
...), all subclasses of dynq.DynqError; the retryable ones also subclass
dynq.RetryableError.  See docs/python.md.
"""
from ._errbase import ConnectError, DynqError, RetryableError
from ._errors import *  # noqa: F401,F403  (one class per wire error name)
from ._errors import BY_NAME as ERRORS
from ._tensor import DTYPES
from .client import SYSTEM_SOCKET, Client, InferResult, Pending, Session, socket_paths
from .shm import ShmRegion

__all__ = ["Client", "Session", "Pending", "InferResult", "ShmRegion", "DynqError",
           "RetryableError", "ConnectError", "ERRORS", "DTYPES", "SYSTEM_SOCKET",
           "socket_paths"] + sorted(ERRORS)
