"""The type stubs of the compiled modules (pylstm/_*.pyi) match the modules: the same public
names, and for every function and method the same parameters in the same order, with a default
exactly where the compiled one has one (read through `inspect.signature`, which Cython's
binding functions support)."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import pylstm

PACKAGE = Path(pylstm.__file__).parent
MODULES = sorted(path.stem for path in PACKAGE.glob("_*.pyx"))


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
    assert MODULES
    for module in MODULES:
        assert (PACKAGE / f"{module}.pyi").is_file(), module


@pytest.mark.parametrize("module", MODULES)
def test_stub_names(module):
    compiled = importlib.import_module(f"pylstm.{module}")
    public = {name for name in dir(compiled) if not name.startswith("_")}
    assert set(_stub(module)) == public


@pytest.mark.parametrize("module", MODULES)
def test_stub_signatures(module):
    compiled = importlib.import_module(f"pylstm.{module}")
    checked = 0
    for name, node in _stub(module).items():
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
    assert checked or not any(node for node in _stub(module).values())


def test_a_drifted_stub_is_caught():
    """The comparison sees a parameter the stub lacks."""
    node = ast.parse("def f(a, b=1): ...").body[0]
    assert _params(node) == (["a", "b"], ["b"])

    def g(a, b=1, c=2):
        pass

    assert _params(node) != _compiled_params(g)
