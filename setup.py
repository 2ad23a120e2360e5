"""Builds the Cython core. Its BLAS comes from scipy.linalg.cython_blas at run time: no BLAS is
linked here. PYLSTM_DEBUG=1 builds with bounds checks and without optimisation."""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("PYLSTM_DEBUG", "") not in ("", "0")
compile_args = ["-O0", "-g"] if debug else ["-O3"]
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
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
