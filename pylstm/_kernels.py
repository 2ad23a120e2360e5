"""The compiled kernels for this CPU: the highest kernel level it supports, chosen at import.

`_core.pyx`, `_scan.pyx` and `_step.pyx` are compiled once per level (pylstm/_levels.py),
into `pylstm._core_<level>`, ...; `core`, `scan` and `step` here are the modules of the level
chosen, which the rest of pylstm calls. The choice is made once, at import: the
highest level built whose CPU features `pylstm._cpu.features()` reports, at most the level
named by the environment variable `PYLSTM_CPU_LEVEL` when it is set (as NumPy's
`NPY_DISABLE_CPU_FEATURES` and OpenBLAS's `OPENBLAS_CORETYPE` let a user step down, for tests
or to work around a problem).
"""

import importlib
import importlib.machinery
import os
import platform

from pylstm import _cpu, _levels

ENVIRONMENT_VARIABLE = "PYLSTM_CPU_LEVEL"


def built_levels(levels, package_dir):
    """The levels among `levels` whose two modules are compiled in `package_dir`."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES

    def built(module):
        return any(os.path.exists(os.path.join(package_dir, module + suffix))
                   for suffix in suffixes)

    return [level for level in levels
            if all(built(f"{source}_{level.name}") for source in _levels.SOURCES)]


def choose(levels, features, cap=None):
    """The level to run, and why, in words.

    Args:
        levels: the levels built, lowest first (`_levels.Level`s).
        features: `{name: bool}`, what `_cpu.features()` reports.
        cap: the name of the highest level allowed (`PYLSTM_CPU_LEVEL`), or None.

    Returns:
        `(level, reason)`: the highest level of `levels` whose features are all present and
        that is not above `cap`, and a sentence saying why it was chosen.

    Raises:
        ValueError: `cap` names no level of `levels`.
    """
    names = [level.name for level in levels]
    if cap is not None and cap not in names:
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must name a kernel level built for this "
                         f"machine ({', '.join(names)}); received {cap!r}")
    top = names.index(cap) if cap is not None else len(levels) - 1
    chosen = 0
    for index in range(1, top + 1):
        if all(features.get(name, False) for name in levels[index].features):
            chosen = index
    if chosen == len(levels) - 1:
        reason = "the highest level built, and the CPU supports it"
    elif chosen == top:
        reason = f"{ENVIRONMENT_VARIABLE}={cap} caps it"
    else:
        following = levels[chosen + 1]
        missing = [name for name in following.features if not features.get(name, False)]
        reason = f"the CPU lacks {', '.join(missing)} for {following.name}"
    return levels[chosen], reason


def _load():
    package_dir = os.path.dirname(os.path.abspath(__file__))
    levels = built_levels(_levels.levels_for(platform.machine()), package_dir)
    if not levels:
        raise ImportError(f"no compiled kernels (pylstm._core_<level>) in {package_dir}",
                          name="pylstm._core_baseline")
    cap = os.environ.get(ENVIRONMENT_VARIABLE) or None
    level, reason = choose(levels, _cpu.features(), cap)
    return (level, reason) + tuple(importlib.import_module(f"pylstm.{source}_{level.name}")
                                   for source in _levels.SOURCES)


level, reason, core, scan, step = _load()
