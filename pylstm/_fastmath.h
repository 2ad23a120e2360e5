/* Branch-free float32 exp, expm1, sigmoid, tanh and softplus that the C compiler can vectorize.
 *
 * libm's expf/tanhf are opaque calls, so a loop over gate values that uses them runs one
 * value at a time; these are plain arithmetic (selects, not branches) and vectorize at -O3.
 *
 * exp: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split of ln2), exp(r) by its degree-7
 * Taylor polynomial (truncation error < 6e-9 relative), times 2^n built in the exponent bits.
 * Inputs are clamped to [-87, 88], where 2^n stays a normal float: exp(-87) ~ 1.6e-38 stands in
 * for anything smaller, which leaves sigmoid and tanh exact to float32 precision.
 * exp over the whole float32 range (the "exponential" activation, whose value is the output):
 * exp(x/2)^2 beyond |x| = 87, which overflows to inf above ln(FLT_MAX) ~ 88.72 and underflows
 * gradually to 0 below -87, as expf does.
 * expm1: exp(x) - 1 loses relative precision near 0, so below |x| = 1/2 its degree-8 Taylor
 * polynomial is used instead (truncation error < 2e-8 relative).
 * tanh: (1 - e) / (1 + e) with e = exp(-2|x|), and its Taylor series x - x^3/3 + 2x^5/15 below
 * |x| = 1/16, where the quotient would lose relative precision; absolute error < 1e-7.
 * softplus: log(1 + exp(x)) = max(x, 0) + log1p(e) with e = exp(-|x|) in (0, 1], and
 * log1p(e) = 2 atanh(s) with s = e / (2 + e) in (0, 1/3], by the odd series of atanh up to s^15
 * (truncation error < 2e-8 relative): no overflow, no cancellation, no log call.
 */
#ifndef PYLSTM_FASTMATH_H
#define PYLSTM_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float pl_expf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;      /* ln2 rounded to 12 significant bits */
    const float ln2_lo = 1.428606765330187045e-06f;
    const float round_magic = 12582912.0f;        /* 1.5 * 2^23: adding it rounds to an int */
    float n, r, p, scale;
    int32_t bits;

    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    n = (x * log2e + round_magic) - round_magic;
    r = (x - n * ln2_hi) - n * ln2_lo;
    p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    bits = ((int32_t)n + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float pl_exp_fullf(float x)
{
    float half = pl_expf(0.5f * x);
    float wide = half * half;
    float inner = pl_expf(x);
    return (x > 87.0f || x < -87.0f) ? wide : inner;
}

static inline float pl_expm1f(float x)
{
    float big = pl_expf(x) - 1.0f;
    float p = 1.0f / 40320.0f;
    p = p * x + 1.0f / 5040.0f;
    p = p * x + 1.0f / 720.0f;
    p = p * x + 1.0f / 120.0f;
    p = p * x + 1.0f / 24.0f;
    p = p * x + 1.0f / 6.0f;
    p = p * x + 0.5f;
    p = p * x + 1.0f;
    float small = p * x;
    return (x > -0.5f && x < 0.5f) ? small : big;
}

static inline float pl_sigmoidf(float x)
{
    return 1.0f / (1.0f + pl_expf(-x));
}

static inline float pl_tanhf(float x)
{
    float ax = x < 0.0f ? -x : x;
    float e = pl_expf(-2.0f * ax);
    float big = (1.0f - e) / (1.0f + e);
    float x2 = x * x;
    float small = ax * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f)));
    float y = ax < 0.0625f ? small : big;
    return x < 0.0f ? -y : y;
}

static inline float pl_softplusf(float x)
{
    float ax = x < 0.0f ? -x : x;
    float e = pl_expf(-ax);
    float s = e / (2.0f + e);
    float s2 = s * s;
    float p = 1.0f / 15.0f;
    p = p * s2 + 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return (x > 0.0f ? x : 0.0f) + 2.0f * s * p;
}

#endif
