"""pylstm/_extensions.py: importing a source tree whose compiled modules are not built."""

import importlib.machinery
import os
import platform
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pylstm
from pylstm import _extensions, _kernels, _levels

PACKAGE = Path(pylstm.__file__).resolve().parent
SOURCE_PACKAGE = Path(__file__).resolve().parents[2] / "pylstm"


@pytest.fixture
def unbuilt_tree(tmp_path):
    """A copy of pylstm's Python and Cython sources, without any compiled module."""
    source = SOURCE_PACKAGE if SOURCE_PACKAGE.is_dir() else PACKAGE
    for path in source.rglob("*"):
        if path.suffix in (".py", ".pyx") and "__pycache__" not in path.parts:
            target = tmp_path / "pylstm" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return tmp_path


def _import_in(tree, prelude=""):
    """Runs `import pylstm` with `tree` as the current directory, as Python run inside a clone
    does, and returns what the ImportError said: `(type, name, message, type of __cause__)`.

    `-S` keeps site's path hooks (an editable install's finder) out; the dependencies come from
    the directories that hold NumPy and site-packages."""
    code = (f"{prelude}\n"
            "try:\n"
            "    import pylstm\n"
            "except ImportError as e:\n"
            "    print(type(e).__name__, e.name, type(e.__cause__).__name__, sep='|')\n"
            "    print(e)\n"
            "else:\n"
            "    print('imported')\n")
    paths = [str(Path(np.__file__).resolve().parents[1])] + site.getsitepackages()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tree, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    head, _, message = result.stdout.partition("\n")
    return head.split("|"), message


def test_unbuilt_source_tree_says_what_to_do(unbuilt_tree):
    (kind, name, cause), message = _import_in(unbuilt_tree)
    assert kind == "ImportError"
    assert cause in ("ImportError", "ModuleNotFoundError")   # chained to the original error
    assert "pylstm's compiled core is not built in" in message
    assert str(unbuilt_tree / "pylstm") in message
    assert "_core" in message
    for advice in ("pip install .", "python -P", "python setup.py build_ext --inplace"):
        assert advice in message
    assert "circular import" not in message


def test_missing_dependency_is_not_masked(unbuilt_tree):
    (kind, name, cause), message = _import_in(unbuilt_tree,
                                              "import sys; sys.modules['numpy'] = None")
    assert name == "numpy"
    assert "compiled core" not in message


def test_unbuilt_modules_names_each_cython_source_without_its_module(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "_core.pyx").write_text("")
    (tmp_path / "sub" / "_team.pyx").write_text("")
    (tmp_path / "_step.pyx").write_text("")
    (tmp_path / ("_step_baseline" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_text("")
    (tmp_path / "_cpu.pyx").write_text("")
    (tmp_path / ("_cpu" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_text("")
    # the kernels' sources are compiled once per level: the baseline's module is the one named
    assert _extensions.unbuilt_modules(tmp_path) == ["_core_baseline", "sub._team"]


def test_unbuilt_error_only_for_the_unbuilt_modules(tmp_path):
    (tmp_path / "_core.pyx").write_text("")
    (tmp_path / "_cpu.pyx").write_text("")
    circular = ImportError("cannot import name '_cpu' from partially initialized module "
                           "'pylstm' (most likely due to a circular import)", name="pylstm")
    assert isinstance(_extensions.unbuilt_error(circular, "pylstm", tmp_path), ImportError)
    missing = ModuleNotFoundError("No module named 'pylstm._core_baseline'",
                                  name="pylstm._core_baseline")
    assert isinstance(_extensions.unbuilt_error(missing, "pylstm", tmp_path), ImportError)
    other = ImportError("cannot import name 'explain' from 'pylstm.ops'", name="pylstm.ops")
    assert _extensions.unbuilt_error(other, "pylstm", tmp_path) is None
    scipy = ModuleNotFoundError("No module named 'scipy'", name="scipy")
    assert _extensions.unbuilt_error(scipy, "pylstm", tmp_path) is None


def test_installed_package_has_every_module_built():
    assert _extensions.unbuilt_modules(PACKAGE) == []
    levels = _levels.levels_for(platform.machine())
    assert _kernels.built_levels(levels, PACKAGE) == list(levels)
