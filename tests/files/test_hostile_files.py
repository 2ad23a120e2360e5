"""Every file of the hostile corpus (`tests/support/hostile_files.py`) through every public
loader of its format, each load in an isolated worker process (`tests/support/isolated.py`) with its address
space capped: a load ends in a model or a ValueError/TypeError naming the file, within a time
limit, never a crash, a hang, a MemoryError or another exception; no pickled code runs (no
marker file appears); nothing outside the corpus is read (the loaded weights never hold an
external target's bytes, and, where `strace` is installed, the worker's log shows no open of a
file outside it).

Run: `python -P -m pytest -q --import-mode=importlib tests/files/test_hostile_files.py`. A longer
run with more byte flips per format (the default is 24):
`PYLSTM_HOSTILE_FLIPS=2000 PYLSTM_FUZZ_EXAMPLES=20000 python -P -m pytest -q
--import-mode=importlib tests/files/test_fuzz_api.py tests/files/test_hostile_files.py`.
`python -P tests/files/test_hostile_files.py` prints the table of classes, cases and failures.
"""

import collections
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

import pytest
from pylstm_tests import require

# The optional packages this corpus is written with and read by.
require("h5py")
require("pyfive")
require("safetensors")
require("torch")

TESTS = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pylstm_tests_hostile_files",
                                               TESTS / "support" / "hostile_files.py")
hf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf)
_spec = importlib.util.spec_from_file_location("pylstm_tests_isolated",
                                               TESTS / "support" / "isolated.py")
isolated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isolated)

TIMEOUT = 30.0  # seconds per load: a hang guard (a load takes milliseconds)
# The workers, one per group of formats (torch is imported only where `.pt` files are read).
GROUPS = [("pylstm", "keras"), ("weights.h5", "h5", "safetensors"), ("pt",)]


