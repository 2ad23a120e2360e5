"""Memory for the core's large buffers, kept for reuse between calls.

A training step allocates its cache and gradients afresh (tens of MiB at batch 32, H=128);
from the C library these come as new pages, and the kernel's page faults on first touch,
taken by the thread team's members at once, can cost a training forward more than its
compute (`python -P benchmarks/bench_lstm.py` times the training steps this pool serves).
Here a block whose arrays are all gone is not freed but kept idle, up to a limit, and handed
to the next request of about its size: a loop of training steps of one shape faults its pages
once. PyTorch's caching allocators and oneDNN's scratchpads keep memory for the same reason.

Blocks start on 64-byte boundaries (a cache line: no two members of a team write one line
when rows are multiples of 64 bytes), and new blocks of 4 MiB or more ask Linux for huge
pages, as NumPy does for its arrays. The pool is guarded by the GIL: every function here and
every block's release run holding it.
"""

from cpython.buffer cimport PyBUF_FORMAT
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc

cdef enum:
    _ALIGN = 64      # bytes
    _SLOTS = 32      # idle blocks kept at most

cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Asks Linux for transparent huge pages over a new block of 4 MiB or more, as NumPy does
     * for its own large arrays (fewer TLB misses when a kernel walks a large buffer); a no-op
     * elsewhere, and harmless if refused. */
    static void pl_advise_huge(void* p, size_t size)
    {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (size >= ((size_t)1 << 22)) {
            const size_t offset = 4096 - (size_t)p % 4096;
            (void)madvise((char*)p + offset, size - offset, MADV_HUGEPAGE);
        }
    #else
        (void)p;
        (void)size;
    #endif
    }
    """
    void pl_advise_huge(void* p, size_t size) nogil

# A request may take an idle block up to this many times its size.
cdef Py_ssize_t _SLACK = 2
# Smaller blocks are freed at once: the C library reuses small memory without new pages, and
# they would take slots from the large ones.
cdef Py_ssize_t _MIN_KEPT = 1 << 16

cdef void* _idle_base[_SLOTS]
cdef Py_ssize_t _idle_size[_SLOTS]
cdef int _n_idle = 0
cdef Py_ssize_t _idle_bytes = 0
cdef Py_ssize_t _limit = 512 << 20


cdef void _drop_oldest():
    global _n_idle, _idle_bytes
    free(_idle_base[0])
    _idle_bytes -= _idle_size[0]
    cdef int i
    for i in range(1, _n_idle):
        _idle_base[i - 1] = _idle_base[i]
        _idle_size[i - 1] = _idle_size[i]
    _n_idle -= 1


cdef void _give_back(void* base, Py_ssize_t size):
    """Keeps a released block idle (newest last), dropping the oldest to stay in the limit."""
    global _n_idle, _idle_bytes
    if size > _limit or size < _MIN_KEPT:
        free(base)
        return
    while _n_idle > 0 and (_idle_bytes + size > _limit or _n_idle == _SLOTS):
        _drop_oldest()
    _idle_base[_n_idle] = base
    _idle_size[_n_idle] = size
    _n_idle += 1
    _idle_bytes += size


cdef void* _take(Py_ssize_t size, Py_ssize_t* got):
    """An idle block of `size` to `_SLACK * size` bytes (the smallest), or a new one."""
    global _n_idle, _idle_bytes
    cdef int i, best = -1
    if size > PY_SSIZE_T_MAX - _ALIGN:
        return NULL
    for i in range(_n_idle):
        if size <= _idle_size[i] and _idle_size[i] - size <= (_SLACK - 1) * size and (
                best < 0 or _idle_size[i] < _idle_size[best]):
            best = i
    cdef void* base
    if best >= 0:
        base = _idle_base[best]
        got[0] = _idle_size[best]
        _idle_bytes -= _idle_size[best]
        for i in range(best + 1, _n_idle):
            _idle_base[i - 1] = _idle_base[i]
            _idle_size[i - 1] = _idle_size[i]
        _n_idle -= 1
        return base
    got[0] = size
    base = malloc(size + _ALIGN)
    if base == NULL and _n_idle > 0:
        # short of memory: give back every idle block first
        while _n_idle > 0:
            _drop_oldest()
        base = malloc(size + _ALIGN)
    if base != NULL:
        pl_advise_huge(base, size + _ALIGN)
    return base


cdef class Block:
    """`nbytes` bytes of writable memory, 64-byte aligned, exposed through the buffer
    protocol (`numpy.frombuffer`); kept for reuse when the last array on it is gone."""

    cdef void* base
    cdef char* data
    cdef Py_ssize_t size          # the block's own size, which may exceed nbytes
    cdef Py_ssize_t nbytes

    def __cinit__(self, Py_ssize_t nbytes):
        if nbytes < 0:
            raise ValueError(f"Argument `nbytes` must be >= 0, received {nbytes}.")
        self.base = _take(max(nbytes, 1), &self.size)
        if self.base == NULL:
            raise MemoryError(f"could not allocate {nbytes} bytes")
        self.data = <char*>self.base + (-<uintptr_t>self.base) % _ALIGN
        self.nbytes = nbytes

    def __dealloc__(self):
        if self.base != NULL:
            _give_back(self.base, self.size)

    def __getbuffer__(self, Py_buffer* buf, int flags):
        buf.buf = self.data
        buf.obj = self
        buf.len = self.nbytes
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = b"B"
        buf.ndim = 1
        buf.shape = &self.nbytes
        buf.strides = NULL
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer* buf):
        pass


def set_memory_pool_limit(nbytes):
    """Sets how many bytes of released buffers pylstm keeps for reuse (default 512 MiB).

    pylstm's core keeps the large buffers of a call (a training step's cache and gradients,
    packed kernels, outputs) when their last array is gone and hands them to later calls of
    about the same size, so that a loop of calls touches new memory only once (each new page
    costs a page fault; a training step at B=32 T=100 D=64 H=128 took twice as long from
    them). Idle buffers beyond the limit are freed, oldest first; buffers under 64 KiB and
    over the limit are never kept. Memory held by arrays you still hold is not counted.

    Args:
        nbytes: int >= 0, the most bytes kept idle; 0 keeps none (frees every idle buffer).

    Raises:
        TypeError: `nbytes` is not an integer.
        ValueError: `nbytes` is negative.

    Example:

    >>> import pylstm
    >>> previous = pylstm.get_memory_pool_limit()
    >>> pylstm.set_memory_pool_limit(64 * 2**20)   # keep up to 64 MiB of idle buffers
    >>> pylstm.get_memory_pool_limit()
    67108864
    >>> pylstm.set_memory_pool_limit(previous)
    """
    global _limit
    if isinstance(nbytes, bool) or not hasattr(nbytes, "__index__"):
        raise TypeError(f"Argument `nbytes` must be an integer, received "
                        f"{type(nbytes).__name__}.")
    nbytes = int(nbytes.__index__())
    if nbytes < 0:
        raise ValueError(f"Argument `nbytes` must be >= 0, received {nbytes}.")
    _limit = min(nbytes, PY_SSIZE_T_MAX)
    while _n_idle > 0 and _idle_bytes > _limit:
        _drop_oldest()


def get_memory_pool_limit():
    """The most bytes of released buffers kept for reuse (`set_memory_pool_limit`).

    Returns:
        int, bytes (512 MiB unless changed).

    Example:

    >>> import pylstm
    >>> previous = pylstm.get_memory_pool_limit()
    >>> pylstm.set_memory_pool_limit(2**30)
    >>> pylstm.get_memory_pool_limit() // 2**20   # MiB
    1024
    >>> pylstm.set_memory_pool_limit(previous)
    """
    return _limit


def memory_pool_idle():
    """The released buffers pylstm holds for reuse now.

    Returns:
        `(bytes, buffers)`, two ints.

    Example:

    >>> import numpy as np, pylstm
    >>> from pylstm.layers import LSTM
    >>> _ = LSTM(64)(np.ones((32, 100, 8), "float32"))   # its buffers go back to the pool
    >>> previous = pylstm.get_memory_pool_limit()
    >>> pylstm.set_memory_pool_limit(0)                  # frees every idle buffer
    >>> pylstm.memory_pool_idle()
    (0, 0)
    >>> pylstm.set_memory_pool_limit(previous)
    """
    return _idle_bytes, _n_idle
