# cython: language_level=3
"""LSTM kernels: forward and backward (BPTT) of one direction over a whole batch of sequences.

Design:
    Legend: B batch, T timesteps, D input features, H units, P output size of the recurrent
    state (P = H, or the projection size when a projection is used), G = 4H.

    Gate order is i, f, c, o (Keras; PyTorch's i, f, g, o is the same order). Weights use the
    Keras layout: kernel (D, G), recurrent_kernel (P, G), bias (G,), projection (H, P):

        z_t = x_t @ kernel + (h_{t-1} * r) @ recurrent_kernel + bias    (B, G)
        i, f, o = recurrent_activation(z_i, z_f, z_o);  g = activation(z_c)
        c_t = f * c_{t-1} + i * g
        m_t = o * activation(c_t)
        h_t = m_t @ projection   (or h_t = m_t without projection; Sak et al. 2014 for LSTMP)

    Memory layout is time-major and C-contiguous: every per-step block is a dense (B, .)
    matrix, and every "all timesteps at once" product is one GEMM over T*B rows.
      gates  (T, B, G)   in: x @ kernel + bias for all steps (one GEMM, done by the caller);
                         out: the activated gates i, f, g, o (the training cache).
      zs     (T, B, G)   out, optional: the gates' pre-activations z_t. Kept only in training
                         and only when a gate's activation needs its input for its derivative
                         (swish: x * sigmoid(x) is not a function of its output alone).
      hs     (S, B, P)   recurrent state h; cs (S, B, H) cell state c.
                         Training: S = T + 1 slots, the initial state in the slot before the
                         first processed step, so that "h_{t-1} for all t" is one contiguous
                         (T*B, P) block for the recurrent_kernel gradient GEMM.
                         Inference: S = 2 slots used alternately; nothing per step is kept.
      Forward direction: step t reads slot t and writes slot t + 1 (slot 0 = initial).
      Reverse direction: step t reads slot t + 1 and writes slot t (slot T = initial).

    Mask (T, B) uint8, optional: on a masked step a sample's h and c are carried unchanged and
    its output repeats its last unmasked output (zeros before any), or is zero with
    zero_output_for_mask: Keras's generic RNN semantics.

    Recurrent dropout mask r (R, B, P), optional, R = 1 (one mask for all four gates) or R = 4
    (one per gate i, f, c, o, as Keras's LSTMCell draws them when recurrent_dropout > 0):
    already scaled (0 or 1 / (1 - rate)) and the same at every step. It multiplies h_{t-1}
    only inside the recurrent product; the carried state h stays unmasked (Keras 3's
    LSTMCell; Gal & Ghahramani 2016). With R = 4 the product is four (B, P) @ (P, H) GEMMs
    on column blocks of recurrent_kernel. The input dropout mask is applied by the caller,
    which owns the x @ kernel GEMM.

    Activations are chosen by code (ACT_* below), one per gate (i, f, g, o) and one for the
    cell output (Keras's recurrent_activation / activation pair is the usual choice; Apple
    BNNS sets each gate's), and applied over contiguous gate blocks, one plain loop per
    activation, so the compiler vectorizes each: float32 uses the branch-free exp, expm1,
    sigmoid, tanh and softplus of _fastmath.h (about 1e-7 relative error), float64 uses libm.
    The codes cover Keras 3's activations that are elementwise and fixed: linear, tanh,
    sigmoid, hard_sigmoid (relu6(x + 3) / 6), relu, elu (alpha 1), selu, softplus, softsign,
    swish (silu), exponential, and Keras 2's legacy_hard_sigmoid (clip(0.2 x + 0.5, 0, 1)).
    Derivatives come from the cached post-activation values y where the activation is
    invertible enough (tanh' = 1 - y^2, sigmoid' = y (1 - y), elu' = y + 1 below 0,
    softplus' = 1 - exp(-y), softsign' = (1 - |y|)^2, exp' = y, ...); swish's comes from its
    input: the zs block for a gate, c_t for the cell output (c_t is always in cs).
    act(c_t) is recomputed in backward rather than cached.

    Extension points: per-sample sequence lengths are a right-padding mask today; computing
    only real steps means letting each step's dense (B, .) blocks shrink to the samples still
    running (sorted by length), which the time-major layout already allows. Reverse direction,
    projection, recurrent dropout and activation codes are arguments of the same two kernels;
    an activation outside the codes (a Python callable) runs on the NumPy path of pylstm.ops.

    Python validates and allocates (pylstm/ops.py); these functions trust their arguments,
    release the GIL for the whole sequence, and allocate nothing inside the time loop.
"""

