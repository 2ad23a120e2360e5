"""How many threads pylstm's BLAS calls use, and the caller's BLAS setting restored after each call.

Policy (the sizes that choose between these are in `pylstm._plan`, with the benchmarks that
set them; the measurements are in benchmarks/README.md, "Thread policy measurements"):

- A time loop of one BLAS product per step runs on one BLAS thread for small steps, else on
  `get_num_threads()`: a worker woken every step stalls when another process holds a core, so
  an application on a shared machine pins pylstm with `set_num_threads(1)`.
- The GEMMs done once per call over all rows (the hoisted input product, the weight and input
  gradients) use `get_num_threads()` threads; OpenBLAS itself keeps small ones on one thread.
- `get_num_threads()` is None by default: the BLAS library's own setting at the call (OpenBLAS:
  one thread per core, `OPENBLAS_NUM_THREADS`, or what threadpoolctl set), as PyTorch uses
  every core by default. After a call the BLAS libraries are back at the caller's counts.
- Spinning: OpenBLAS's workers busy-wait about 2**28 TSC cycles after each multi-threaded call
  before they sleep (its THREAD_TIMEOUT, read from `OPENBLAS_THREAD_TIMEOUT` when the library
  loads; setting its thread count to 1 does not stop them). The first time pylstm is about to
  use more than one thread (a BLAS product on several threads, or a plan that allows the
  core's team: `team_available`), unless the caller set `OPENBLAS_THREAD_TIMEOUT`, it sets
  that timeout to 2**16 cycles in the OpenBLAS libraries it drives and restarts their thread
  pools: a worker still spinning, after pylstm's BLAS call or any other code's, would take
  the core that a member of the core's own team needs.
- The core's packed time loops (float32 without projection or recurrent dropout) run on a
  thread team of the core's own, sized by `pylstm._plan.team_size` from `available()`; its
  helpers persist between calls, spin briefly after a run, then sleep.
- Two independent calls (the directions of a bidirectional LSTM) run side by side
  (`concurrently`), each on its share of the threads, when `pylstm._plan.side_by_side` says so.

Where results do not depend on the thread count (tests/unit/test_thread_determinism.py and
tests/unit/test_threads.py check 1 against 2 threads):
- float32, every path: the packed core (its team's split never changes a sum's order), and
  the BLAS products, which OpenBLAS splits over output blocks computed with the same float32
  kernel; pylstm's own GEMMs split sums over more than 256 terms so that OpenBLAS's blocking
  of the sum is the same on one thread and several (pylstm/_blas.pxd). Except: a product of
  one row (batch 1, or a packed batch down to its last sample, on the BLAS path of
  projections and recurrent dropout, and `LSTMStepper.step` at batch 1) with a weight matrix
  of about 2**19 elements or more, on more than one thread: OpenBLAS shares such a
  matrix-vector product between its threads in a way that changes its rounding.
- Python-callable activations (the NumPy path), float32 and float64: it runs on one thread.
- Not float64 on the compiled path: OpenBLAS's double-precision kernels round differently at
  the edges of the output blocks each thread takes, so float64 results can differ in the
  last bits between thread counts (on one thread count they are the same from run to run).
  `set_num_threads(1)` gives float64 results that do not depend on the machine's core count.

Thread counts are set through `threadpoolctl` (it finds every BLAS library loaded in the
process); for OpenBLAS the setter is called directly through ctypes, much cheaper than
`threadpoolctl.threadpool_limits`. Without threadpoolctl, pylstm leaves the BLAS threads alone
and everything else works the same.

The thread count of OpenBLAS's pthreads pool is process-wide: Python threads that run
pylstm concurrently share it (the results are the same whatever the count). The caller's
counts are those found by the first of the calls in flight, and the last one to end puts
them back (`BlasThreads`), so interleaved calls leave the caller's setting as it was.
"""

import ctypes
import os
import threading
import time

