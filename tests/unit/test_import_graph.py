"""pylstm's modules import one another without a cycle, counting imports inside functions:
dependencies point one way (`pylstm.models` formats build `Sequential`, `nn` and `layers` use
`pylstm.variable` and `pylstm.state`, never the reverse)."""

import ast
import importlib.machinery
import pathlib

import pylstm

ROOT = pathlib.Path(pylstm.__file__).parent
# A compiled module is known by its Cython source in a source tree, by its extension file in an
# installed wheel (which holds no sources).
COMPILED = (".pyx",) + tuple(importlib.machinery.EXTENSION_SUFFIXES)


def module_names():
    """`{dotted name: path or None}` of pylstm's Python modules and its compiled ones."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = ("pylstm",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    for path in ROOT.rglob("*"):
        suffix = next((s for s in COMPILED if path.name.endswith(s)), None)
        if suffix is not None:
            parts = path.relative_to(ROOT).parent.parts + (path.name[:-len(suffix)],)
            names.setdefault(".".join(("pylstm",) + parts), None)
    return names


def imports_of(name, path, names):
    """The pylstm modules that module `name` imports anywhere in its code."""

    def known(dotted):
        while dotted and dotted not in names:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {known(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in names else known(base))
    found.discard("")
    found.discard(name)
    return found


def import_graph():
    names = module_names()
    return {name: imports_of(name, path, names) if path is not None else set()
            for name, path in names.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first repeated last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_compiled_modules_are_known():
    """An import of a compiled module names that module, whether the package holds its
    sources or only its extension files."""
    names = module_names()
    assert {"pylstm._memory", "pylstm._cpu"} <= {n for n, path in names.items() if path is None}


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_counts_function_level_imports(tmp_path):
    path = tmp_path / "saving.py"
    path.write_text("def save():\n    from pylstm.models import keras_io\n")
    assert imports_of("pylstm.models.saving", path, module_names()) == {"pylstm.models.keras_io"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_dependencies_point_one_way():
    graph = import_graph()
    assert not graph["pylstm.models.sequential"] & {"pylstm.models.saving",
                                                     "pylstm.models.keras_io"}
    assert "pylstm.models.keras_io" not in graph["pylstm.models.saving"]
    assert not graph["pylstm.models._formats"]
    for name, deps in graph.items():
        if name.startswith("pylstm.nn"):
            assert not {d for d in deps if d.startswith("pylstm.models")}, name
        if name in ("pylstm.nn.module", "pylstm.nn.cell", "pylstm.variable", "pylstm.state"):
            assert not {d for d in deps if d.startswith("pylstm.layers")}, name
