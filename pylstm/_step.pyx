# cython: language_level=3
"""Single-timestep LSTM kernel, for streaming inference: one step with one call's overhead.

Design:
    Legend as in _core.pyx: B batch, D input features, H units, P output size of the
    recurrent state (H, or the projection size), G = 4H. Gate order i, f, c, o; weights in
    the Keras layout: kernel (D, G), recurrent_kernel (P, G), bias (G,), projection (H, P).

        z   = bias + x_t @ kernel + h_{t-1} @ recurrent_kernel            (B, G)
        i, f, o = recurrent_activation(z_i, z_f, z_o);  g = activation(z_c)
        c_t = f * c_{t-1} + i * g
        m_t = o * activation(c_t);  h_t = m_t @ projection, or m_t        (Sak et al. 2014)
        y_t = h_t

    The input product is computed here, then the one-step kernel (_cell.lstm_step, which
    _core.forward_small runs too) adds the recurrent product and runs the gate math
    (_gates.pxd), so stepping T times gives lstm_forward's result over T steps.

    The products go through gemv at B = 1 and gemm otherwise (_blas.matmul). The new state may
    be written over the old one (h_new is h, c_new is c): streaming with one state and no copy.

    StepKernel holds the weights once (pointers into arrays it keeps alive), so that a step
    from Python costs one method call with five to eight array arguments: no memoryview is
    acquired per call. Python (pylstm/streaming.py) validates the weights once and every
    step's shapes and dtypes, and allocates the buffers; this module trusts them, except for
    finiteness of x_t, h and c, which it checks in the same pass (cheaper than NumPy's
    isfinite) and reports as a status code for Python to raise on.
"""

cimport numpy as cnp
from cython cimport floating
from libc.string cimport memcpy

from pylstm._blas cimport matmul
from pylstm._cell cimport lstm_step
from pylstm._gates cimport Acts, acts_of

cdef extern from "_finite.h" nogil:
    bint pl_all_finitef(const float* p, size_t n)
    bint pl_all_finite(const double* p, size_t n)

cnp.import_array()

# Status codes of StepKernel.run: which input holds NaN or inf (nothing is written then).
cpdef enum:
    STATUS_OK = 0
    STATUS_X_NOT_FINITE = 1
    STATUS_H_NOT_FINITE = 2
    STATUS_C_NOT_FINITE = 3


cdef inline bint _all_finite(const floating* p, Py_ssize_t n) noexcept nogil:
    """True if p[:n] holds no NaN or inf (one vectorized pass over the exponent bits)."""
    if floating is float:
        return pl_all_finitef(p, n)
    else:
        return pl_all_finite(p, n)


cdef struct _Weights:
    # A StepKernel's weights, pointers of its dtype (float or double) into the arrays it keeps.
    const void* kernel            # (D, G)
    const void* recurrent_kernel  # (P, G)
    const void* bias              # (G,) or NULL
    const void* projection        # (H, P) or NULL
    const int* acts               # (5,): i, f, g, o, cell activations
    int D, H, P


cdef int _checked_step(
        const _Weights* w,
        floating* h_new,              # OUT (B, P); may be h
        floating* c_new,              # OUT (B, H); may be c
        floating* y,                  # OUT (B, P) copy of h_new, or NULL
        floating* z,                  # scratch (B, G)
        floating* m,                  # scratch (B, H), used with projection
        const floating* x,            # IN (B, D)
        const floating* h,            # IN (B, P)
        const floating* c,            # IN (B, H)
        int B) noexcept nogil:
    """One step after checking that x, h and c are finite; returns the STATUS_* code."""
    cdef int D = w.D, H = w.H, P = w.P
    cdef int G = 4 * H
    cdef Py_ssize_t b
    cdef floating beta = 1
    cdef const floating* bias = <const floating*> w.bias
    cdef Acts a
    if not _all_finite(x, B * D):
        return STATUS_X_NOT_FINITE
    if not _all_finite(h, B * P):
        return STATUS_H_NOT_FINITE
    if not _all_finite(c, B * H):
        return STATUS_C_NOT_FINITE
    a = acts_of(w.acts)
    if bias != NULL:
        for b in range(B):
            memcpy(z + b * G, bias, G * sizeof(floating))
    else:
        beta = 0
    # z = x_t @ kernel + beta * z    (B, D) @ (D, G)
    matmul(B, D, G, 1, x, D, <const floating*> w.kernel, False, beta, z, G)
    lstm_step(z, h, c, h_new, c_new, m, <const floating*> w.recurrent_kernel,
              <const floating*> w.projection, &a, B, H, P)
    if y != NULL and y != h_new:
        memcpy(y, h_new, B * P * sizeof(floating))
    return STATUS_OK


