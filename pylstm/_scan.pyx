# cython: language_level=3
"""Scans of input arrays for pylstm._validation, without importing any kernel."""

cimport numpy as cnp

cdef extern from "_finite.h" nogil:
    bint pl_all_finitef(const float* p, size_t n)
    bint pl_all_finite(const double* p, size_t n)

cnp.import_array()


def all_finite(cnp.ndarray values):
    """Whether the C-contiguous float32 or float64 array `values` holds no NaN or inf: one
    vectorized pass with no temporary array (what `pylstm._validation.check_finite` uses).
    None for any other array (another dtype, or not C-contiguous): the caller checks those
    with NumPy."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(values)
    cdef int typenum = cnp.PyArray_TYPE(values)
    cdef const void* p = cnp.PyArray_DATA(values)
    cdef bint ok = True
    if not cnp.PyArray_IS_C_CONTIGUOUS(values) or (typenum != cnp.NPY_FLOAT32 and
                                                    typenum != cnp.NPY_FLOAT64):
        return None
    if n:
        with nogil:
            if typenum == cnp.NPY_FLOAT32:
                ok = pl_all_finitef(<const float*> p, n)
            else:
                ok = pl_all_finite(<const double*> p, n)
    return ok
