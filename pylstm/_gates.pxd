# Gate math of the LSTM kernels (_core.pyx, and the one-step kernel _cell.pxd that _core and
# _step share): activation codes, the elementwise activations and their derivatives, and one
# row of a step's gate math forward and backward. Inline and nogil; the fused float32 rows of
# the standard activations and the SELU constants are its C half, _gates.h.
#
# Activations are chosen by code, one per gate (i, f, g, o) and one for the cell output, and
# applied over contiguous blocks, one plain loop per activation, so the compiler vectorizes
# each: float32 uses the branch-free exp, expm1, sigmoid, tanh and softplus of _fastmath.h
# (about 1e-7 relative error), float64 uses libm. Derivatives come from the post-activation
# values y (tanh' = 1 - y^2, sigmoid' = y (1 - y), ...), except swish's, which needs x.

from cython cimport floating
from libc.math cimport exp, expm1, fabs, log1p, tanh
from libc.string cimport memcpy

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

cdef extern from "_gates.h" nogil:
    const double SELU_ALPHA "PL_SELU_ALPHA"
    const double SELU_SCALE "PL_SELU_SCALE"
    void pl_standard_gates(float* zb, float* cb, const float* cpb, float* m_b, int H, int ua,
                           int ub)
    void pl_standard_backward(float* dzb, float* dcb, const float* dm_b, const float* zb,
                              const float* cnb, const float* cpb, int H, int ua, int ub)

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
    cdef floating one = 1      # a literal 1 would make C compute float32 in double
    if code == ACT_TANH:
        for k in range(n):
            v[k] *= one - y[k] * y[k]
    elif code == ACT_SIGMOID:
        for k in range(n):
            v[k] *= y[k] * (one - y[k])
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


# One row of a step ------------------------------------------------------------------------

cdef struct Acts:
    # The activations of one call: codes of gates i, f, g, o and of the cell output, and
    # whether they are Keras's and PyTorch's (sigmoid gates, tanh candidate and cell output),
    # for which float32 runs the fused rows of _gates.h.
    int code[5]
    bint standard


cdef inline Acts acts_of(const int* codes) noexcept nogil:
    """The Acts of five activation codes (i, f, g, o, cell)."""
    cdef Acts a
    cdef int k
    for k in range(5):
        a.code[k] = codes[k]
    a.standard = (codes[GATE_I] == ACT_SIGMOID and codes[GATE_F] == ACT_SIGMOID and
                  codes[GATE_G] == ACT_TANH and codes[GATE_O] == ACT_SIGMOID and
                  codes[CELL] == ACT_TANH)
    return a


cdef inline void gates_forward(
        const Acts* acts,
        floating* zb,                 # IN/OUT (G,): pre-activations z_t -> activated gates
        floating* cb,                 # OUT (H,): c_t; may be cpb
        const floating* cpb,          # IN (H,): c_{t-1}
        floating* m_b,                # OUT (H,): m_t = o * act_cell(c_t)
        int H, int ua, int ub) noexcept nogil:
    """One row's gate math over units [ua, ub): the only place c_t and m_t are computed."""
    cdef int nu = ub - ua
    cdef Py_ssize_t j
    if floating is float:
        if acts.standard:
            # Keras's and PyTorch's activations in one pass over the units
            pl_standard_gates(zb, cb, cpb, m_b, H, ua, ub)
            return
    _activate(acts.code[GATE_I], zb + ua, nu)
    _activate(acts.code[GATE_F], zb + H + ua, nu)
    _activate(acts.code[GATE_G], zb + 2 * H + ua, nu)
    _activate(acts.code[GATE_O], zb + 3 * H + ua, nu)
    for j in range(ua, ub):
        cb[j] = zb[H + j] * cpb[j] + zb[j] * zb[2 * H + j]
    # m = o * act_cell(c)
    memcpy(m_b + ua, cb + ua, nu * sizeof(floating))
    _activate(acts.code[CELL], m_b + ua, nu)
    for j in range(ua, ub):
        m_b[j] *= zb[3 * H + j]


cdef inline const floating* _at(const floating* p, Py_ssize_t k) noexcept nogil:
    """p + k, or NULL for an absent optional buffer."""
    return p + k if p != NULL else NULL


cdef inline void gates_backward(
        const Acts* acts,
        floating* dzb,                # OUT (G,): d loss / d z_t
        floating* dcb,                # IN/OUT (H,): d c_t from later steps -> d c_{t-1}
        const floating* dm_b,         # IN (H,): d loss / d m_t
        const floating* zb,           # IN (G,): activated gates
        const floating* xb,           # IN (G,): pre-activations z_t, or NULL (swish needs them)
        const floating* cnb,          # IN (H,): c_t
        const floating* cpb,          # IN (H,): c_{t-1}
        floating* a,                  # scratch (H,)
        int H, int ua, int ub) noexcept nogil:
    """The backward of gates_forward for one row over units [ua, ub)."""
    cdef int nu = ub - ua
    cdef Py_ssize_t j
    if floating is float:
        if acts.standard:
            # Keras's and PyTorch's activations in one pass over the units
            pl_standard_backward(dzb, dcb, dm_b, zb, cnb, cpb, H, ua, ub)
            return
    # a = act(c_t), recomputed rather than cached
    memcpy(a + ua, cnb + ua, nu * sizeof(floating))
    _activate(acts.code[CELL], a + ua, nu)
    # do = dm * a * rec'(o)
    for j in range(ua, ub):
        dzb[3 * H + j] = dm_b[j] * a[j]
    _mul_dact(acts.code[GATE_O], dzb + 3 * H + ua, _at(xb, 3 * H + ua), zb + 3 * H + ua, nu)
    # dc_t = dc + dm * o * act'(c_t)   (dzb's first block as scratch)
    for j in range(ua, ub):
        dzb[j] = dm_b[j] * zb[3 * H + j]
    _mul_dact(acts.code[CELL], dzb + ua, cnb + ua, a + ua, nu)
    for j in range(ua, ub):
        dcb[j] += dzb[j]
    # di = dc_t * g * rec'(i); df = dc_t * c_{t-1} * rec'(f); dg = dc_t * i * act'(g)
    for j in range(ua, ub):
        dzb[j] = dcb[j] * zb[2 * H + j]
        dzb[H + j] = dcb[j] * cpb[j]
        dzb[2 * H + j] = dcb[j] * zb[j]
    _mul_dact(acts.code[GATE_I], dzb + ua, _at(xb, ua), zb + ua, nu)
    _mul_dact(acts.code[GATE_F], dzb + H + ua, _at(xb, H + ua), zb + H + ua, nu)
    _mul_dact(acts.code[GATE_G], dzb + 2 * H + ua, _at(xb, 2 * H + ua), zb + 2 * H + ua, nu)
    # dc_{t-1} = dc_t * f
    for j in range(ua, ub):
        dcb[j] *= zb[H + j]
