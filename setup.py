"""Builds the Cython core. Its BLAS comes from scipy.linalg.cython_blas at run time: no BLAS is
linked here.

Environment:
    PYLSTM_DEBUG=1   bounds checks on, no optimisation.
    PYLSTM_PORTABLE=1  build for the baseline of the architecture. By default the core is
                       built with -march=native, the widest SIMD of the building machine, which
                       is right for `pip install .` (built and used on one machine) but makes a
                       wheel that may not run on older CPUs: set this when building wheels for
                       other machines. `python -P benchmarks/bench_lstm.py` on a build of each
                       kind shows what the wider SIMD is worth.
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

# Headers each extension includes (setuptools rebuilds when one changes).
gates = ["pylstm/_gates.pxd", "pylstm/_gates.h", "pylstm/_fastmath.h"]
step = ["pylstm/_cell.pxd", "pylstm/_blas.pxd"] + gates


def extension(name, depends=(), **kwargs):
    """The extension pylstm.NAME from pylstm/NAME.pyx, against NumPy's C API."""
    return Extension(f"pylstm.{name}", [f"pylstm/{name}.pyx"], include_dirs=[np.get_include()],
                     define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                     extra_compile_args=compile_args, depends=list(depends), **kwargs)


extensions = [
    # the thread team of _thread_team.h runs on POSIX threads (none on Windows)
    extension("_core", step + ["pylstm/_packed_products.h", "pylstm/_thread_team.h"],
              extra_link_args=[] if sys.platform == "win32" else ["-pthread"]),
    extension("_memory"),
    extension("_scan", ["pylstm/_finite.h"]),
    extension("_step", step + ["pylstm/_finite.h"]),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
