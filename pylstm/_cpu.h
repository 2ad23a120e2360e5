/* CPU features for the choice of kernel level (pylstm/_levels.py), read from CPUID.
 *
 * A vector instruction set is usable only when the CPU has it and the operating system saves
 * its registers on a context switch; the OS says which register states it saves in XCR0
 * (read with XGETBV once CPUID reports OSXSAVE). Intel SDM vol. 1, 13.2-13.3 and vol. 2A,
 * CPUID leaves 1 and 7.
 *
 * pl_cpu_features fills flags[PL_CPU_COUNT] with 0/1, in the order of pl_cpu_names; every
 * flag is 0 off x86-64.
 */
#ifndef PYLSTM_CPU_H
#define PYLSTM_CPU_H

enum {
    PL_CPU_SSE2, PL_CPU_SSE42, PL_CPU_AVX, PL_CPU_FMA, PL_CPU_AVX2, PL_CPU_AVX512F,
    PL_CPU_AVX512CD, PL_CPU_AVX512BW, PL_CPU_AVX512DQ, PL_CPU_AVX512VL, PL_CPU_OS_AVX,
    PL_CPU_OS_AVX512, PL_CPU_COUNT
};

static const char* const pl_cpu_names[PL_CPU_COUNT] = {
    "sse2", "sse4_2", "avx", "fma", "avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq",
    "avx512vl", "os_avx", "os_avx512"
};

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)

#if defined(_MSC_VER)
#include <intrin.h>
static inline void pl_cpuid(int leaf, int sub, unsigned int r[4])
{
    int out[4];
    __cpuidex(out, leaf, sub);
    for (int i = 0; i < 4; i++)
        r[i] = (unsigned int)out[i];
}
static inline unsigned long long pl_xcr0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static inline void pl_cpuid(int leaf, int sub, unsigned int r[4])
{
    r[0] = r[1] = r[2] = r[3] = 0;
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
static inline unsigned long long pl_xcr0(void)
{
    unsigned int lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); /* xgetbv */
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static inline void pl_cpu_features(int* flags)
{
    unsigned int r[4], leaf7[4] = {0, 0, 0, 0};
    for (int i = 0; i < PL_CPU_COUNT; i++)
        flags[i] = 0;
    pl_cpuid(0, 0, r);
    const unsigned int max_leaf = r[0];
    if (max_leaf < 1)
        return;
    pl_cpuid(1, 0, r);
    const unsigned int ecx1 = r[2], edx1 = r[3];
    if (max_leaf >= 7)
        pl_cpuid(7, 0, leaf7);
    const unsigned int ebx7 = leaf7[1];
    flags[PL_CPU_SSE2] = (edx1 >> 26) & 1;
    flags[PL_CPU_SSE42] = (ecx1 >> 20) & 1;
    flags[PL_CPU_AVX] = (ecx1 >> 28) & 1;
    flags[PL_CPU_FMA] = (ecx1 >> 12) & 1;
    flags[PL_CPU_AVX2] = (ebx7 >> 5) & 1;
    flags[PL_CPU_AVX512F] = (ebx7 >> 16) & 1;
    flags[PL_CPU_AVX512DQ] = (ebx7 >> 17) & 1;
    flags[PL_CPU_AVX512CD] = (ebx7 >> 28) & 1;
    flags[PL_CPU_AVX512BW] = (ebx7 >> 30) & 1;
    flags[PL_CPU_AVX512VL] = (ebx7 >> 31) & 1;
    if ((ecx1 >> 27) & 1) { /* OSXSAVE: XGETBV is available */
        const unsigned long long xcr0 = pl_xcr0();
        flags[PL_CPU_OS_AVX] = (xcr0 & 0x6) == 0x6;      /* SSE and AVX state */
        flags[PL_CPU_OS_AVX512] = (xcr0 & 0xe6) == 0xe6; /* and opmask, ZMM0-15 high, ZMM16-31 */
    }
}

#else

static inline void pl_cpu_features(int* flags)
{
    for (int i = 0; i < PL_CPU_COUNT; i++)
        flags[i] = 0;
}

#endif

#endif
