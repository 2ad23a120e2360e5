/* Finiteness of a float32 or float64 array in one vectorized pass, for the checks of inputs
 * (pylstm._scan.all_finite, the step kernel's checks). */
#ifndef PYLSTM_FINITE_H
#define PYLSTM_FINITE_H

#include <stdint.h>
#include <string.h>

/* Whether p[:n] holds no NaN or inf: a value is not finite exactly when its exponent bits are
 * all ones. Integer operations tell, which vectorize (a float reduction would not without
 * fast-math): the largest masked exponent where a 32-bit max is one vector instruction
 * (SSE4.1 and later, NEON); on SSE2, which has none, an OR of equality masks. */
static inline int pl_all_finitef(const float* p, size_t n)
{
#if defined(__SSE4_1__) || defined(__aarch64__) || defined(_M_ARM64)
    uint32_t most = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, p + i, sizeof bits);
        bits &= 0x7f800000u;
        most = bits > most ? bits : most;
    }
    return most != 0x7f800000u;
#else
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, p + i, sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u ? 0xffffffffu : 0u;
    }
    return bad == 0;
#endif
}

static inline int pl_all_finite(const double* p, size_t n)
{
    uint64_t most = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, p + i, sizeof bits);
        bits &= 0x7ff0000000000000ull;
        most = bits > most ? bits : most;
    }
    return most != 0x7ff0000000000000ull;
}

#endif