import numpy as np

from pylstm import _cpu, _plan

# 2**16 TSC cycles: a spinning worker sleeps within a millisecond (see the module docstring).
_SPIN_TIMEOUT_LOG2 = 16

_lock = threading.Lock()
_local = threading.local()   # .pinned: threads of the calls made in this thread, or None
# Calls (in any Python thread) that changed the BLAS counts and have not yet put them back, and
# the counts the first of them found: the caller's, which the last one restores. Each call
# restoring what it found itself would leave another thread's temporary count behind when
# calls interleave. _contended: another call changed the counts meanwhile, so a call's record
# of the counts it set may be stale.
_held = 0
_callers = None
_contended = False
# One entry per core call in flight that switches the counts itself (`begin_switch`; list
# appends and pops are atomic, cheaper than the lock on the small calls that do this): the
# first call to hold the counts waits for them to end before it reads the caller's counts,
# and none starts while a call holds them. _cond (on _lock) lets later holders wait for the
# first one's reading.
_switches = []
_cond = threading.Condition(_lock)
_num_threads = None
_libs = None          # list of _Lib once discovered (empty when nothing can be controlled)
_timeout_set = False


class _Lib:
    """One BLAS library: its get/set thread-count functions (ctypes for OpenBLAS)."""

    def __init__(self, controller):
        self.controller = controller
        self.get = controller.get_num_threads
        self.set = controller.set_num_threads
        self.dynlib = None
        self.addresses = None     # (get, set) C function addresses, for the core (OpenBLAS)
        if controller.internal_api == "openblas" and controller.threading_layer == "pthreads":
            # SciPy's and NumPy's wheels rename OpenBLAS's symbols (scipy_ prefix, 64_ suffix).
            dynlib = controller.dynlib
            names = [(f"{prefix}openblas_get_num_threads{suffix}",
                      f"{prefix}openblas_set_num_threads{suffix}")
                     for prefix in ("", "scipy_") for suffix in ("", "64_", "_64")]
            found = [(get, set_) for get, set_ in names
                     if hasattr(dynlib, get) and hasattr(dynlib, set_)]
            if found:
                getter, setter = getattr(dynlib, found[0][0]), getattr(dynlib, found[0][1])
                getter.restype = ctypes.c_int
                getter.argtypes = []
                setter.restype = None
                setter.argtypes = [ctypes.c_int]
                self.get, self.set, self.dynlib = getter, setter, dynlib
                self.addresses = (ctypes.cast(getter, ctypes.c_void_p).value,
                                  ctypes.cast(setter, ctypes.c_void_p).value)


def _cpu_count():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _discover():
    """The BLAS libraries of this process (after SciPy's is loaded), found once."""
    global _libs
    if _libs is None:
        # The core calls scipy.linalg.cython_blas: load that BLAS before looking for it.
        import scipy.linalg.cython_blas  # noqa: F401
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _libs = []
        else:
            blas = ThreadpoolController().select(user_api="blas")
            _libs = [_Lib(controller) for controller in blas.lib_controllers]
    return _libs


def loop_switch():
    """How a core call whose BLAS time loop runs on one thread (`pylstm._plan.loop_threads`)
    sets its BLAS threads by itself (`_core.forward_small`: cheaper than `BlasThreads`).

    Returns a `(2n,)` uintp array of the get and set thread-count functions of the n BLAS
    libraries, which the core sets to one thread for the call and restores after; an empty
    one when nothing is to change (inside `concurrently`, whose share is already set; no BLAS
    library found); None when `BlasThreads` must do it (a library without C entry points).
    """
    if getattr(_local, "pinned", None) is not None:
        return _NO_SWITCH
    global _switch
    libs = _libs if _libs is not None else _discover()
    if _switch[0] is not libs:
        addresses = [lib.addresses for lib in libs]
        _switch = (libs, None if None in addresses else
                   np.array([a for pair in addresses for a in pair], dtype=np.uintp))
    return _switch[1]