from cython cimport floating
from libc.math cimport exp, expm1, fabs, log1p, tanh
from libc.string cimport memcpy, memset

from pylstm._blas cimport gemm, matmul

cdef enum:
    ACT_LINEAR = 0
    ACT_TANH = 1
    ACT_SIGMOID = 2
    ACT_HARD_SIGMOID = 3
    ACT_RELU = 4
    ACT_ELU = 5
    ACT_SELU = 6
    ACT_SOFTPLUS = 7
    ACT_SOFTSIGN = 8
    ACT_SWISH = 9
    ACT_EXPONENTIAL = 10
    ACT_LEGACY_HARD_SIGMOID = 11

# Slots of the activation array: the four gates in order, then the cell output.
cdef enum:
    GATE_I = 0
    GATE_F = 1
    GATE_G = 2
    GATE_O = 3
    CELL = 4

ACTIVATION_CODES = {
    "linear": ACT_LINEAR,
    "tanh": ACT_TANH,
    "sigmoid": ACT_SIGMOID,
    "hard_sigmoid": ACT_HARD_SIGMOID,
    "relu": ACT_RELU,
    "elu": ACT_ELU,
    "selu": ACT_SELU,
    "softplus": ACT_SOFTPLUS,
    "softsign": ACT_SOFTSIGN,
    "swish": ACT_SWISH,
    "silu": ACT_SWISH,
    "exponential": ACT_EXPONENTIAL,
    "legacy_hard_sigmoid": ACT_LEGACY_HARD_SIGMOID,
}

# Codes whose derivative needs the activation's input: a gate using one makes forward keep zs.
INPUT_DERIVATIVE_CODES = frozenset({ACT_SWISH})

# Klambauer et al. 2017 (the values Keras and TensorFlow use).
cdef double SELU_ALPHA = 1.6732632423543772848170429916717
cdef double SELU_SCALE = 1.0507009873554804934193349852946


# Activations -----------------------------------------------------------------------------

cdef extern from "_fastmath.h" nogil:
    float pl_expf(float x)
    float pl_exp_fullf(float x)
    float pl_expm1f(float x)
    float pl_sigmoidf(float x)
    float pl_tanhf(float x)
    float pl_softplusf(float x)


cdef inline void _activate(int code, floating* z, Py_ssize_t n) noexcept nogil:
    """z[:n] = act(z[:n]) in place; one plain loop per activation, so each vectorizes.

    float32 uses the vectorizable functions of _fastmath.h; float64 uses libm, exact to
    double precision for gradient checks. Both sides of a select are computed first, so
    the compiler sees a blend, not a branch.
    """
    cdef Py_ssize_t k
    cdef floating v, e
    cdef floating sa = <floating> (SELU_SCALE * SELU_ALPHA)
    cdef floating scale = <floating> SELU_SCALE
    if code == ACT_TANH:
        for k in range(n):
            if floating is float:
                z[k] = pl_tanhf(z[k])
            else:
                z[k] = tanh(z[k])
    elif code == ACT_SIGMOID:
        for k in range(n):
            if floating is float:
                z[k] = pl_sigmoidf(z[k])
            else:
                z[k] = 1 / (1 + exp(-z[k]))
    elif code == ACT_HARD_SIGMOID:
        # Keras 3: relu6(x + 3) / 6
        for k in range(n):
            v = (z[k] + 3) / 6
            z[k] = 0 if v < 0 else (1 if v > 1 else v)
    elif code == ACT_RELU:
        for k in range(n):
            z[k] = z[k] if z[k] > 0 else 0
    elif code == ACT_ELU:
        for k in range(n):
            v = z[k]
            e = pl_expm1f(v) if floating is float else expm1(v)
            z[k] = v if v > 0 else e
    elif code == ACT_SELU:
        for k in range(n):
            v = z[k]
            e = pl_expm1f(v) if floating is float else expm1(v)
            z[k] = scale * v if v > 0 else sa * e
    elif code == ACT_SOFTPLUS:
        for k in range(n):
            if floating is float:
                z[k] = pl_softplusf(z[k])
            else:
                v = z[k]
                z[k] = (v if v > 0 else 0) + log1p(exp(-fabs(v)))
    elif code == ACT_SOFTSIGN:
        for k in range(n):
            v = z[k]
            z[k] = v / (1 + (v if v > 0 else -v))
    elif code == ACT_SWISH:
        for k in range(n):
            if floating is float:
                z[k] = z[k] * pl_sigmoidf(z[k])
            else:
                z[k] = z[k] / (1 + exp(-z[k]))
    elif code == ACT_EXPONENTIAL:
        for k in range(n):
            if floating is float:
                z[k] = pl_exp_fullf(z[k])
            else:
                z[k] = exp(z[k])
    elif code == ACT_LEGACY_HARD_SIGMOID:
        # Keras 2: clip(0.2 x + 0.5, 0, 1)
        for k in range(n):
            v = <floating> 0.2 * z[k] + <floating> 0.5
            z[k] = 0 if v < 0 else (1 if v > 1 else v)


