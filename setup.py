"""Builds the Cython core. Its BLAS comes from scipy.linalg.cython_blas at run time: no BLAS is
linked here.

Environment:
    PYLSTM_DEBUG=1   bounds checks on, no optimisation.
    PYLSTM_PORTABLE=1  build for the baseline of the architecture. By default the core is
                       built with -march=native, the widest SIMD of the building machine, which
                       is right for `pip install .` (built and used on one machine) but makes a
                       wheel that may not run on older CPUs: set this when building wheels for
                       other machines. The gate math is about 1.8x faster with AVX-512 than with
                       the x86-64 baseline (benchmarks/README.md).
"""

import os
import platform
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("PYLSTM_DEBUG", "") not in ("", "0")
portable = os.environ.get("PYLSTM_PORTABLE", "") not in ("", "0")
native = not portable and sys.platform != "win32" and platform.machine() in ("x86_64", "AMD64")
# -fno-trapping-math lets the compiler vectorize the branch-free selects of the gate math (the
# core never reads floating-point exception flags); it does not change any result.
compile_args = ["-O0", "-g"] if debug else ["-O3", "-fno-trapping-math"]
if native and not debug:
    compile_args.append("-march=native")
directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": debug,
}

extensions = [
    Extension(
        "pylstm._core",
        ["pylstm/_core.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        # the thread team of _recurrent.h (POSIX threads; none on Windows)
        extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
    ),
    Extension(
        "pylstm._memory",
        ["pylstm/_memory.pyx"],
        extra_compile_args=compile_args,
    ),
    Extension(
        "pylstm._step",
        ["pylstm/_step.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
