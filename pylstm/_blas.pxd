# Row-major BLAS over scipy.linalg.cython_blas, for float32 and float64 through fused types.
#
# BLAS is column-major; a row-major matrix is its column-major transpose, so
# C = op(A) op(B) in row-major is computed as C^T = op(B)^T op(A)^T in column-major: the
# operands swap places here, once, and no kernel ever reasons about Fortran order.
# No BLAS is linked at build time: SciPy's is used at run time.

from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """c (m, n) = alpha * op(a) @ op(b) + beta * c, all row-major; op(a) is (m, k)."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


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

    One row (batch 1) goes through gemv, which is faster there than a degenerate gemm.
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
