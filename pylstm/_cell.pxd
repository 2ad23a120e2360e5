# The one-step LSTM kernel: every single-step caller runs it (_step.StepKernel for streaming
# and layers.LSTMCell, _core.forward_small for calls of a few rows). Legend as in _core.pyx.
#
#     z  += h_{t-1} @ recurrent_kernel           (B, G); z holds bias + x_t @ kernel already
#     i, f, g, o, c_t, m_t: the gate math of one row (_gates.gates_forward) for each sample
#     h_t = m_t @ projection, or m_t              (Sak et al. 2014)
#
# The caller computes the input product (StepKernel per step, forward_small for all steps at
# once), because which BLAS call computes it decides its bits. The recurrent product reads
# h_{t-1} completely before anything is written and c_t is elementwise in c_{t-1}, so the new
# state may be written over the old one (h_new is h, c_new is c).

from cython cimport floating

from pylstm._blas cimport matmul
from pylstm._gates cimport Acts, gates_forward


cdef inline void lstm_step(
        floating* z,                  # IN/OUT (B, G): bias + x_t @ kernel -> activated gates
        const floating* h,            # IN (B, P): h_{t-1}
        const floating* c,            # IN (B, H): c_{t-1}
        floating* h_new,              # OUT (B, P): h_t; may be h
        floating* c_new,              # OUT (B, H): c_t; may be c
        floating* m,                  # scratch (B, H), used with projection
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* projection,   # IN (H, P) or NULL
        const Acts* acts,
        int B, int H, int P) noexcept nogil:
    cdef int G = 4 * H
    cdef Py_ssize_t b
    # z += h_{t-1} @ recurrent_kernel    (B, P) @ (P, G); h is fully read here, before any write
    matmul(B, P, G, 1, h, P, recurrent_kernel, False, 1, z, G)
    for b in range(B):
        gates_forward(acts, z + b * G, c_new + b * H, c + b * H,
                      m + b * H if projection != NULL else h_new + b * P, H, 0, H)
    if projection != NULL:
        # h_t = m_t @ projection    (B, H) @ (H, P)
        matmul(B, H, P, 1, m, H, projection, False, 0, h_new, P)
