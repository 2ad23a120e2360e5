# Gate math shared by the LSTM kernels (_core.pyx, _step.pyx): activation codes and the
# elementwise activations and their derivatives, inline and nogil.
#
# Activations are chosen by code, one per gate (i, f, g, o) and one for the cell output, and
# applied over contiguous blocks, one plain loop per activation, so the compiler vectorizes
# each: float32 uses the branch-free exp, expm1, sigmoid, tanh and softplus of _fastmath.h
# (about 1e-7 relative error), float64 uses libm. Derivatives come from the post-activation
# values y (tanh' = 1 - y^2, sigmoid' = y (1 - y), ...), except swish's, which needs x.

from cython cimport floating
from libc.math cimport exp, expm1, fabs, log1p, tanh

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

# Klambauer et al. 2017 (the values Keras and TensorFlow use). A .pxd cannot initialise a
# variable, so the constants live in C.
cdef extern from *:
    """
    #define PYLSTM_SELU_ALPHA 1.6732632423543772848170429916717
    #define PYLSTM_SELU_SCALE 1.0507009873554804934193349852946
    """
    const double SELU_ALPHA "PYLSTM_SELU_ALPHA"
    const double SELU_SCALE "PYLSTM_SELU_SCALE"

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