_NO_SWITCH = np.zeros(0, dtype=np.uintp)
_switch = (None, None)   # (the libraries, loop_switch's array for them)


def begin_switch(switch):
    """Before a core call given `switch` (from `loop_switch`): whether it may switch the counts
    itself. False while another call holds them (`BlasThreads`): then take `BlasThreads`, so
    that the last call in flight restores the caller's counts. A True answer must be followed
    by `end_switch(switch)` after the core call."""
    if not switch.size:
        return True
    # Announce first, then look: a holder increments _held, then waits for _switches to
    # empty, so one of the two always sees the other.
    _switches.append(None)
    if _held:
        _switches.pop()
        return False
    return True


def end_switch(switch):
    """After a core call that `begin_switch` let switch the counts (they are restored)."""
    if switch.size:
        _switches.pop()


def set_num_threads(n):
    """Sets how many threads pylstm's compiled core and its BLAS products may use.

    The core's own time loops (float32 without projection or recurrent dropout) run on a
    team of `n` threads when a call is large enough to gain from threads (see
    `pylstm._threads`); the BLAS products done once per call over all rows (weight and input
    gradients, and the input projection on the BLAS path) use `n` threads, and so do the
    per-timestep BLAS products (float64, projection, recurrent dropout) from 2**20 FLOPs a
    step. The BLAS libraries' own settings are restored after every pylstm call, so other
    code in the process is not affected. This mirrors `torch.set_num_threads`. float32
    results are bitwise the same on any thread count (but for large products of one row);
    float64 results on the compiled path can differ in their last bits (`pylstm._threads`
    says exactly where the guarantee holds).

    The first time pylstm uses more than one thread, it shortens the time OpenBLAS's
    worker threads busy-wait after a call from 2**28 to 2**16 processor cycles, once, by
    restarting OpenBLAS's thread pool (unless the environment variable
    `OPENBLAS_THREAD_TIMEOUT` is set): no other thread should be inside BLAS then. Calling
    `set_num_threads(n > 1)` or `set_num_threads(None)` does it at once.

    Args:
        n: int >= 1, or None (the default) to use whatever thread count the BLAS library has
            at each call (OpenBLAS: one per core, `OPENBLAS_NUM_THREADS`, or what
            `threadpoolctl.threadpool_limits` set).

    Raises:
        TypeError: `n` is not an integer or None.
        ValueError: `n` is smaller than 1.

    Example:
    >>> from pylstm import ops
    >>> ops.set_num_threads(1)      # pin pylstm to one core (a shared machine)
    >>> ops.get_num_threads()
    1
    >>> ops.set_num_threads(None)   # back to the BLAS library's setting
    """
    global _num_threads
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) and not hasattr(n, "__index__"):
            raise TypeError(f"Argument `n` must be an integer >= 1 or None, received "
                            f"{type(n).__name__} {n!r}.")
        n = int(n.__index__())
        if n < 1:
            raise ValueError(f"Argument `n` must be an integer >= 1 or None, received {n}.")
    with _lock:
        _num_threads = n
        if n is None or n > 1:
            _shorten_spinning()


def get_num_threads():
    """The thread count set by `set_num_threads` (the core's team and its BLAS products).

    Returns:
        int >= 1, or None when pylstm uses the BLAS library's own setting.

    Example:

    >>> from pylstm import ops
    >>> ops.set_num_threads(2)
    >>> ops.get_num_threads()
    2
    >>> ops.set_num_threads(None)
    >>> ops.get_num_threads() is None
    True
    """
    return _num_threads


def _shorten_spinning():
    """Restarts OpenBLAS's thread pools with a 2**16-cycle busy-wait, unless the caller set one."""
    global _timeout_set
    if _timeout_set:
        return
    try:
        _restart_pools()
    finally:
        # Only now: a call in another thread that finds it unset waits for _lock, held by
        # this one's caller, instead of entering BLAS while its pool restarts.
        _timeout_set = True