cdef inline void _mul_dact(int code, floating* v, const floating* x, const floating* y,
                           Py_ssize_t n) noexcept nogil:
    """v[:n] *= act'(x), written in terms of y = act(x); only swish reads x (else NULL is fine).

    At the kinks the one-sided value TensorFlow's gradients use: elu' = selu' / scale = 1 and
    relu' = 0 at 0.
    """
    cdef Py_ssize_t k
    cdef floating d, e, s
    cdef floating sa = <floating> (SELU_SCALE * SELU_ALPHA)
    cdef floating scale = <floating> SELU_SCALE
    if code == ACT_TANH:
        for k in range(n):
            v[k] *= 1 - y[k] * y[k]
    elif code == ACT_SIGMOID:
        for k in range(n):
            v[k] *= y[k] * (1 - y[k])
    elif code == ACT_HARD_SIGMOID:
        for k in range(n):
            v[k] *= <floating> (1.0 / 6.0) if (y[k] > 0 and y[k] < 1) else 0
    elif code == ACT_RELU:
        for k in range(n):
            v[k] *= 1 if y[k] > 0 else 0
    elif code == ACT_ELU:
        for k in range(n):
            v[k] *= y[k] + 1 if y[k] < 0 else 1
    elif code == ACT_SELU:
        for k in range(n):
            v[k] *= y[k] + sa if y[k] < 0 else scale
    elif code == ACT_SOFTPLUS:
        # sigmoid(x) = 1 - exp(-softplus(x))
        for k in range(n):
            if floating is float:
                v[k] *= -pl_expm1f(-y[k])
            else:
                v[k] *= -expm1(-y[k])
    elif code == ACT_SOFTSIGN:
        # 1 / (1 + |x|)^2 = (1 - |y|)^2
        for k in range(n):
            d = 1 - (y[k] if y[k] > 0 else -y[k])
            v[k] *= d * d
    elif code == ACT_SWISH:
        # s (1 + x (1 - s)) with 1 - s = e s, e = exp(-x): no cancellation for large x. The
        # float64 exp is clamped like pl_expf's, so that e s stays finite (s = 0 at e = inf).
        for k in range(n):
            if floating is float:
                e = pl_expf(-x[k])
            else:
                e = exp(-x[k] if x[k] > -700 else 700)
            s = 1 / (1 + e)
            v[k] *= s * (1 + x[k] * (e * s))
    elif code == ACT_EXPONENTIAL:
        for k in range(n):
            v[k] *= y[k]
    elif code == ACT_LEGACY_HARD_SIGMOID:
        for k in range(n):
            v[k] *= <floating> 0.2 if (y[k] > 0 and y[k] < 1) else 0


cdef inline const floating* _offset(const floating* p, Py_ssize_t k) noexcept nogil:
    """p + k, or NULL for an absent optional buffer."""
    return p + k if p != NULL else NULL


# Recurrent product with optional recurrent dropout -----------------------------------------

