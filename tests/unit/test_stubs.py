"""The type stubs of the compiled modules (pylstm/_*.pyi) match the modules: the same public
names, and for every function and method the same parameters in the same order, with a default
exactly where the compiled one has one (read through `inspect.signature`, which Cython's
binding functions support). The modules compiled once per kernel level (`_core_<level>`,
`_scan_<level>`, `_step_<level>`) share one stub (`_core.pyi`, `_scan.pyi`, `_step.pyi`),
which every level matches."""

import ast
import importlib
import importlib.machinery
import inspect
from pathlib import Path

import pytest

import pylstm
from pylstm import _levels

PACKAGE = Path(pylstm.__file__).parent


def _compiled_modules():
    """`{stub name: [compiled module names]}` of the compiled modules in the package."""
    modules = {}
    for path in PACKAGE.iterdir():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if path.name.endswith(suffix):
                name = path.name[:-len(suffix)]
                source = name.rpartition("_")[0]
                stub = source if source in _levels.SOURCES else name
                modules.setdefault(stub, []).append(name)
                break
    return modules


COMPILED = _compiled_modules()
MODULES = sorted((stub, name) for stub, names in COMPILED.items() for name in names)


def _params(node):
    """`(names, names with a default)` of a stub's `def`."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    positional = [a.arg for a in args.posonlyargs + args.args]
    defaults = positional[len(positional) - len(args.defaults):] if args.defaults else []
    defaults += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return names, defaults


def _compiled_params(obj):
    parameters = inspect.signature(obj).parameters.values()
    return ([p.name for p in parameters],
            [p.name for p in parameters if p.default is not inspect.Parameter.empty])


def _stub(module):
    """Public names of `module`'s stub: functions and classes (with their methods) as AST
    nodes, values as None."""
    tree = ast.parse((PACKAGE / f"{module}.pyi").read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = None
    return {name: node for name, node in names.items() if not name.startswith("_")}


def test_every_compiled_module_has_a_stub():
    assert set(COMPILED) >= {"_core", "_cpu", "_memory", "_scan", "_step"}
    assert set(COMPILED) == {path.stem for path in PACKAGE.glob("_*.pyi")}


@pytest.mark.parametrize("stub, module", MODULES)
def test_stub_names(stub, module):
    compiled = importlib.import_module(f"pylstm.{module}")
    public = {name for name in dir(compiled) if not name.startswith("_")}
    assert set(_stub(stub)) == public


@pytest.mark.parametrize("stub, module", MODULES)
def test_stub_signatures(stub, module):
    compiled = importlib.import_module(f"pylstm.{module}")
    checked = 0
    for name, node in _stub(stub).items():
        if isinstance(node, ast.FunctionDef):
            assert _params(node) == _compiled_params(getattr(compiled, name)), name
            checked += 1
        elif isinstance(node, ast.ClassDef):
            cls = getattr(compiled, name)
            for method in node.body:
                # an extension type's constructor (__cinit__) exposes no signature
                if isinstance(method, ast.FunctionDef) and method.name != "__init__":
                    assert (_params(method) ==
                            _compiled_params(getattr(cls, method.name))), f"{name}.{method.name}"
                    checked += 1
    assert checked or not any(node for node in _stub(stub).values())


def test_a_drifted_stub_is_caught():
    """The comparison sees a parameter the stub lacks."""
    node = ast.parse("def f(a, b=1): ...").body[0]
    assert _params(node) == (["a", "b"], ["b"])

    def g(a, b=1, c=2):
        pass

    assert _params(node) != _compiled_params(g)