def _restart_pools():
    """`_shorten_spinning`'s work: the timeout set and the pools restarted."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return
    libs = [lib for lib in _discover() if lib.dynlib is not None]
    if not libs:
        return
    # OpenBLAS reads the timeout from the environment into a static variable
    # (openblas_read_env) and applies it when its pool starts (blas_thread_init); the pool
    # starts again lazily at the next call after blas_thread_shutdown_.
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(_SPIN_TIMEOUT_LOG2)
    try:
        for lib in libs:
            read_env = getattr(lib.dynlib, "openblas_read_env", None)
            shutdown = getattr(lib.dynlib, "blas_thread_shutdown_", None)
            if read_env is not None and shutdown is not None:
                read_env()
                shutdown()
    finally:
        del os.environ["OPENBLAS_THREAD_TIMEOUT"]


def available():
    """The threads pylstm may use for a thread team: the share of a call inside
    `concurrently`, else `get_num_threads()`, else the BLAS library's count (the caller's),
    else the CPUs this process may run on."""
    pinned = getattr(_local, "pinned", None)
    if pinned is not None:
        return pinned
    if _num_threads is not None:
        return _num_threads
    libs = _libs if _libs is not None else _discover()
    return max(lib.get() for lib in libs) if libs else _cpu_count()


def team_available():
    """`available()`, as the planners size the core's thread team with it; the first time it
    allows a team, OpenBLAS's busy-wait is shortened first (`_shorten_spinning`), as before
    pylstm's first multi-threaded BLAS call: a worker still spinning after other code's BLAS
    call (NumPy's `linalg`, the orthogonal initializer's QR) takes the core a team helper
    needs. Measured (AMD EPYC, 2 cores): B=1 T=100 D=32 H=64 forwards took 130-215 us for
    the 100 ms after an `LSTM` was built, then 85 us; 83-90 us from the first with this."""
    n = available()
    if n > 1 and not _timeout_set:
        with _lock:
            _shorten_spinning()
    return n


class BlasThreads:
    """Sets the BLAS thread counts for one pylstm call and restores the caller's at exit.

    `with BlasThreads() as threads:` then `threads.loop(plan.loop_threads)` before a time
    loop, `threads.bulk()` before a whole-call GEMM (`get_num_threads()`). The caller's counts
    are read only when a count has to change, and nothing is set where a library already has
    the wanted count: with the default policy a call that needs no switch costs no BLAS call.

    Example:

    >>> import numpy as np
    >>> from pylstm.ops import BlasThreads
    >>> a = np.ones((64, 64))
    >>> with BlasThreads() as threads:
    ...     threads.loop(1)     # one BLAS thread for a loop of small products
    ...     total = sum(float((a @ a)[0, 0]) for _ in range(3))
    >>> total                   # out of the block, the caller's thread counts are back
    192.0
    """

    __slots__ = ("libs", "saved", "current")

    def __enter__(self):
        self.libs = _libs if _libs is not None else _discover()
        self.saved = self.current = None
        return self

    def _use(self, counts):
        for k, lib in enumerate(self.libs):
            if self.current[k] != counts[k]:
                lib.set(counts[k])
                self.current[k] = counts[k]

    def loop(self, threads):
        """Before a time loop of one BLAS product per step on `threads` threads: 1, or None
        for `get_num_threads()` (`pylstm._plan.loop_threads`)."""
        if getattr(_local, "pinned", None) is None:
            self._threaded(1 if threads == 1 else _num_threads)

    def bulk(self):
        if getattr(_local, "pinned", None) is None:
            self._threaded(_num_threads)

    def available(self):
        """The threads pylstm may use: `get_num_threads()`, else the BLAS library's count
        (the caller's), else the CPUs this process may run on."""
        if _num_threads is not None:
            return _num_threads
        counts = self.saved if self.saved is not None else [lib.get() for lib in self.libs]
        return max(counts) if counts else _cpu_count()

    def _threaded(self, n):
        """Every library at `n` threads (None: the caller's counts); shorten spinning first
        for work that may run on several threads."""
        if n is None:
            if not _timeout_set:
                counts = self.saved or [lib.get() for lib in self.libs]
                if max(counts, default=1) > 1:
                    with _lock:
                        _shorten_spinning()
            if self.current is not None:
                self._use(self.saved)
            return
        if self.current is None:
            self._hold()
        if n > 1 and not _timeout_set:
            with _lock:
                _shorten_spinning()
        self._use([n] * len(self.libs))

    def _hold(self):
        """Registers this call as changing the BLAS counts (see `_held`); `saved` becomes the
        caller's counts, those found by the first of the calls in flight."""
        global _held, _callers, _contended
        with _cond:
            _held += 1
            first = _held == 1
            if first:
                _callers = None
                _contended = False
            else:
                _contended = True
                while _callers is None:
                    _cond.wait()
                self.saved = _callers
        if first:
            while _switches:     # core calls that switched the counts: they restore them
                time.sleep(0)
            counts = [lib.get() for lib in self.libs]
            with _cond:
                _callers = self.saved = counts
                if _held > 1:
                    _cond.notify_all()
        self.current = [lib.get() for lib in self.libs] if _contended else list(self.saved)

    def __exit__(self, *exc):
        global _held
        if self.current is not None:
            with _lock:
                _held -= 1
                if _held == 0:
                    # The last call in flight: every library back at the caller's count
                    # (read afresh where other calls may have changed it meanwhile).
                    if _contended:
                        self.current = [lib.get() for lib in self.libs]
                    self._use(self.saved)
        return False


def concurrently(calls, flop_each):
    """Runs independent calls into pylstm's core at once, one per core, and returns their
    results in order (the first exception raised, if any, after all have ended).

    With at least two threads to use (`get_num_threads()`, else the BLAS library's count)
    and `flop_each` (the recurrent FLOPs of one call) large enough (`pylstm._plan.side_by_side`),
    each call runs in its own thread (the first in the caller's) on its share of the
    threads, BLAS included; otherwise one after the other. Used for the two directions of a
    bidirectional LSTM: running them side by side avoids a synchronisation per step between
    cores (`python -m benchmarks.bench_bidirectional`, benchmarks/README.md). In float32, results are bitwise those of sequential calls (the
    core and pylstm's BLAS products give the same bits on any thread count, see the module
    docstring; float64's BLAS products may differ in their last bits).
    """
    calls = list(calls)
    if (len(calls) < 2 or not _plan.side_by_side(flop_each)
            or getattr(_local, "pinned", None) is not None):
        return [call() for call in calls]
    with BlasThreads() as threads:
        total = threads.available()
        if total < 2:
            return [call() for call in calls]
        share = max(1, total // len(calls))
        threads._threaded(share)
        results = [None] * len(calls)
        errors = [None] * len(calls)
        # A new thread often starts on its starter's CPU and stays there while both compute:
        # each one moves off the CPUs of the calls before it (pylstm/_affinity.h).
        cpus = [_cpu.current_cpu()] + [-1] * (len(calls) - 1)

        def run(k):
            _local.pinned = share
            if k:
                cpus[k] = _cpu.leave_cpus(cpus[:k])
            try:
                results[k] = calls[k]()
            except BaseException as error:  # re-raised in the caller
                errors[k] = error
            finally:
                _local.pinned = None

        workers = [threading.Thread(target=run, args=(k,), daemon=True)
                   for k in range(1, len(calls))]
        for worker in workers:
            worker.start()
        run(0)
        for worker in workers:
            worker.join()
    for error in errors:
        if error is not None:
            raise error
    return results