cdef inline void _add_recurrent(
        floating* z,                  # IN/OUT (B, G): gets (h_{t-1} * r) @ recurrent_kernel
        const floating* h_prev,       # IN (B, P)
        floating* hm,                 # scratch (B, P), used with recurrent dropout
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* rdrop,        # IN (R, B, P) or NULL
        int R, int B, int H, int P) noexcept nogil:
    cdef int G = 4 * H
    cdef Py_ssize_t k, j
    if rdrop == NULL:
        # z += h_{t-1} @ recurrent_kernel    (B, P) @ (P, G)
        matmul(B, P, G, 1, h_prev, P, recurrent_kernel, False, 1, z, G)
        return
    for k in range(R):
        for j in range(B * P):
            hm[j] = h_prev[j] * rdrop[k * B * P + j]
        if R == 1:
            # z += (h_{t-1} * r) @ recurrent_kernel    (B, P) @ (P, G)
            matmul(B, P, G, 1, hm, P, recurrent_kernel, False, 1, z, G)
        else:
            # z[:, kH:(k+1)H] += (h_{t-1} * r_k) @ recurrent_kernel[:, kH:(k+1)H]    (B, P) @ (P, H)
            gemm(False, False, B, H, P, 1, hm, P, recurrent_kernel + k * H, G, 1, z + k * H, G)


cdef inline void _recurrent_grad(
        floating* out,                # OUT (B, P): d loss / d h_{t-1}
        const floating* dz,           # IN (B, G)
        floating* hm,                 # scratch (B, P), used with four recurrent dropout masks
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* rdrop,        # IN (R, B, P) or NULL
        int R, int B, int H, int P) noexcept nogil:
    cdef int G = 4 * H
    cdef Py_ssize_t k, j
    cdef const floating* r
    if rdrop == NULL or R == 1:
        # out = dz @ recurrent_kernel^T    (B, G) @ (G, P)
        matmul(B, G, P, 1, dz, G, recurrent_kernel, True, 0, out, P)
        if rdrop != NULL:
            for j in range(B * P):
                out[j] *= rdrop[j]
        return
    for k in range(R):
        # hm = dz[:, kH:(k+1)H] @ recurrent_kernel[:, kH:(k+1)H]^T    (B, H) @ (H, P)
        gemm(False, True, B, P, H, 1, dz + k * H, G, recurrent_kernel + k * H, G, 0, hm, P)
        r = rdrop + k * B * P
        if k == 0:
            for j in range(B * P):
                out[j] = hm[j] * r[j]
        else:
            for j in range(B * P):
                out[j] += hm[j] * r[j]


# Forward ---------------------------------------------------------------------------------

