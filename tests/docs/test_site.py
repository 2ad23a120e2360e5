"""The built documentation site: every internal link lands, and three pages render in a real
browser.

The tests read the site that the README's "Documentation" command builds,
`sphinx-build -W --keep-going -b html docs docs/_build/html` (as `.ci/run`'s documentation
stage runs it before the suite), or the folder named by the environment variable
PYLSTM_DOCS_HTML. Where neither holds a site, they build one first, the same way, with the
gallery's examples in their fast mode (PYLSTM_DOCS_FAST=1), into a temporary folder: a minute
or two.

The screenshots are taken with Debian's `chromium` in headless mode (`apt-get install
chromium`); a page has rendered when its PNG is not one flat colour and its HTML carries the
page's title.
"""
import atexit
import html
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from pylstm_tests import require

import pylstm

require("sphinx")  # the docs extra: the site below was built with it

REQUIRED = os.environ.get("PYLSTM_REQUIRE_ORACLES") == "1"
REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _site():
    """The built site's folder: PYLSTM_DOCS_HTML, else README's `docs/_build/html`, else a
    fast build into a temporary folder."""
    named = os.environ.get("PYLSTM_DOCS_HTML")
    if named:
        if not (pathlib.Path(named) / "index.html").is_file():
            pytest.fail(f"PYLSTM_DOCS_HTML={named} holds no built site", pytrace=False)
        return pathlib.Path(named)
    built = REPOSITORY / "docs" / "_build" / "html"
    if (built / "index.html").is_file():
        return built
    folder = tempfile.mkdtemp(prefix="pylstm-docs-")
    atexit.register(shutil.rmtree, folder, True)
    out = pathlib.Path(folder) / "html"
    result = subprocess.run(
        [sys.executable, "-P", "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(REPOSITORY / "docs"), str(out)],
        env=dict(os.environ, PYLSTM_DOCS_FAST="1"), capture_output=True, text=True,
        timeout=1200)
    if result.returncode:
        pytest.fail(f"the documentation build failed:\n{result.stderr[-4000:]}", pytrace=False)
    return out


SITE = _site()

SUFFIX = f" \N{EM DASH} pylstm {pylstm.__version__}"
# The three pages the issue names, with the <title> each must carry.
PAGES = {
    "index.html": "pylstm" + SUFFIX,
    "api/generated/pylstm.layers.LSTM.html": "pylstm.layers.LSTM" + SUFFIX,
    "auto_examples/plot_sunspots_forecast.html": "Forecasting sunspots one month ahead" + SUFFIX,
}

_LINK = re.compile(r"""<(?:a|link|img|script)\b[^>]*?\b(?:href|src)=["']([^"']*)["']""", re.I)
_ID = re.compile(r"""\b(?:id|name)=["']([^"']+)["']""")


def _pages():
    # _static holds the theme's Jinja macros (webpack-macros.html), not pages
    return sorted(p for p in SITE.rglob("*.html") if "_static" not in p.relative_to(SITE).parts)


def _ids(path, cache={}):
    if path not in cache:
        cache[path] = {html.unescape(i) for i in _ID.findall(path.read_text(encoding="utf-8"))}
    return cache[path]


def _title(path):
    match = re.search(r"<title>(.*?)</title>", path.read_text(encoding="utf-8"), re.S)
    return html.unescape(match.group(1)).strip() if match else None


def test_the_site_has_its_pages():
    names = {p.relative_to(SITE).as_posix() for p in _pages()}
    for page in ["index.html", "getting_started.html", "user_guide/index.html",
                 "user_guide/dask.html", "coming_from_keras.html", "coming_from_pytorch.html",
                 "api/index.html", "benchmarks.html", "changelog.html", "feature_matrix.html",
                 "auto_examples/index.html", *PAGES]:
        assert page in names, page
    # one page per public class and function, as the reference promises
    assert "api/generated/pylstm.nn.LSTM.html" in names
    assert "api/generated/pylstm.streaming.LSTMStepper.html" in names
    assert "api/generated/pylstm.models.load_keras.html" in names


def test_every_internal_link_lands():
    """Every href and src to a file of the site exists, and every #fragment names an id
    (or name) in the page it points into."""
    broken = []
    checked = 0
    for page in _pages():
        for raw in _LINK.findall(page.read_text(encoding="utf-8")):
            url = html.unescape(raw)
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//") or not url:
                continue  # external, mailto:, javascript:, data:
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            where = f"{page.relative_to(SITE)} -> {url}"
            if not target.is_file():
                broken.append(f"{where}: no file {target}")
            elif parts.fragment and target.suffix == ".html" \
                    and unquote(parts.fragment) not in _ids(target):
                broken.append(f"{where}: no id {parts.fragment!r}")
    assert checked > 1000
    assert not broken, f"{len(broken)} broken links:\n" + "\n".join(broken[:40])


def _chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    why = "needs Debian's chromium (apt-get install chromium) for the screenshots"
    if REQUIRED:
        pytest.fail(f"{why}; PYLSTM_REQUIRE_ORACLES=1 makes that an error", pytrace=False)
    pytest.skip(why)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_page_renders_in_a_browser(page, tmp_path):
    plt = require("matplotlib.pyplot")
    path = SITE / page
    assert _title(path) == PAGES[page]
    shot = tmp_path / "page.png"
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1280,1000", f"--screenshot={shot}", path.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.round(plt.imread(shot)[..., :3] * 255).astype(np.int16)
    assert pixels.shape[:2] == (1000, 1280)
    # Not blank: a rendered page has text and code boxes, so many pixels differ from the
    # background (the most common colour), and their spread is far from one flat colour.
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    ink = (abs(pixels - colours[counts.argmax()]).sum(axis=-1) > 25).mean()
    assert ink > 0.02, f"{page}: only {ink:.1%} of the screenshot differs from the background"
    assert pixels.std() > 10, f"{page}: pixel spread {pixels.std():.1f} of 255, a blank page"
