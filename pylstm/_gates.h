/* The C half of the gate math (pylstm/_gates.pxd holds the rest): the SELU constants, and the
 * fused float32 rows of Keras's and PyTorch's activations, forward and backward, written in C
 * so that `restrict` lets the compiler vectorize them. */
#ifndef PYLSTM_GATES_H
#define PYLSTM_GATES_H

#include "_fastmath.h"

/* Klambauer et al. 2017 (the values Keras and TensorFlow use); pylstm.activations holds the
 * same numbers for NumPy, and a test checks that they agree (_core.GATE_CONSTANTS). */
#define PL_SELU_ALPHA 1.6732632423543772848170429916717
#define PL_SELU_SCALE 1.0507009873554804934193349852946

/* One row of an LSTM step with Keras's and PyTorch's activations (sigmoid gates i, f, o;
 * tanh candidate and cell output), over units [ua, ub), in one vectorized pass: zb (4H,)
 * holds the pre-activations and gets the activated gates; c_t goes to cb, m_t = o tanh(c_t)
 * to m_b; cpb is c_{t-1}, which cb may be (the step kernel updates its state in place: each
 * element is read before it is written, so cb and cpb are not `restrict`). The same operations
 * per element as applying each activation in its own loop. */
#if defined(_MSC_VER)
#define PL_RESTRICT __restrict
#else
#define PL_RESTRICT restrict
#endif

static inline void pl_standard_gates(float* PL_RESTRICT zb, float* cb, const float* cpb,
                                     float* PL_RESTRICT m_b, int H, int ua, int ub)
{
    float* PL_RESTRICT zi = zb;
    float* PL_RESTRICT zf = zb + H;
    float* PL_RESTRICT zg = zb + 2 * H;
    float* PL_RESTRICT zo = zb + 3 * H;
    for (int j = ua; j < ub; j++) {
        const float gi = pl_sigmoidf(zi[j]);
        const float gf = pl_sigmoidf(zf[j]);
        const float gg = pl_tanhf(zg[j]);
        const float go = pl_sigmoidf(zo[j]);
        const float c = gf * cpb[j] + gi * gg;
        zi[j] = gi;
        zf[j] = gf;
        zg[j] = gg;
        zo[j] = go;
        cb[j] = c;
        m_b[j] = pl_tanhf(c) * go;
    }
}

/* The backward of pl_standard_gates for one row over units [ua, ub): given dm_b = d loss /
 * d m_t, the activated gates zb (4H,), c_t (cnb) and c_{t-1} (cpb), writes the pre-activation
 * gradients dzb (4H,) and takes dcb from d c_t (what later steps sent) to d c_{t-1}. tanh(c_t)
 * is recomputed, not cached. The same operations per element, in the same order, as the
 * per-activation loops of _core.pyx's _backward. */
static inline void pl_standard_backward(float* PL_RESTRICT dzb, float* PL_RESTRICT dcb,
                                        const float* PL_RESTRICT dm_b,
                                        const float* PL_RESTRICT zb,
                                        const float* PL_RESTRICT cnb,
                                        const float* PL_RESTRICT cpb, int H, int ua, int ub)
{
    /* one pointer a gate, indexed by j alone: Python extensions build with -fwrapv, under
     * which GCC does not vectorize zb[k * H + j] */
    const float* PL_RESTRICT zi = zb;
    const float* PL_RESTRICT zf = zb + H;
    const float* PL_RESTRICT zg = zb + 2 * H;
    const float* PL_RESTRICT zo = zb + 3 * H;
    float* PL_RESTRICT di = dzb;
    float* PL_RESTRICT df = dzb + H;
    float* PL_RESTRICT dg = dzb + 2 * H;
    float* PL_RESTRICT dout = dzb + 3 * H;
    for (int j = ua; j < ub; j++) {
        const float gi = zi[j], gf = zf[j], gg = zg[j], go = zo[j];
        const float a = pl_tanhf(cnb[j]);
        const float dm = dm_b[j];
        const float dc = dcb[j] + (dm * go) * (1.0f - a * a);
        dout[j] = (dm * a) * (go * (1.0f - go));
        di[j] = (dc * gg) * (gi * (1.0f - gi));
        df[j] = (dc * cpb[j]) * (gf * (1.0f - gf));
        dg[j] = (dc * gi) * (1.0f - gg * gg);
        dcb[j] = dc * gf;
    }
}

#endif
