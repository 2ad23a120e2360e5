"""The isolated worker that runs untrusted loads for the hostile-file and fuzz tests.

`Worker` (parent side) starts `python -P tests/support/isolated.py --worker` as a child, which
imports pylstm and the `preload` modules, then caps its address space (RLIMIT_AS: its size after
the imports plus `memory`). It runs calls `(module path, function, args)` one at a time: a call's
result comes back as `("ok", value)`, an exception it raised as `("raised", description)`; a
call that kills the child (a signal, an exit) or outlives its timeout comes back as `("crash",
why)` or `("hang", why)`, and the next call starts a fresh child. `run_calls` runs a list of
calls that way. Values and arguments cross the pipe pickled: keep them plain.

Import it by path (tests/ is not a package, and pytest runs with --import-mode=importlib):
    spec = importlib.util.spec_from_file_location("pylstm_tests_isolated",
                                                  TESTS / "support" / "isolated.py")
"""

import json
import os
import pickle
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

GIB = 2 ** 30
DEFAULT_MEMORY = 3 << 29  # address space a worker may add to what it has after its imports
MARKER_PREFIX = "/pylstm-hostile-call/"  # paths stat-ed around each call (strace brackets)
STRACE = ["strace", "-f", "-qq", "--seccomp-bpf", "-e",
          "trace=open,openat,openat2,creat,newfstatat,stat"]


def _stat_marker(path):
    try:
        os.stat(path)
    except OSError:
        pass


def _send(stream, obj):
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _exec_path(path, modules):
    """The module at file `path`, executed once per child."""
    import importlib.util

    if path not in modules:
        spec = importlib.util.spec_from_file_location(f"_isolated_{len(modules)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[path] = module
    return modules[path]


def describe(e):
    """A plain description of exception `e`: its qualified type, the names of its classes (to
    test `"ValueError" in d["mro"]`), message, cause and last frames."""
    cause = e.__cause__ or e.__context__
    frames = traceback.StackSummary.extract(traceback.walk_tb(e.__traceback__),
                                            lookup_lines=False)[-3:]
    return {"type": f"{type(e).__module__}.{type(e).__qualname__}",
            "mro": [c.__name__ for c in type(e).__mro__], "message": str(e),
            "cause": None if cause is None else f"{type(cause).__name__}: {str(cause)[:200]}",
            "where": " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                                 for f in reversed(frames))}


def _worker_main(memory, preload):
    """The child side: imports the modules in `preload` (names, or paths of .py files, before
    the memory limit, as a user's process would have), then reads `(call id, module path,
    function, args)` calls from stdin and writes each result to the protocol pipe (the
    original stdout; C-level prints go to stderr)."""
    import importlib

    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    modules = {}
    # conftest.py registers `pylstm_tests`, which test modules run here import `require` from.
    for name in ["pylstm", str(Path(__file__).resolve().parents[1] / "conftest.py")] + preload:
        if name.endswith(".py"):
            _exec_path(name, modules)
        else:
            importlib.import_module(name)

    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + memory, size + memory))
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return
        call_id, module_path, function, args = pickle.loads(
            stdin.read(struct.unpack("<Q", head)[0]))
        # Marker syscalls that bracket this call in an strace log.
        _stat_marker(f"{MARKER_PREFIX}{call_id}/begin")
        try:
            result = "ok", getattr(_exec_path(module_path, modules), function)(*args)
        except BaseException as e:  # noqa: B036 - every exception is the data here
            result = "raised", describe(e)
        _stat_marker(f"{MARKER_PREFIX}{call_id}/end")
        _send(proto, result)


