"""The compiled modules' build check: a clear error when pylstm is imported unbuilt.

Python puts the current directory (or a script's directory) first on `sys.path`, so running
Python inside a clone imports the source tree's `pylstm/` rather than an installed one; when the
Cython modules were never built there, the first import of one fails with a message about a
circular import. `unbuilt_error` turns that failure into one that says what happened.
"""

import importlib.machinery
import os

from pylstm import _levels


def unbuilt_modules(package_dir):
    """Dotted names (relative to the package) of the compiled modules that the Cython sources
    under `package_dir` make and that are missing for this Python; of the sources compiled
    once per kernel level (`_levels.SOURCES`), the baseline's."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    missing = []
    for root, _, files in os.walk(package_dir):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext != ".pyx":
                continue
            if stem in _levels.SOURCES and os.path.samefile(root, package_dir):
                stem += "_baseline"
            if not any(os.path.exists(os.path.join(root, stem + suffix))
                       for suffix in suffixes):
                relative = os.path.relpath(os.path.join(root, stem), package_dir)
                missing.append(relative.replace(os.sep, "."))
    return sorted(missing)


def unbuilt_error(error, package, package_dir):
    """An `ImportError` explaining that the compiled modules are not built, if `error` is the
    failed import of one of them; None for any other import error (a missing dependency, a
    name missing from a built module).

    Args:
        error: the `ImportError` raised while importing `package`.
        package: the package's name, `"pylstm"`.
        package_dir: the directory the package was imported from.
    """
    missing = unbuilt_modules(package_dir)
    failed = getattr(error, "name", None) or ""
    for module in missing:
        parent, _, leaf = f"{package}.{module}".rpartition(".")
        if failed == f"{parent}.{leaf}" or (failed == parent and f"'{leaf}'" in str(error)):
            break
    else:
        return None
    return ImportError(
        f"pylstm's compiled core is not built in {package_dir} (no compiled module for "
        f"{', '.join(missing)} for this Python): Python is importing pylstm's source tree, "
        "most likely because the current directory is a clone of the repository. Install "
        "pylstm with `pip install .` and run Python from outside the clone (or with "
        "`python -P`, which keeps the current directory off sys.path), or build the core in "
        "place with `python setup.py build_ext --inplace`.")
