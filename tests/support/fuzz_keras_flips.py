"""Byte-flip fuzzing of the Keras file readers: every damaged file must end in a loaded model or
a ValueError/TypeError naming the file, never a crash, a hang or a memory blowup.

Each case flips one byte (XOR 0xFF by default) of a small Keras file and loads it in the
isolated worker (`tests/support/isolated.py`), which runs many cases in turn under a memory cap
(RLIMIT_AS, the worker's address space after its imports plus `--memory` MiB) and a per-case
timeout (`--alarm`; the worker is killed, even inside C code). A worker that dies is restarted
after the case that killed it. Two files:

- `legacy`: tests/data/keras2_lstm.h5 (Keras 2's `model.save`, 22 KB), loaded with `load_keras`;
- `keras`: a `.keras` archive written by pylstm (LSTM(4) -> Dense(2), compiled with Adam), whose
  `model.weights.h5` member is flipped and the zip rebuilt with valid checksums;
- `latest`: keras2_lstm.h5 rewritten by h5py in HDF5's newest format (superblock 3, version-2
  object headers), loaded with `load_keras`.

Two readers: `new`, the installed `pylstm.models.keras_io` (pyfive); `h5py`, keras_io.py as of
`--old-ref` (the last commit that read with h5py), taken with `git show` into a temporary module.

Outcomes: `same` (loaded, predictions bitwise equal to the intact file's), `different` (loaded,
predictions differ), `ValueError` / `TypeError` (with `(unnamed)` when the message does not name
the file), `other:<type>` (another exception), `memory` (MemoryError under the cap), `hang`
(timeout), `crash:<signal>` (segfault, abort, ...) or `crash:exit<status>`.

Usage (from the repository root):
    python -P tests/support/fuzz_keras_flips.py --all    # every offset, all files, both readers
    python -P tests/support/fuzz_keras_flips.py --step 7 --reader new --file legacy
tests/files/test_keras_hostile.py runs every 7th (`latest`: 13th) offset with the new reader in CI.
"""

import argparse
import collections
import gzip
import importlib.util
import io
import json
import pathlib
import subprocess
import tempfile
import time
import zipfile

import numpy as np

TESTS = pathlib.Path(__file__).resolve().parents[1]
WEIGHTS = "model.weights.h5"
OLD_REF = "a2ac8d1"  # the last commit whose keras_io read HDF5 with h5py

_spec = importlib.util.spec_from_file_location("pylstm_tests_isolated",
                                               TESTS / "support" / "isolated.py")
isolated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isolated)
_INTACT = {}  # in the worker: (kind, base, path, old) -> (load_keras, data, members, reference)


def _predict(model):
    x = np.random.default_rng(0).normal(size=(2,) + tuple(model._build_input_shape[1:]))
    return model.predict(x.astype(model.dtype))


def _write(kind, path, members, content):
    if kind == "keras":
        with zipfile.ZipFile(path, "w") as archive:
            for name, value in members.items():
                archive.writestr(name, content if name == WEIGHTS else value)
    else:
        pathlib.Path(path).write_bytes(content)


def flip_case(kind, base, path, old, xor, offset):
    """In the worker: loads `base` (see `run_flips`) with the byte at `offset` XOR `xor`,
    written to `path` (`offset` None: the intact file); returns "same" or "different"."""
    key = (kind, base, path, old)
    if key not in _INTACT:
        if old:
            spec = importlib.util.spec_from_file_location("keras_io_h5py", old)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            load_keras = module.load_keras
        else:
            from pylstm.models import load_keras
        data, members = pathlib.Path(base).read_bytes(), None
        if kind == "keras":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = {name: archive.read(name) for name in archive.namelist()}
            data = members[WEIGHTS]
        _write(kind, path, members, data)
        _INTACT[key] = load_keras, data, members, _predict(load_keras(path))
    load_keras, data, members, reference = _INTACT[key]
    if offset is None:
        return "same"
    flipped = bytearray(data)
    flipped[offset] ^= xor
    _write(kind, path, members, bytes(flipped))
    y = _predict(load_keras(path))
    return "same" if np.array_equal(y, reference, equal_nan=True) else "different"


def _outcome(status, value, path):
    """The outcome of one case from its `isolated.Worker.call` result."""
    if status == "ok":
        return value
    if status == "hang":
        return "hang"
    if status == "crash":
        return "crash:" + value.split(":", 1)[0].replace(" ", "")
    mro = value["mro"]
    if "MemoryError" in mro:
        return "memory"
    for error in ("ValueError", "TypeError"):
        if error in mro:
            return error + ("" if repr(path) in value["message"] else "(unnamed)")
    return "other:" + value["type"].rsplit(".", 1)[-1]