cdef void _forward(
        floating* gates,              # IN/OUT (T, B, G): x @ kernel + bias -> activated gates
        floating* zs,                 # OUT (T, B, G) gate pre-activations, or NULL
        floating* hs,                 # IN/OUT (S, B, P): initial h in its slot; h per step
        floating* cs,                 # IN/OUT (S, B, H): initial c in its slot; c per step
        floating* ms,                 # OUT (T, B, H) m_t cache, or NULL (training with projection)
        floating* m,                  # scratch (B, H), used with projection
        floating* y,                  # OUT (T, B, P) outputs, or NULL
        floating* y_prev,             # OUT (B, P): last unmasked output per sample (zeros in)
        floating* hm,                 # scratch (B, P), used with recurrent dropout
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* projection,   # IN (H, P) or NULL
        const unsigned char* mask,    # IN (T, B) or NULL
        const floating* rdrop,        # IN (R, B, P) recurrent dropout mask, or NULL
        int R, int T, int B, int H, int P, bint reverse, bint training, bint zero_output,
        const int* acts) noexcept nogil:              # IN (5,): i, f, g, o, cell activations
    cdef int G = 4 * H
    cdef Py_ssize_t t, step, b, j, prev, new
    cdef floating* z
    cdef floating* zb
    cdef floating* cb
    cdef const floating* cpb
    cdef floating* h_prev
    cdef floating* h_new
    cdef floating* c_prev
    cdef floating* c_new
    cdef floating* m_b
    cdef bint masked

    for step in range(T):
        t = T - 1 - step if reverse else step
        prev = t + 1 if reverse else t
        new = t if reverse else t + 1
        if not training:
            prev = prev % 2
            new = new % 2
        h_prev = hs + prev * B * P
        h_new = hs + new * B * P
        c_prev = cs + prev * B * H
        c_new = cs + new * B * H
        z = gates + t * B * G

        _add_recurrent(z, h_prev, hm, recurrent_kernel, rdrop, R, B, H, P)
        if zs != NULL:
            memcpy(zs + t * B * G, z, B * G * sizeof(floating))

        for b in range(B):
            masked = mask != NULL and mask[t * B + b] == 0
            if masked:
                memcpy(c_new + b * H, c_prev + b * H, H * sizeof(floating))
                continue
            zb = z + b * G
            _activate(acts[GATE_I], zb, H)
            _activate(acts[GATE_F], zb + H, H)
            _activate(acts[GATE_G], zb + 2 * H, H)
            _activate(acts[GATE_O], zb + 3 * H, H)
            cb = c_new + b * H
            cpb = c_prev + b * H
            for j in range(H):
                cb[j] = zb[H + j] * cpb[j] + zb[j] * zb[2 * H + j]
            # m = o * act_cell(c)
            m_b = m + b * H if projection != NULL else h_new + b * P
            memcpy(m_b, cb, H * sizeof(floating))
            _activate(acts[CELL], m_b, H)
            for j in range(H):
                m_b[j] *= zb[3 * H + j]

        if projection != NULL:
            if ms != NULL:
                memcpy(ms + t * B * H, m, B * H * sizeof(floating))
            # h_t = m_t @ projection    (B, H) @ (H, P)
            matmul(B, H, P, 1, m, H, projection, False, 0, h_new, P)

        for b in range(B):
            masked = mask != NULL and mask[t * B + b] == 0
            if masked:
                memcpy(h_new + b * P, h_prev + b * P, P * sizeof(floating))
                if y != NULL:
                    if zero_output:
                        memset(y + (t * B + b) * P, 0, P * sizeof(floating))
                    else:
                        memcpy(y + (t * B + b) * P, y_prev + b * P, P * sizeof(floating))
            else:
                memcpy(y_prev + b * P, h_new + b * P, P * sizeof(floating))
                if y != NULL:
                    memcpy(y + (t * B + b) * P, h_new + b * P, P * sizeof(floating))


def forward(floating[:, :, ::1] gates, floating[:, :, ::1] zs, floating[:, :, ::1] hs,
            floating[:, :, ::1] cs, floating[:, :, ::1] ms, floating[:, ::1] m,
            floating[:, :, ::1] y, floating[:, ::1] y_prev, floating[:, ::1] hm,
            const floating[:, ::1] recurrent_kernel, const floating[:, ::1] projection,
            const unsigned char[:, ::1] mask, const floating[:, :, ::1] recurrent_dropout_mask,
            bint reverse, bint training, bint zero_output, const int[::1] activations):
    """Runs the recurrence over all T steps (see the module's Design note for the buffers).

    Optional buffers (zs, ms, m, y, hm, projection, mask, recurrent_dropout_mask) are passed
    as None; hm `(B, P)` is needed with `recurrent_dropout_mask` `(R, B, P)`, R = 1 or 4.
    `activations` holds the five ACTIVATION_CODES of gates i, f, g, o and of the cell output.
    Shapes are trusted: pylstm.ops validates them.
    """
    cdef int T = gates.shape[0]
    cdef int B = gates.shape[1]
    cdef int H = gates.shape[2] // 4
    cdef int P = hs.shape[2]
    cdef int R = recurrent_dropout_mask.shape[0] if recurrent_dropout_mask is not None else 0
    with nogil:
        _forward(&gates[0, 0, 0],
                 &zs[0, 0, 0] if zs is not None else NULL,
                 &hs[0, 0, 0], &cs[0, 0, 0],
                 &ms[0, 0, 0] if ms is not None else NULL,
                 &m[0, 0] if m is not None else NULL,
                 &y[0, 0, 0] if y is not None else NULL,
                 &y_prev[0, 0],
                 &hm[0, 0] if hm is not None else NULL,
                 &recurrent_kernel[0, 0],
                 &projection[0, 0] if projection is not None else NULL,
                 &mask[0, 0] if mask is not None else NULL,
                 &recurrent_dropout_mask[0, 0, 0] if recurrent_dropout_mask is not None
                 else NULL,
                 R, T, B, H, P, reverse, training, zero_output, &activations[0])


# Backward --------------------------------------------------------------------------------

