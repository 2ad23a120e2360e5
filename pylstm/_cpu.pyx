"""The CPU features that choose the kernel level (pylstm/_levels.py), from CPUID and XCR0
(_cpu.h). Compiled for the baseline, so that it runs on any CPU of its architecture."""

cdef extern from "_cpu.h" nogil:
    enum: PL_CPU_COUNT
    const char* pl_cpu_names[]
    void pl_cpu_features(int* flags)


def features():
    """The x86-64 features the kernel levels need, as `{name: bool}`: `sse2`, `sse4_2`, `avx`,
    `fma`, `avx2`, `avx512f`, `avx512cd`, `avx512bw`, `avx512dq`, `avx512vl` (the CPU has
    it), `os_avx` and `os_avx512` (the operating system saves the AVX / AVX-512 registers).
    All False on other architectures."""
    cdef int flags[PL_CPU_COUNT]
    pl_cpu_features(flags)
    return {pl_cpu_names[i].decode(): bool(flags[i]) for i in range(PL_CPU_COUNT)}
