"""The CPU features that choose the kernel level (pylstm/_levels.py), from CPUID and XCR0
(_cpu.h), what the CPU is and its caches (pylstm/_tuning.py), and the CPU a thread runs on
(_affinity.h). Compiled for the baseline, so that it runs on any CPU of its architecture."""

cdef extern from "_affinity.h" nogil:
    int pl_current_cpu()
    int pl_leave_cpus(const int* taken, int n)

cdef extern from "_cpu.h" nogil:
    enum: PL_CPU_COUNT
    const char* pl_cpu_names[]
    void pl_cpu_features(int* flags)
    void pl_cpu_identity(char* vendor, char* brand, int* family, int* model)
    void pl_cpu_caches(long long* sizes, int* shared)


def features():
    """The x86-64 features the kernel levels need, as `{name: bool}`: `sse2`, `sse4_2`, `avx`,
    `fma`, `avx2`, `avx512f`, `avx512cd`, `avx512bw`, `avx512dq`, `avx512vl` (the CPU has
    it), `os_avx` and `os_avx512` (the operating system saves the AVX / AVX-512 registers).
    All False on other architectures."""
    cdef int flags[PL_CPU_COUNT]
    pl_cpu_features(flags)
    return {pl_cpu_names[i].decode(): bool(flags[i]) for i in range(PL_CPU_COUNT)}


def identity():
    """What CPUID says the CPU is: `{"vendor": str, "brand": str, "family": int, "model": int}`
    (e.g. "AuthenticAMD", "AMD EPYC 9B14 96-Core Processor", 25, 17; the display family and
    model). Empty strings and zeros off x86-64."""
    cdef char vendor[13]
    cdef char brand[49]
    cdef int family, model
    pl_cpu_identity(vendor, brand, &family, &model)
    return {"vendor": vendor.decode("ascii", "replace").strip(),
            "brand": brand.decode("ascii", "replace").strip(),
            "family": family, "model": model}


def caches():
    """Data cache sizes CPUID reports, as `{level: (bytes, logical CPUs sharing it)}` for the
    levels 1 to 3 it reports (L1 data, L2, L3); empty off x86-64 or where CPUID has no cache
    leaf."""
    cdef long long sizes[3]
    cdef int shared[3]
    pl_cpu_caches(sizes, shared)
    return {level + 1: (sizes[level], shared[level]) for level in range(3) if sizes[level] > 0}


def current_cpu():
    """The CPU the calling thread runs on (Linux `sched_getcpu`), -1 where unknown."""
    return pl_current_cpu()


def leave_cpus(cpus):
    """Moves the calling thread off `cpus` (CPU numbers, as `current_cpu` gives; -1 ignored)
    if it runs on one of them, to another CPU its affinity allows, leaving its affinity as
    it was (_affinity.h). For threads that compute side by side and were started or woken on
    a partner's CPU. Returns the CPU it runs on after, -1 where unknown (off Linux, where it
    does nothing)."""
    cdef int taken[64]
    cdef int n = 0, after
    for cpu in cpus:
        if n == 64:
            break
        taken[n] = cpu
        n += 1
    with nogil:
        after = pl_leave_cpus(taken, n)
    return after