cdef class StepKernel:
    """One LSTM step with fixed weights: `run` computes the new state for a batch.

    Args:
        kernel: `(D, 4H)` C-contiguous float32 or float64 array.
        recurrent_kernel: `(P, 4H)`, same dtype, C-contiguous.
        bias: `(4H,)` or None.
        projection: `(H, P)` or None (then P = H).
        activations: `(5,)` intc array of _core.ACTIVATION_CODES values for gates i, f, g, o
            and the cell output.

    The arrays are kept (not copied): an in-place change of the weights is seen by the next
    step. Nothing is validated: pylstm.streaming.LSTMStepper does that.
    """
    cdef readonly object kernel, recurrent_kernel, bias, projection, activations
    cdef readonly int D, H, P
    cdef bint is_double
    cdef _Weights w

    def __cinit__(self, cnp.ndarray kernel, cnp.ndarray recurrent_kernel, bias, projection,
                  cnp.ndarray activations):
        self.kernel = kernel
        self.recurrent_kernel = recurrent_kernel
        self.bias = bias
        self.projection = projection
        self.activations = activations
        self.D = kernel.shape[0]
        self.H = kernel.shape[1] // 4
        self.P = recurrent_kernel.shape[0]
        self.is_double = kernel.dtype.itemsize == 8
        self.w.kernel = cnp.PyArray_DATA(kernel)
        self.w.recurrent_kernel = cnp.PyArray_DATA(recurrent_kernel)
        self.w.bias = cnp.PyArray_DATA(bias) if bias is not None else NULL
        self.w.projection = cnp.PyArray_DATA(projection) if projection is not None else NULL
        self.w.acts = <const int*> cnp.PyArray_DATA(activations)
        self.w.D, self.w.H, self.w.P = self.D, self.H, self.P

    def run(self, cnp.ndarray x, cnp.ndarray h, cnp.ndarray c, cnp.ndarray h_new,
            cnp.ndarray c_new, y, cnp.ndarray z, m):
        """One step for a batch of B = x.shape[0] samples, with the GIL released.

        Args (C-contiguous, the weights' dtype, trusted):
            x: `(B, D)` input at this step.  h: `(B, P)`, c: `(B, H)` the state.
            h_new: `(B, P)`, c_new: `(B, H)` written with the new state; may be h and c.
            y: `(B, P)` written with a copy of h_new, or None.
            z: `(B, 4H)` scratch.  m: `(B, H)` scratch with a projection, else None.

        Returns:
            STATUS_OK, or the STATUS_*_NOT_FINITE code of the first input holding NaN or
            inf; then nothing is written.
        """
        cdef int B = x.shape[0]
        cdef void* y_p = cnp.PyArray_DATA(y) if y is not None else NULL
        cdef void* m_p = cnp.PyArray_DATA(m) if m is not None else NULL
        cdef const void* x_p = cnp.PyArray_DATA(x)
        cdef const void* h_p = cnp.PyArray_DATA(h)
        cdef const void* c_p = cnp.PyArray_DATA(c)
        cdef void* hn_p = cnp.PyArray_DATA(h_new)
        cdef void* cn_p = cnp.PyArray_DATA(c_new)
        cdef void* z_p = cnp.PyArray_DATA(z)
        cdef int status
        with nogil:
            if self.is_double:
                status = _checked_step(&self.w, <double*> hn_p, <double*> cn_p, <double*> y_p,
                                       <double*> z_p, <double*> m_p, <const double*> x_p,
                                       <const double*> h_p, <const double*> c_p, B)
            else:
                status = _checked_step(&self.w, <float*> hn_p, <float*> cn_p, <float*> y_p,
                                       <float*> z_p, <float*> m_p, <const float*> x_p,
                                       <const float*> h_p, <const float*> c_p, B)
        return status
