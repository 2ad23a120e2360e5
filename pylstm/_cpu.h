/* CPU features for the choice of kernel level (pylstm/_levels.py), read from CPUID.
 *
 * A vector instruction set is usable only when the CPU has it and the operating system saves
 * its registers on a context switch; the OS says which register states it saves in XCR0
 * (read with XGETBV once CPUID reports OSXSAVE). Intel SDM vol. 1, 13.2-13.3 and vol. 2A,
 * CPUID leaves 1 and 7.
 *
 * pl_cpu_features fills flags[PL_CPU_COUNT] with 0/1, in the order of pl_cpu_names; every
 * flag is 0 off x86-64. pl_cpu_identity and pl_cpu_caches say what the CPU is and its cache
 * sizes, which pylstm's tuning (pylstm/_tuning.py) derives sizes from; nothing off x86-64.
 */
#ifndef PYLSTM_CPU_H
#define PYLSTM_CPU_H

#include <string.h>

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

/* The vendor string (12 characters) and the brand string (48) into `vendor` and `brand`
 * (NUL-terminated; empty where CPUID has none), and the display family and model (Intel SDM
 * vol. 2A, CPUID leaf 1: the extended fields count from family 15, and from family 6 for the
 * model). */
static inline void pl_cpu_identity(char* vendor, char* brand, int* family, int* model)
{
    unsigned int r[4];
    pl_cpuid(0, 0, r);
    const unsigned int max_leaf = r[0];
    memcpy(vendor, &r[1], 4);
    memcpy(vendor + 4, &r[3], 4);
    memcpy(vendor + 8, &r[2], 4);
    vendor[12] = 0;
    brand[0] = 0;
    *family = *model = 0;
    if (max_leaf >= 1) {
        pl_cpuid(1, 0, r);
        const unsigned int base_family = (r[0] >> 8) & 0xf, base_model = (r[0] >> 4) & 0xf;
        *family = (int)(base_family == 15 ? base_family + ((r[0] >> 20) & 0xff) : base_family);
        *model = (int)(base_family == 6 || base_family == 15
                       ? base_model + (((r[0] >> 16) & 0xf) << 4) : base_model);
    }
    pl_cpuid(0x80000000, 0, r);
    if (r[0] >= 0x80000004) {
        for (unsigned int leaf = 0; leaf < 3; leaf++) {
            pl_cpuid(0x80000002 + leaf, 0, r);
            memcpy(brand + 16 * leaf, r, 16);
        }
        brand[48] = 0;
    }
}

/* Data and unified cache sizes in bytes, per level 1 to 3 (sizes[0..2], 0 where not
 * reported), and how many logical CPUs share each (shared[0..2]). From the deterministic
 * cache parameters: leaf 4 (Intel), leaf 0x8000001D (AMD with topology extensions), both
 * one subleaf per cache (type in EAX[4:0], 0 after the last; level in EAX[7:5]; sharing in
 * EAX[25:14]; ways, partitions and line size in EBX, sets in ECX; AMD APM vol. 3, E.4.15). */
static inline void pl_cpu_caches(long long* sizes, int* shared)
{
    unsigned int r[4];
    unsigned int leaf = 0;
    for (int i = 0; i < 3; i++)
        sizes[i] = shared[i] = 0;
    pl_cpuid(0, 0, r);
    const unsigned int max_leaf = r[0];
    pl_cpuid(0x80000000, 0, r);
    const unsigned int max_extended = r[0];
    if (max_leaf >= 4) {
        pl_cpuid(4, 0, r);
        if (r[0] & 0x1f)
            leaf = 4;
    }
    if (!leaf && max_extended >= 0x8000001D) {
        pl_cpuid(0x80000001, 0, r);
        if ((r[2] >> 22) & 1)   /* TOPOEXT */
            leaf = 0x8000001D;
    }
    if (!leaf)
        return;
    for (unsigned int sub = 0; sub < 16; sub++) {
        pl_cpuid((int)leaf, (int)sub, r);
        const unsigned int type = r[0] & 0x1f, level = (r[0] >> 5) & 0x7;
        if (type == 0)
            break;
        if (type == 2 || level < 1 || level > 3)    /* instruction caches */
            continue;
        sizes[level - 1] = (long long)(((r[1] >> 22) & 0x3ff) + 1) *
                           (((r[1] >> 12) & 0x3ff) + 1) * ((r[1] & 0xfff) + 1) *
                           ((long long)r[2] + 1);
        shared[level - 1] = (int)(((r[0] >> 14) & 0xfff) + 1);
    }
}

#else

static inline void pl_cpu_features(int* flags)
{
    for (int i = 0; i < PL_CPU_COUNT; i++)
        flags[i] = 0;
}

static inline void pl_cpu_identity(char* vendor, char* brand, int* family, int* model)
{
    vendor[0] = brand[0] = 0;
    *family = *model = 0;
}

static inline void pl_cpu_caches(long long* sizes, int* shared)
{
    for (int i = 0; i < 3; i++)
        sizes[i] = shared[i] = 0;
}

#endif

#endif