def _strace_works():
    if shutil.which("strace") is None:
        return False
    try:
        return subprocess.run(isolated.STRACE + ["-o", os.devnull, "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _allowed_roots(corpus):
    """Where a worker may open files: the corpus itself (not its `outside` and `markers`
    folders), pylstm's and the tests' sources, Python's and the packages' installation, and
    the system's runtime files."""
    import pylstm

    roots = {str(corpus), os.path.dirname(pylstm.__file__), str(TESTS)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "include", "data"):
        roots.add(sysconfig.get_paths()[key])
    roots.update({sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev",
                  "/etc/ld.so.cache", "/etc/localtime", "/lib", "/lib64", "/usr/lib",
                  "/usr/lib64", "/usr/local/lib", "/usr/share/zoneinfo", "/usr/share/locale"})
    return roots


def _outside_opens(paths, corpus, roots):
    bad = []
    forbidden = (str(corpus / "outside"), str(corpus / "markers"))
    for p in paths:
        full = os.path.normpath(os.path.join(str(corpus), p))
        if full.startswith(forbidden) or not any(
                full == r or full.startswith(r.rstrip("/") + "/") for r in roots):
            bad.append(p)
    return bad


def run_corpus(corpus, manifest, use_strace):
    """Loads every (entry, loader) pair; returns `[(entry, loader, failure or None, detail)]`.

    The formats' workers run side by side (one thread each drives its worker). A load that
    kills or hangs its worker is run again alone in a fresh worker, so that the failure is
    pinned on that file and not on damage an earlier load left behind."""
    results, lock = [], threading.Lock()
    roots = _allowed_roots(corpus)

    def run_group(index, formats):
        log = corpus.parent / f"strace-{index}" if use_strace else None
        worker = isolated.Worker(preload=["torch" if "pt" in formats else "h5py"],
                                 strace_log=log, cwd=corpus)
        calls = {}
        try:
            for entry in manifest:
                if entry["format"] not in formats:
                    continue
                for loader in entry["loaders"]:
                    call_id = f"{len(calls)}"
                    status, value = worker.call(hf.__file__, "run_entry", str(corpus), entry,
                                                loader, timeout=TIMEOUT, call_id=call_id)
                    if status != "ok":
                        alone = isolated.Worker(preload=worker.preload, cwd=corpus)
                        try:
                            again, _ = alone.call(hf.__file__, "run_entry", str(corpus), entry,
                                                  loader, timeout=TIMEOUT)
                        finally:
                            alone.close()
                        failure = f"{status}: {value}"
                        if again == "ok":
                            failure += " (alone in a fresh worker it did not; an earlier load " \
                                       "damaged the process)"
                        calls[call_id] = (entry, loader, failure, None)
                        continue
                    calls[call_id] = (entry, loader, hf.judge(entry, loader, value), value)
        finally:
            worker.close()
        opened = isolated.parse_strace(log) if use_strace else {}
        with lock:
            for call_id, (entry, loader, failure, value) in calls.items():
                bad = _outside_opens(opened.get(call_id, []), corpus, roots)
                if failure is None and bad:
                    failure = f"opened files outside the corpus: {bad[:3]}"
                results.append((entry, loader, failure, value))

    threads = [threading.Thread(target=run_group, args=(i, g)) for i, g in enumerate(GROUPS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("hostile") / "corpus"
    manifest = hf.write_corpus(corpus)
    use_strace = _strace_works()
    return corpus, manifest, run_corpus(corpus, manifest, use_strace), use_strace


def _report(failures):
    lines = [f"{e['name']} via {loader} ({e['cls']}, expected {hf.expectation(e, loader)}): "
             f"{why}"
             for e, loader, why, _ in failures]
    return f"{len(failures)} loads failed:\n" + "\n".join(lines[:40])


@pytest.mark.parametrize("fmt", list(hf.SUFFIX))
def test_hostile_files(corpus_run, fmt):
    _, manifest, results, _ = corpus_run
    mine = [r for r in results if r[0]["format"] == fmt]
    assert len(mine) == sum(len(e["loaders"]) for e in manifest if e["format"] == fmt)
    failures = [r for r in mine if r[2] is not None]
    if failures:
        pytest.fail(_report(failures), pytrace=False)


def test_corpus_covers_every_class(corpus_run):
    """The classes the issue names are in the corpus for the formats they apply to."""
    _, manifest, _, _ = corpus_run
    have = collections.defaultdict(set)
    for e in manifest:
        have[e["format"]].add(e["cls"])
    common = {"valid", "byte_flip", "truncation", "random_bytes"}
    hdf5 = {"vds", "external_storage", "external_link", "soft_link", "lying_size",
            "big_endian"}
    assert common | hdf5 | {"zip_bomb", "encrypted_flag", "nested_json", "wrong_type",
                            "huge_units", "byte_flip_member", "code", "pickle"} <= have["keras"]
    assert common | hdf5 <= have["weights.h5"]
    assert common | hdf5 | {"nested_json", "wrong_type", "huge_units"} <= have["h5"]
    assert common | {"zip_bomb", "lying_size", "encrypted_flag", "nested_json", "wrong_type",
                     "huge_units", "big_endian", "pickle", "code"} <= have["pylstm"]
    assert common | {"pickle", "zip_bomb", "lying_size", "dtype"} <= have["pt"]
    assert common | {"lying_size", "nested_json", "dtype"} <= have["safetensors"]


def test_no_pickled_code_ran(corpus_run):
    corpus, manifest, _, _ = corpus_run
    assert any(e["cls"] == "pickle" for e in manifest)
    assert sorted(os.listdir(corpus / "markers")) == []


def test_external_targets_untouched(corpus_run):
    """No load returned the bytes of a file outside the corpus (checked in every load's
    weights); with strace, no load even opened one."""
    _, _, results, use_strace = corpus_run
    loaded = [r for r in results if r[3] is not None and r[3]["outcome"] == "loaded"]
    assert loaded  # the valid files, at least
    assert not [r for r in loaded if r[3]["holds_target"]]
    if use_strace:
        assert not [r for r in results if r[2] and "outside the corpus" in r[2]]


def main():
    """Prints, per format and class, the loads tried and the failures."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        manifest = hf.write_corpus(corpus)
        use_strace = _strace_works()
        results = run_corpus(corpus, manifest, use_strace)
        table = collections.defaultdict(lambda: [0, 0, collections.Counter(), 0.0, 0.0])
        for entry, _, failure, value in results:
            row = table[(entry["format"], entry["cls"])]
            row[0] += 1
            if failure is not None:
                row[1] += 1
                row[2][failure.split(":")[0][:60]] += 1
            if value is not None:
                row[3] = max(row[3], value["seconds"])
                row[4] = max(row[4], value["maxrss_mb"])
        print(f"strace: {use_strace}; markers: {sorted(os.listdir(corpus / 'markers'))}")
        print("format       class              loads failed  slowest  worker peak RSS")
        for (fmt, cls), (tried, failed, why, slowest, rss) in sorted(table.items()):
            print(f"{fmt:12} {cls:18} {tried:5} {failed:6} {slowest:7.3f}s {rss:7.0f} MB  "
                  f"{dict(why) if why else ''}")
        if "-v" in sys.argv:
            for entry, loader, failure, _ in results:
                if failure:
                    print(json.dumps([entry["name"], loader, failure[:300]]))


if __name__ == "__main__":
    main()