def targets(workdir):
    """{name: (kind, path of the intact file, number of bytes that can be flipped)}."""
    workdir = pathlib.Path(workdir)
    legacy = workdir / "keras2_lstm.h5"
    legacy.write_bytes(gzip.decompress((TESTS / "data" / "keras2_lstm.h5.gz").read_bytes()))
    from pylstm.layers import LSTM, Dense, Input
    from pylstm.models import Sequential
    model = Sequential([Input((5, 3)), LSTM(4), Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    archive = workdir / "small.keras"
    model.save(archive)
    with zipfile.ZipFile(archive) as z:
        weights = len(z.read(WEIGHTS))
    latest = workdir / "keras2_lstm_latest.h5"
    latest.write_bytes(latest_format(legacy.read_bytes()))
    return {"legacy": ("legacy", legacy, legacy.stat().st_size),
            "keras": ("keras", archive, weights),
            "latest": ("legacy", latest, latest.stat().st_size)}


def latest_format(data):
    """The HDF5 file `data` (bytes) rewritten in HDF5's newest format (superblock 3, version-2
    object headers, link messages)."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(io.BytesIO(data), "r") as f, \
            h5py.File(buffer, "w", libver="latest") as copy:
        names = []
        f.visit(names.append)
        for name in names:
            if isinstance(f[name], h5py.Dataset):
                copy.create_dataset(name, data=f[name][()])
            else:
                copy.require_group(name)
            copy[name].attrs.update(dict(f[name].attrs))
        copy.attrs.update(dict(f.attrs))
    return buffer.getvalue()


def old_module(workdir, ref=OLD_REF):
    """keras_io.py as of `ref`, written into `workdir`; its path."""
    source = subprocess.run(["git", "show", f"{ref}:pylstm/models/keras_io.py"], cwd=TESTS.parent,
                            check=True, capture_output=True, text=True).stdout
    path = pathlib.Path(workdir) / "keras_io_h5py.py"
    path.write_text(source)
    return path


def run_flips(kind, base, offsets, workdir, old=None, xor=0xFF, alarm=20, memory=2**30,
              timeout=None):
    """Loads `base` with the byte at each of `offsets` flipped; returns `{offset: outcome}`.

    Args:
        kind: "legacy" (flip the file) or "keras" (flip its model.weights.h5 member).
        base: path of the intact file.
        offsets: list of int.
        workdir: a directory for the flipped file.
        old: path of an old keras_io module to load with instead of pylstm's, or None.
        xor, alarm, memory: the flip, the per-case timeout in seconds, the memory cap in bytes.
        timeout: seconds for all cases together (a guard for CI), or None.
    """
    path = str(pathlib.Path(workdir) / ("flipped.keras" if kind == "keras" else "flipped.h5"))
    calls = [(kind, str(base), path, str(old) if old else None, xor, offset)
             for offset in [None, *offsets]]
    results = isolated.run_calls(__file__, "flip_case", calls, timeout=alarm,
                                 total_timeout=timeout, memory=memory,
                                 preload=["h5py", __file__])
    if results[0] != ("ok", "same"):
        raise RuntimeError(f"the intact file {base} failed: {results[0]}")
    return {offset: _outcome(*result, path) for offset, result in zip(offsets, results[1:])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="every offset (--step 1)")
    parser.add_argument("--step", type=int, default=7)
    parser.add_argument("--reader", choices=["new", "h5py", "both"], default="both")
    parser.add_argument("--file", choices=["legacy", "keras", "latest", "all"], default="all")
    parser.add_argument("--xor", type=lambda s: int(s, 0), default=0xFF)
    parser.add_argument("--alarm", type=int, default=20, help="seconds per case")
    parser.add_argument("--memory", type=int, default=1024, help="MiB above the child's imports")
    parser.add_argument("--old-ref", default=OLD_REF)
    args = parser.parse_args()
    step = 1 if args.all else args.step
    with tempfile.TemporaryDirectory() as workdir:
        files = targets(workdir)
        readers = ["new", "h5py"] if args.reader == "both" else [args.reader]
        names = ["legacy", "keras", "latest"] if args.file == "all" else [args.file]
        for name in names:
            kind, base, size = files[name]
            for reader in readers:
                old = old_module(workdir, args.old_ref) if reader == "h5py" else None
                start = time.monotonic()
                results = run_flips(kind, base, list(range(0, size, step)), workdir, old,
                                    args.xor, args.alarm, args.memory * 2**20)
                counts = collections.Counter(results.values())
                bad = sorted(o for o, r in results.items()
                             if r.startswith(("crash", "hang", "memory", "other")))
                print(json.dumps({"file": name, "bytes": size, "reader": reader,
                                  "cases": len(results), "seconds": round(time.monotonic() - start),
                                  "counts": dict(counts.most_common()),
                                  "bad_offsets": bad[:50]}), flush=True)


if __name__ == "__main__":
    main()
