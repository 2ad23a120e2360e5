"""Builds the Cython core. Its BLAS comes from scipy.linalg.cython_blas at run time: no BLAS is
linked here.

The hot kernels (`_core.pyx`, `_scan.pyx`, `_step.pyx`) are compiled once per kernel level of
the target architecture (pylstm/_levels.py: on x86-64 the baseline, AVX2 and AVX-512), into
`pylstm._core_<level>`, `pylstm._scan_<level>` and `pylstm._step_<level>`; `pylstm._kernels` loads the best one the
CPU supports at import. The other modules are compiled once, for the baseline. Cython's C goes
to build/cython/, not into the package.

Environment:
    PYLSTM_DEBUG=1   bounds checks on, no optimisation.
"""

import os
import runpy
import sys
import sysconfig

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("PYLSTM_DEBUG", "") not in ("", "0")
msvc = sys.platform == "win32"
# The target, which differs from the building machine when cross-compiling (cibuildwheel's
# macOS arm64 wheels): "linux-x86_64", "macosx-11.0-arm64", "win-amd64", ...
target = sysconfig.get_platform().rsplit("-", 1)[-1]
levels = runpy.run_path(os.path.join("pylstm", "_levels.py"))["levels_for"](target)

if msvc:
    compile_args = ["/Od"] if debug else ["/O2"]
else:
    # -fno-trapping-math lets the compiler vectorize the branch-free selects of the gate math
    # (the core never reads floating-point exception flags); it does not change any result.
    compile_args = ["-O0", "-g"] if debug else ["-O3", "-fno-trapping-math"]
directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": debug,
}

# Headers each extension includes (setuptools rebuilds when one changes).
gates = ["pylstm/_gates.pxd", "pylstm/_gates.h", "pylstm/_fastmath.h"]
step = ["pylstm/_cell.pxd", "pylstm/_blas.pxd"] + gates


def extension(name, source, depends=(), flags=(), **kwargs):
    """The extension pylstm.NAME from pylstm/SOURCE.pyx, against NumPy's C API."""
    return Extension(f"pylstm.{name}", [f"pylstm/{source}.pyx"],
                     include_dirs=["pylstm", np.get_include()],
                     define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                     extra_compile_args=compile_args + list(flags), depends=list(depends),
                     **kwargs)


def kernels(level):
    """The hot extensions compiled for one level."""
    flags = level.msvc_flags if msvc else level.flags
    return [
        # the thread team of _thread_team.h runs on POSIX threads (one thread on Windows)
        extension(f"_core_{level.name}", "_core",
                  step + ["pylstm/_packed_products.h", "pylstm/_thread_team.h",
                          "pylstm/_affinity.h"], flags,
                  extra_link_args=[] if msvc else ["-pthread"]),
        extension(f"_scan_{level.name}", "_scan", ["pylstm/_finite.h"], flags),
        extension(f"_step_{level.name}", "_step", step + ["pylstm/_finite.h"], flags),
    ]


def cython(extensions, name):
    """cythonize into build/cython/NAME: each level compiles the same .pyx to its own C."""
    return cythonize(extensions, compiler_directives=directives,
                     build_dir=os.path.join("build", "cython", name))


ext_modules = cython([extension("_cpu", "_cpu", ["pylstm/_cpu.h", "pylstm/_affinity.h"]),
                      extension("_memory", "_memory")], "common")
for level in levels:
    ext_modules += cython(kernels(level), level.name)

# the levels' modules compile in parallel, one per core
setup(ext_modules=ext_modules, options={"build_ext": {"parallel": True}})