cdef void _backward(
        floating* dz,                 # OUT (T, B, G): d loss / d gate pre-activations
        floating* dh,                 # IN/OUT (B, P): d h_n in, d h_0 out
        floating* dc,                 # IN/OUT (B, H): d c_n in, d c_0 out
        floating* dy_carry,           # IN/OUT (B, P): d y_last in; scratch
        floating* dhs,                # OUT (T, B, P): d h_t per step (projection), or NULL
        floating* dm,                 # scratch (B, H), used with projection
        floating* g,                  # scratch (B, P)
        floating* a,                  # scratch (H,)
        floating* hm,                 # scratch (B, P), used with four recurrent dropout masks
        const floating* dy,           # IN (T, B, P) or NULL
        const floating* gates,        # IN (T, B, G) activated gates
        const floating* zs,           # IN (T, B, G) gate pre-activations, or NULL
        const floating* cs,           # IN (T + 1, B, H) cell states
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* projection,   # IN (H, P) or NULL
        const unsigned char* mask,    # IN (T, B) or NULL
        const floating* rdrop,        # IN (R, B, P) recurrent dropout mask, or NULL
        int R, int T, int B, int H, int P, bint reverse, bint zero_output,
        const int* acts) noexcept nogil:              # IN (5,): i, f, g, o, cell activations
    cdef int G = 4 * H
    cdef Py_ssize_t t, step, b, j, k
    cdef const floating* zb
    cdef const floating* xb
    cdef floating* dzb
    cdef const floating* c_prev
    cdef const floating* c_new
    cdef floating* dm_b
    cdef floating* dcb
    cdef const floating* cnb
    cdef const floating* cpb

    for step in range(T):
        t = step if reverse else T - 1 - step
        c_prev = cs + (t + 1 if reverse else t) * B * H
        c_new = cs + (t if reverse else t + 1) * B * H

        # g = d loss / d h_t, for the samples that ran this step
        for b in range(B):
            if mask != NULL and mask[t * B + b] == 0:
                if dy != NULL and not zero_output:
                    for k in range(P):
                        dy_carry[b * P + k] += dy[(t * B + b) * P + k]
                continue
            for k in range(P):
                g[b * P + k] = dh[b * P + k] + dy_carry[b * P + k]
                dy_carry[b * P + k] = 0
            if dy != NULL:
                for k in range(P):
                    g[b * P + k] += dy[(t * B + b) * P + k]

        if projection != NULL:
            memcpy(dhs + t * B * P, g, B * P * sizeof(floating))
            # dm = g @ projection^T    (B, P) @ (P, H)
            matmul(B, P, H, 1, g, P, projection, True, 0, dm, H)

        for b in range(B):
            dzb = dz + (t * B + b) * G
            if mask != NULL and mask[t * B + b] == 0:
                memset(dzb, 0, G * sizeof(floating))
                if dhs != NULL:
                    memset(dhs + (t * B + b) * P, 0, P * sizeof(floating))
                continue
            zb = gates + (t * B + b) * G
            xb = _offset(zs, (t * B + b) * G)
            dm_b = (dm + b * H) if projection != NULL else (g + b * P)
            dcb = dc + b * H
            cnb = c_new + b * H
            cpb = c_prev + b * H
            # a = act(c_t), recomputed rather than cached
            memcpy(a, cnb, H * sizeof(floating))
            _activate(acts[CELL], a, H)
            # do = dm * a * rec'(o)
            for j in range(H):
                dzb[3 * H + j] = dm_b[j] * a[j]
            _mul_dact(acts[GATE_O], dzb + 3 * H, _offset(xb, 3 * H), zb + 3 * H, H)
            # dc_t = dc + dm * o * act'(c_t)   (dzb's first block as scratch)
            for j in range(H):
                dzb[j] = dm_b[j] * zb[3 * H + j]
            _mul_dact(acts[CELL], dzb, cnb, a, H)
            for j in range(H):
                dcb[j] += dzb[j]
            # di = dc_t * g * rec'(i); df = dc_t * c_{t-1} * rec'(f); dg = dc_t * i * act'(g)
            for j in range(H):
                dzb[j] = dcb[j] * zb[2 * H + j]
                dzb[H + j] = dcb[j] * cpb[j]
                dzb[2 * H + j] = dcb[j] * zb[j]
            _mul_dact(acts[GATE_I], dzb, xb, zb, H)
            _mul_dact(acts[GATE_F], dzb + H, _offset(xb, H), zb + H, H)
            _mul_dact(acts[GATE_G], dzb + 2 * H, _offset(xb, 2 * H), zb + 2 * H, H)
            # dc_{t-1} = dc_t * f
            for j in range(H):
                dcb[j] *= zb[H + j]

        # d h_{t-1} = (dz_t @ recurrent_kernel^T) * r    (B, G) @ (G, P); masked rows carry dh
        if mask == NULL:
            _recurrent_grad(dh, dz + t * B * G, hm, recurrent_kernel, rdrop, R, B, H, P)
        else:
            _recurrent_grad(g, dz + t * B * G, hm, recurrent_kernel, rdrop, R, B, H, P)
            for b in range(B):
                if mask[t * B + b] != 0:
                    memcpy(dh + b * P, g + b * P, P * sizeof(floating))


