# Row-major BLAS over scipy.linalg.cython_blas, for float32 and float64 through fused types.
#
# BLAS is column-major; a row-major matrix is its column-major transpose, so
# C = op(A) op(B) in row-major is computed as C^T = op(B)^T op(A)^T in column-major: the
# operands swap places here, once, and no kernel ever reasons about Fortran order.
# No BLAS is linked at build time: SciPy's is used at run time.

from cython cimport floating
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

# On aarch64 OpenBLAS runs a one-row GEMM as a GEMV, whose kernels add each product to c in
# turn where its GEMM kernels add the finished sum: a row's bits would depend on how many rows
# share the call (a chunk of one row against the same row in a larger chunk). There, a one-row
# GEMM that adds to c computes its product into a scratch row, then adds that, as the GEMM
# kernels do. On x86-64 a one-row GEMM already rounds as a row of a larger one.
cdef extern from *:
    """
    #if defined(__aarch64__) || defined(_M_ARM64)
    #define PL_GEMM_ROW_SCRATCH 1
    #else
    #define PL_GEMM_ROW_SCRATCH 0
    #endif
    """
    bint PL_GEMM_ROW_SCRATCH


# float32 results must not depend on the BLAS thread count. OpenBLAS sums a GEMM's k
# products in blocks of GEMM_Q (448 in float32 on SkylakeX), and a remainder between GEMM_Q
# and 2 GEMM_Q in two halves: its threaded driver halves it as (k + 1) / 2, its one-thread
# driver rounds the half up to a multiple of its unroll (16), so unless the half is such a
# multiple the blocks, and the rounding of the sums, differ between one thread and several.
# A float32 GEMM with k over _K_SPLIT_MIN is therefore run as two: the first
# k - k % _K_ALIGN terms, whose remainders halve evenly on both drivers, then the last few,
# a single block. Each element's sum then runs in the same order on any thread count;
# shorter GEMMs are single blocks already (GEMM_Q >= 256). float64 is not split: OpenBLAS's
# double-precision kernels round differently at the edges of the output blocks each thread
# takes, so its results depend on the thread count whatever k is (pylstm/_threads.py).
cdef enum:
    _K_SPLIT_MIN = 256
    _K_ALIGN = 32


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """c (m, n) = alpha * op(a) @ op(b) + beta * c, all row-major; op(a) is (m, k).

    In float32, bitwise the same on any BLAS thread count (see _K_SPLIT_MIN)."""
    cdef int tail = k % _K_ALIGN
    if floating is float and k > _K_SPLIT_MIN and tail:
        _gemm(trans_a, trans_b, m, n, k - tail, alpha, a, lda, b, ldb, beta, c, ldc)
        _gemm(trans_a, trans_b, m, n, tail, alpha,
              a + (k - tail) * (lda if trans_a else 1), lda,
              b + (k - tail) * (1 if trans_b else ldb), ldb, 1, c, ldc)
    else:
        _gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline void _gemm(bint trans_a, bint trans_b, int m, int n, int k,
                       floating alpha, const floating* a, int lda,
                       const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """One BLAS call: c (m, n) = alpha * op(a) @ op(b) + beta * c, all row-major."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating* out = c
    cdef floating* row = NULL
    cdef int j
    if PL_GEMM_ROW_SCRATCH and m == 1 and beta == 1:
        row = <floating*> malloc(n * sizeof(floating))
        if row != NULL:
            out, beta, ldc = row, 0, n
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, out, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, out, &ldc)
    if row != NULL:
        for j in range(n):
            c[j] += row[j]
        free(row)


cdef inline void gemv(bint trans_a, int m, int n, floating alpha, const floating* a, int lda,
                      const floating* x, floating beta, floating* y) noexcept nogil:
    """y = alpha * op(a) @ x + beta * y with a row-major (m, n); unit strides."""
    # Row-major a is column-major a^T, so the transpose flag flips.
    cdef char t = b'N' if trans_a else b'T'
    cdef int one = 1
    if floating is float:
        sgemv(&t, &n, &m, &alpha, <float*> a, &lda, <float*> x, &one, &beta, y, &one)
    else:
        dgemv(&t, &n, &m, &alpha, <double*> a, &lda, <double*> x, &one, &beta, y, &one)


cdef inline void matmul(int rows, int k, int n, floating alpha,
                        const floating* a, int lda, const floating* w, bint trans_w,
                        floating beta, floating* c, int ldc) noexcept nogil:
    """c (rows, n) = alpha * a (rows, k) @ op(w) + beta * c, where op(w) is (k, n).

    One row (batch 1) goes through gemv, which is faster there than a degenerate gemm. A
    gemv large enough for OpenBLAS to share between threads (about 2**19 elements of w) is
    not split: its non-transposed form rounds by how the threads share it (pylstm/_threads.py).
    """
    if rows == 1:
        if trans_w:
            # w is (n, k): c = w @ a
            gemv(False, n, k, alpha, w, k, a, beta, c)
        else:
            # w is (k, n): c = w^T @ a
            gemv(True, k, n, alpha, w, n, a, beta, c)
    else:
        gemm(False, trans_w, rows, n, k, alpha, a, lda, w, k if trans_w else n, beta, c, ldc)
