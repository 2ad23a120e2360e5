"""Memory and small array helpers shared by the routes: pooled, cache-line aligned buffers
(`pylstm._memory`), the BLAS product split that keeps float32 bits independent of the thread
count, and the gate column slices."""

import functools
import math

import numpy as np

from pylstm import _memory


def empty(shape, dtype):
    """`np.empty(shape, dtype)` on memory kept for reuse between calls (`_memory`), starting
    on a cache line: a loop of calls of one shape touches new pages only once, and rows whose
    size is a multiple of 64 bytes split between a thread team's members on cache-line
    boundaries (no two threads writing one line; benchmarks/README.md, "Route measurements",
    compares it with NumPy's 16-byte alignment)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    return np.frombuffer(_memory.Block(n * dtype.itemsize), dtype, n).reshape(shape)


def contiguous(a):
    """`np.ascontiguousarray(a)`, its copy (if one is needed) in `empty` memory."""
    if a.flags.c_contiguous:
        return a
    out = empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


@functools.lru_cache(maxsize=64)
def dense_batch_sizes(T, B):
    """`(T,)` intc, B at every step: read-only and shared between calls of the same shape."""
    batch_sizes = np.full(T, B, dtype=np.intc)
    batch_sizes.flags.writeable = False
    return batch_sizes


def matmul(a, b):
    """`a @ b` for 2-D arrays on NumPy's BLAS, in float32 bitwise the same on any BLAS thread
    count: a sum over more than 256 terms is split at a multiple of 32, as `_blas.gemm` does
    in the core (pylstm/_blas.pxd explains why)."""
    k = a.shape[1]
    tail = k % 32
    if a.dtype != np.float32 or k <= 256 or not tail:
        return a @ b
    out = a[:, :k - tail] @ b[:k - tail]
    out += a[:, k - tail:] @ b[k - tail:]
    return out


def gate_columns(H):
    """The column slices of gates i, f, g, o in a `(., 4H)` array."""
    return [slice(k * H, (k + 1) * H) for k in range(4)]