def backward(floating[:, :, ::1] dz, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, ::1] dy_carry, floating[:, :, ::1] dhs, floating[:, ::1] dm,
             floating[:, ::1] g, floating[::1] a, floating[:, ::1] hm,
             const floating[:, :, ::1] dy, const floating[:, :, ::1] gates,
             const floating[:, :, ::1] zs, const floating[:, :, ::1] cs,
             const floating[:, ::1] recurrent_kernel, const floating[:, ::1] projection,
             const unsigned char[:, ::1] mask, const floating[:, :, ::1] recurrent_dropout_mask,
             bint reverse, bint zero_output, const int[::1] activations):
    """Backpropagates through all T steps, filling dz (see the module's Design note).

    `zs` is the forward's pre-activation cache (None when no gate needs it); hm `(B, P)` is
    needed with a `recurrent_dropout_mask` of four masks. The weight gradients are then GEMMs
    over all timesteps at once (pylstm.ops).
    """
    cdef int T = dz.shape[0]
    cdef int B = dz.shape[1]
    cdef int H = dz.shape[2] // 4
    cdef int P = dh.shape[1]
    cdef int R = recurrent_dropout_mask.shape[0] if recurrent_dropout_mask is not None else 0
    with nogil:
        _backward(&dz[0, 0, 0], &dh[0, 0], &dc[0, 0], &dy_carry[0, 0],
                  &dhs[0, 0, 0] if dhs is not None else NULL,
                  &dm[0, 0] if dm is not None else NULL,
                  &g[0, 0], &a[0],
                  &hm[0, 0] if hm is not None else NULL,
                  &dy[0, 0, 0] if dy is not None else NULL,
                  &gates[0, 0, 0],
                  &zs[0, 0, 0] if zs is not None else NULL,
                  &cs[0, 0, 0], &recurrent_kernel[0, 0],
                  &projection[0, 0] if projection is not None else NULL,
                  &mask[0, 0] if mask is not None else NULL,
                  &recurrent_dropout_mask[0, 0, 0] if recurrent_dropout_mask is not None
                  else NULL,
                  R, T, B, H, P, reverse, zero_output, &activations[0])


# GEMMs over all timesteps -----------------------------------------------------------------

def matmul_acc(const floating[:, ::1] a, const floating[:, ::1] w, floating[:, ::1] out,
               bint trans_a, bint trans_w, floating beta):
    """out = op(a) @ op(w) + beta * out, through SciPy's BLAS with the GIL released.

    Every dimension must be at least 1 (pylstm.ops validates this).
    """
    cdef int m = out.shape[0]
    cdef int n = out.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    with nogil:
        gemm(trans_a, trans_w, m, n, k, 1, &a[0, 0], a.shape[1], &w[0, 0], w.shape[1],
             beta, &out[0, 0], n)


def activate(floating[::1] z, int activation):
    """Applies the core's activation (an ACTIVATION_CODES value) to z in place; for tests."""
    with nogil:
        _activate(activation, &z[0], z.shape[0])


def activation_grad(floating[::1] v, const floating[::1] x, const floating[::1] y,
                    int activation):
    """v *= act'(x) in place, given x and y = act(x) as the kernels have them; for tests."""
    with nogil:
        _mul_dact(activation, &v[0], &x[0], &y[0], v.shape[0])