class Worker:
    """A child process that runs calls one at a time, isolated from the test's process.

    Args:
        memory: bytes of address space the child may add after its imports.
        preload: modules (names, or paths of .py files) the child imports before its memory
            is limited, e.g. `["torch", "h5py", __file__]`.
        strace_log: None, or a path: the child runs under `strace` (`STRACE`), writing its
            log there, or at `strace_log.N` for the N-th restart (`parse_strace` reads them).
        cwd: the child's working directory.
    """

    def __init__(self, memory=DEFAULT_MEMORY, preload=(), strace_log=None, cwd=None):
        self.memory = int(memory)
        self.preload = [str(p) for p in preload]
        self.strace_log = strace_log
        self.cwd = cwd
        self.proc = None
        self.stderr = None
        self.starts = 0
        self.calls = 0

    def _start(self):
        self.stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, "-P", str(Path(__file__).resolve()), "--worker", str(self.memory),
               json.dumps(self.preload)]
        if self.strace_log is not None:
            cmd = STRACE + ["-o", f"{self.strace_log}.{self.starts}"] + cmd
        self.starts += 1
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, cwd=self.cwd)

    def stderr_tail(self, n=3000):
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-n:]

    def call(self, module_path, function, *args, timeout=60.0, call_id=None):
        """Runs `function(*args)` of the module at `module_path` in the child.

        Returns `("ok", value)`, `("raised", describe(exception))`, `("crash", why)` (the
        child died; `why` starts with the signal's name, e.g. "SIGSEGV: ...", or "exit N: ")
        or `("hang", why)` (no answer within `timeout` seconds; the child is killed).
        `call_id` (default: a counter) names the call in the strace log."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.calls += 1
        call_id = self.calls if call_id is None else call_id
        try:
            _send(self.proc.stdin, (call_id, str(module_path), function, args))
        except BrokenPipeError:
            return self._died()
        out = self.proc.stdout
        deadline = time.monotonic() + timeout
        buf = b""
        need = None
        while need is None or len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                self.close()
                return "hang", f"no answer in {timeout:.0f} s; stderr: {self.stderr_tail(800)}"
            chunk = os.read(out.fileno(), 1 << 20)
            if not chunk:
                return self._died()
            buf += chunk
            if need is None and len(buf) >= 8:
                need = 8 + struct.unpack("<Q", buf[:8])[0]
        return pickle.loads(buf[8:need])

    def _died(self):
        rc = self.proc.wait()
        self.proc = None
        what = signal.Signals(-rc).name if rc < 0 else f"exit {rc}"
        return "crash", f"{what}: the worker died; stderr: {self.stderr_tail(1500)}"

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


def run_calls(module_path, function, args_list, timeout=60.0, total_timeout=None, **worker):
    """Runs `function(*args)` for each `args` of `args_list` in a `Worker(**worker)`; returns
    the list of `Worker.call` results. A call that crashes or hangs the worker gets its
    "crash" or "hang" result, and the next runs in a fresh worker.

    Raises:
        TimeoutError: if `total_timeout` seconds pass before the last call is done.
    """
    w = Worker(**worker)
    start, results = time.monotonic(), []
    try:
        for args in args_list:
            left = timeout
            if total_timeout is not None:
                left = min(timeout, total_timeout - (time.monotonic() - start))
                if left <= 0:
                    raise TimeoutError(f"{function}: {len(results)} of {len(args_list)} calls "
                                       f"done in {total_timeout} s")
            results.append(w.call(module_path, function, *args, timeout=left))
    finally:
        w.close()
    return results


_SYSCALL = re.compile(r'^(\d+)\s+(open|openat|openat2|creat|newfstatat|stat)\('
                      r'(?:AT_FDCWD, |\d+, )?"((?:[^"\\]|\\.)*)"')


def parse_strace(log_prefix):
    """`{call id: [paths the child tried to open during that call]}` from the strace logs of a
    `Worker(strace_log=log_prefix)`."""
    opened = {}
    for log in sorted(Path(log_prefix).parent.glob(Path(log_prefix).name + ".*")):
        call = None  # calls run one at a time: every thread's opens belong to the current one
        for line in log.read_text(errors="replace").splitlines():
            m = _SYSCALL.match(line)
            if m is None:
                continue
            syscall, path = m.group(2), m.group(3)
            if path.startswith(MARKER_PREFIX):
                call_id, edge = path[len(MARKER_PREFIX):].rsplit("/", 1)
                call = call_id if edge == "begin" else None
                opened.setdefault(call_id, [])
                continue
            if call is not None and syscall in ("open", "openat", "openat2", "creat"):
                opened[call].append(path)
    return opened


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker_main(int(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        sys.exit(__doc__)
