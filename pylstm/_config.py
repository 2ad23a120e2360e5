"""`pylstm.show_config()`: what this installation runs on, for bug reports and tuning."""

import os
import platform
import sys

from pylstm import _cpu, _kernels, _levels, _memory, _plan, _threads, _tuning
from pylstm._version import __version__


def _blas():
    """The BLAS libraries loaded for SciPy, as threadpoolctl reports them."""
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS pylstm's core calls)
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl is not installed: BLAS unknown"}]
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads",
            "filepath")
    return [{key: info[key] for key in keys if key in info}
            for info in threadpool_info() if info.get("user_api") == "blas"]


def config():
    """The configuration as nested dicts (`show_config(mode="dicts")`)."""
    machine = platform.machine()
    level = _kernels.level
    features = _cpu.features()
    return {
        "pylstm": {"version": __version__, "path": os.path.dirname(os.path.abspath(__file__))},
        "python": {"version": platform.python_version(), "implementation":
                   platform.python_implementation(), "platform": sys.platform,
                   "machine": machine},
        "kernels": {
            "level": level.name,
            "description": level.description,
            "reason": _kernels.reason,
            "levels_built": [built.name for built in _kernels.built_levels(
                _levels.levels_for(machine), os.path.dirname(os.path.abspath(__file__)))],
            _kernels.ENVIRONMENT_VARIABLE: os.environ.get(_kernels.ENVIRONMENT_VARIABLE),
            "cpu_features": sorted(name for name, present in features.items() if present),
            "thread_team": "one thread (no thread team on Windows)" if sys.platform == "win32"
                           else "POSIX threads",
        },
        "cpu": _tuning.machine(),
        "tuning": {"tuned_for": _tuning.family_name(_tuning.machine()),
                   **_kernels.core.tile_sizes(), **_plan.parameters(),
                   "basis": _tuning.TUNING.basis},
        "blas": _blas(),
        "threads": {"num_threads": _threads.get_num_threads(),
                    "available": _threads.available(), "cpus": os.cpu_count()},
        "memory_pool": {"limit_bytes": _memory.get_memory_pool_limit(),
                        "idle_bytes": _memory.memory_pool_idle()[0]},
    }


def _lines(value, indent):
    """Text lines of a config value: dicts as `key: value`, one level per indent."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_lines(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {item}")
        return lines
    if isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            lines = []
            for item in value:
                lines.extend(_lines(item, indent))
                lines.append("")
            return lines[:-1]
        return [pad + ", ".join(str(item) for item in value)]
    return [f"{pad}{value}"]


def show_config(mode="stdout"):
    """Print (or return) what this pylstm runs on: its version, the kernel level chosen for this
    CPU and why, the CPU and its cache sizes, the sizes tuned for it, the BLAS SciPy uses, the
    thread settings and the memory-pool limit.

    The kernel level is the instruction set pylstm's compiled kernels were built for (on
    x86-64: `baseline`, `avx2`, `avx512`), chosen at import as the highest one the CPU and the
    operating system support, at most the level in the environment variable
    `PYLSTM_CPU_LEVEL`. Mirrors `numpy.show_config`.

    Args:
        mode: `"stdout"` prints the configuration as text; `"dicts"` returns it as nested dicts
            instead (keys `pylstm`, `python`, `kernels`, `cpu`, `tuning`, `blas`, `threads`,
            `memory_pool`; `config["kernels"]["level"]` is the level's name,
            `config["cpu"]["l2_bytes"]` a core's L2 in bytes, `config["tuning"]` the sizes
            `pylstm.ops.explain`'s plans are chosen with).

    Returns:
        None for `"stdout"`; the dict for `"dicts"`.

    Raises:
        ValueError: `mode` is neither `"stdout"` nor `"dicts"`.

    Example:

    >>> import pylstm
    >>> config = pylstm.show_config(mode="dicts")
    >>> config["kernels"]["level"] in ("baseline", "avx2", "avx512")
    True
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"Argument `mode` must be 'stdout' or 'dicts', received {mode!r}.")
    result = config()
    if mode == "dicts":
        return result
    print("\n".join(_lines(result, 0)))
    return None
