"""Sphinx configuration of pylstm's documentation site.

Build from the repository root (README's "Documentation" section):
`sphinx-build -W --keep-going -b html docs docs/_build/html`, and the doctests of every page and
docstring with `-b doctest`. The API reference is generated: `write_api_pages` writes one page
per public module listing the names of its `__all__` (or, for a module without one, the public
classes and functions defined in it), and autosummary writes a page for each of those objects.
The gallery (`docs/gallery/*.py`) runs through sphinx-gallery; with `PYLSTM_DOCS_FAST=1` in the
environment the examples run their fast mode (fewer epochs, shorter data), as CI does.
"""

import importlib
import inspect
import pathlib
import re
import subprocess
import sys

import pylstm

DOCS = pathlib.Path(__file__).resolve().parent

project = "pylstm"
author = "the pylstm authors"
copyright = "the pylstm authors"
version = release = pylstm.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_includes", "gallery/*",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json"]
templates_path = ["_templates"]

# Every cross-reference must resolve: a reference to nothing is a warning, and warnings fail the
# build (-W). No intersphinx: CI may have no network, so references to NumPy or Python objects
# are not links.
nitpicky = True
# NumPy's and Dask's objects (NamedTuple fields' annotations, Raises sections) have no page
# without intersphinx.
nitpick_ignore_regex = [("py:class", r"numpy\..*"), ("py:exc", r"distributed\..*")]
# The docstrings write code and shapes in single backquotes, Markdown style: render them as code.
default_role = "code"

# Google-style docstrings (Args/Returns/Raises/Example), as Keras writes them.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
# Keras's docstrings list a layer's call arguments, and some its weights, in sections of their own.
napoleon_custom_sections = [("Call arguments", "params_style"), ("Weights", "params_style")]
autodoc_typehints = "none"
autodoc_member_order = "bysource"

autosummary_generate = True
autosummary_imported_members = False

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

# The doctest builder runs the `>>>` blocks of the pages and of the docstrings, each page in a
# fresh namespace; this setup runs before each. Blocks that compare with Keras, PyTorch, ONNX or
# ONNX Runtime are skipped where those are not installed (`:skipif: not HAVE_TORCH`), unless
# PYLSTM_REQUIRE_ORACLES=1 (as in CI): then a missing one fails the build.
doctest_global_setup = """
import importlib.util as _util
import os as _os

import numpy as np
import pylstm


def _have(module):
    if _util.find_spec(module) is not None:
        return True
    if _os.environ.get("PYLSTM_REQUIRE_ORACLES") == "1":
        raise ImportError(f"{module} is missing and PYLSTM_REQUIRE_ORACLES=1")
    return False


HAVE_KERAS, HAVE_TORCH = _have("keras"), _have("torch")
HAVE_ONNX, HAVE_ONNXRUNTIME = _have("onnx"), _have("onnxruntime")
pylstm.utils.set_random_seed(0)
"""

html_theme = "pydata_sphinx_theme"
html_title = f"pylstm {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path = []
html_show_sourcelink = False

# The gallery: the examples in docs/gallery run at build time (their fast mode where
# PYLSTM_DOCS_FAST=1, which they read); their pages, figures and downloads go to auto_examples.
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "plot_gallery": "True",
}

# The benchmarks page's figure, drawn from the latest bench_lstm report in benchmarks/results.
subprocess.run([sys.executable, str(DOCS.parent / "benchmarks" / "plot_benchmarks.py"),
                "--output", str(DOCS / "_static" / "benchmarks.png")], check=True)

# CHANGELOG.md and benchmarks/README.md are pages of the site too. Their links to each other
# name the repository's files; the copies the pages include (docs/_includes/, written here) link
# to the site's pages instead (MyST resolves them from the including page, in docs/).
SITE_LINKS = {"benchmarks/README.md": "benchmarks.md", "../CHANGELOG.md": "changelog.md"}


def write_includes():
    out = DOCS / "_includes"
    out.mkdir(exist_ok=True)
    for source, name in (("CHANGELOG.md", "CHANGELOG.md"),
                         ("benchmarks/README.md", "benchmarks_README.md")):
        text = (DOCS.parent / source).read_text(encoding="utf-8")
        for target, page in SITE_LINKS.items():
            text = text.replace(f"]({target})", f"]({page})")
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


write_includes()

# The public modules of the reference, in the order of its index. Each object is documented
# once, under the first module here that exports it (pylstm.Model under pylstm.models, ...).
PUBLIC_MODULES = [
    "pylstm.layers", "pylstm.models", "pylstm.nn", "pylstm.nn.utils.rnn", "pylstm.ops",
    "pylstm.streaming", "pylstm.state", "pylstm.onnx", "pylstm.dask",
    "pylstm.optimizers", "pylstm.optimizers.schedules", "pylstm.optim", "pylstm.losses",
    "pylstm.metrics", "pylstm.callbacks", "pylstm.activations", "pylstm.initializers",
    "pylstm.regularizers", "pylstm.constraints", "pylstm.utils", "pylstm.datasets", "pylstm",
]


def public_names(module):
    """The documented names of `module`: its `__all__`, or its own public classes and functions."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, obj in vars(module).items()
                 if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                 and obj.__module__ == module.__name__]
    return [name for name in names
            if not inspect.ismodule(getattr(module, name)) and name != "__version__"]


def write_api_pages():
    """Writes api/modules/<module>.rst for each public module (pylstm.dask needs the docs
    extra's dask, as pylstm.onnx its onnx)."""
    out = DOCS / "api" / "modules"
    out.mkdir(parents=True, exist_ok=True)
    seen = set()
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        classes, functions, others, aliases = [], [], [], []
        names = public_names(module)
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) and name != obj.__name__ and obj.__name__ in names:
                aliases.append((name, obj.__name__))  # Model = Functional: one page
                continue
            key = id(obj)
            if key in seen and (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(key)
            (classes if inspect.isclass(obj) else
             functions if callable(obj) else others).append(name)
        lines = [modname, "=" * len(modname), "", ".. testsetup:: *", "",
                 f"   import {modname}", f"   globals().update(vars({modname}))", "",
                 f".. automodule:: {modname}", "   :no-members:", ""]
        for title, members in (("Classes", classes), ("Functions", functions)):
            if members:
                lines += [title, "-" * len(title), "", f".. currentmodule:: {modname}", "",
                          ".. autosummary::", "   :toctree: ../generated", "   :nosignatures:",
                          ""] + [f"   {name}" for name in members] + [""]
        for alias, name in aliases:
            lines += [f"``{alias}`` is another name for :class:`{name}`.", ""]
        if others:  # data without docstrings of their own: named, not documented
            lines += ["Also exported: " + ", ".join(f"``{name}``" for name in others) + ".", ""]
        text = "\n".join(lines) + "\n"
        path = out / f"{modname}.rst"
        if not path.exists() or path.read_text() != text:  # unchanged pages stay up to date
            path.write_text(text)
    for stale in out.glob("*.rst"):
        if stale.stem not in PUBLIC_MODULES:
            stale.unlink()


write_api_pages()


# Code followed by letters, as in `Variable`s or `KerasTensor`(s): reStructuredText ends inline
# markup only before a space or punctuation, so the docstrings' Markdown-style plurals get the
# escaped space that joins them.
_CODE = re.compile(r"``.+?``|`[^`]+`")


def _join_suffix(line):
    def join(match):
        end = match.end()
        follows = line[end:end + 1]
        return match.group() + ("\\ " if follows and (follows.isalnum() or follows in "_(") else "")
    return _CODE.sub(join, line)


def join_code_suffixes(app, what, name, obj, options, lines):
    lines[:] = [_join_suffix(line) for line in lines]


# An argument list whose names run over two lines ("kernel, recurrent_kernel, bias,\n
# projection: ..."): napoleon reads one name per line, so the names are joined first.
_NAMES_CONTINUED = re.compile(r"\s+(\*{0,2}\w+, )*\*{0,2}\w+,\s*")
_NAMES_END = re.compile(r"(\*{0,2}\w+, )*\*{0,2}\w+: .*")


def join_argument_names(app, what, name, obj, options, lines):
    for i in range(len(lines) - 2, -1, -1):
        if _NAMES_CONTINUED.fullmatch(lines[i]) and _NAMES_END.fullmatch(lines[i + 1].strip()):
            lines[i:i + 2] = [lines[i].rstrip() + " " + lines[i + 1].strip()]


def setup(app):
    app.connect("autodoc-process-docstring", join_code_suffixes)
    # before napoleon (priority 500) parses the sections
    app.connect("autodoc-process-docstring", join_argument_names, priority=400)
