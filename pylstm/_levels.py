"""Kernel levels: the instruction sets the hot kernels are compiled for, one module each.

setup.py compiles the sources of `SOURCES` once per level of the target architecture, into
`pylstm._core_<level>`, `pylstm._scan_<level>` and `pylstm._step_<level>`, with the level's
compiler flags; at import, `pylstm._kernels` loads the highest level whose CPU features `pylstm._cpu`
finds (as NumPy builds a baseline plus dispatch targets). Every level computes the same
operations; levels with FMA round differently from those without, within float32 precision.

setup.py runs this file on its own (no pylstm import), so it imports nothing.
"""

from collections import namedtuple

# The Cython sources compiled once per level, into pylstm.<source>_<level>.
SOURCES = ("_core", "_scan", "_step")

Level = namedtuple("Level", "name features flags msvc_flags description")
Level.__doc__ = """One kernel level.

Attributes:
    name: the level's name, the suffix of its modules and a value of `PYLSTM_CPU_LEVEL`.
    features: what it needs on top of the baseline: keys of `pylstm._cpu.features()`, CPU
        features and the operating system's saving of their registers.
    flags: GCC/Clang flags it is compiled with.
    msvc_flags: MSVC flags it is compiled with.
    description: what it is, in words.
"""

# x86-64, lowest first. AVX-512: F, CD, BW, DQ, VL (Skylake-SP, Zen 4 and later), the set
# x86-64-v4 names; AVX2 with FMA as x86-64-v3 has them (Haswell, Zen 1 and later).
X86_64 = (
    Level("baseline", (), (), (), "x86-64 baseline (SSE2)"),
    Level("avx2", ("avx", "avx2", "fma", "os_avx"), ("-mavx2", "-mfma"), ("/arch:AVX2",),
          "AVX2 and FMA"),
    Level("avx512", ("avx", "avx2", "fma", "os_avx", "avx512f", "avx512cd", "avx512bw",
                     "avx512dq", "avx512vl", "os_avx512"),
          ("-mavx2", "-mfma", "-mavx512f", "-mavx512cd", "-mavx512bw", "-mavx512dq",
           "-mavx512vl"),
          ("/arch:AVX512",), "AVX-512 (F, CD, BW, DQ, VL) with FMA"),
)

AARCH64 = (Level("baseline", (), (), (), "aarch64 baseline (NEON)"),)


def levels_for(machine):
    """The levels built for a `platform.machine()` value, lowest first: x86-64's, aarch64's
    (whose baseline has NEON), or the compiler's default for any other architecture."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        return X86_64
    if machine in ("aarch64", "arm64"):
        return AARCH64
    return (Level("baseline", (), (), (), f"{machine} baseline"),)
