"""The core's own float32 recurrent product (pylstm/_recurrent.h) against the BLAS time loop.

The packed path (float32 without projection or recurrent dropout) packs recurrent_kernel once
per call and runs the whole sequence on a team of threads, each owning whole groups of 4 x
(SIMD width) units. These tests force packing and teams of 1, 2 and 3 threads on small shapes
(`pylstm._plan.forced`; a team has at most one thread per group of 64 units with AVX-512,
32 otherwise) and check, for the forward and the backward, dense and packed
(lengths) batches, reverse, masks, per-gate activations, unit counts that leave partial
panels and groups, and runs long enough for the backward's in-team weight gradients to take
several blocks of rows:
- every team size gives bitwise the same outputs and gradients;
- they match the BLAS time loop (the path the parity tests were written against) and the
  float64 NumPy reference.
"""

import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import pylstm
from pylstm import _plan, ops


@pytest.fixture
def force_teams():
    """Packing and a full team at every size; pylstm's thread setting restored afterwards."""
    with _plan.forced(packing=True):
        yield
    pylstm.set_num_threads(None)


def problem(B, T, D, H, seed):
    rng = np.random.default_rng(seed)
    scale = 1.5 / np.sqrt(H)
    return dict(x=rng.standard_normal((B, T, D)).astype(np.float32),
                kernel=rng.uniform(-scale, scale, (D, 4 * H)).astype(np.float32),
                recurrent_kernel=rng.uniform(-scale, scale, (H, 4 * H)).astype(np.float32),
                bias=rng.uniform(-scale, scale, 4 * H).astype(np.float32),
                h0=rng.standard_normal((B, H)).astype(np.float32),
                c0=rng.standard_normal((B, H)).astype(np.float32))


def run(args, training, **kwargs):
    """Outputs, and with `training` every gradient, of one call (a list of arrays)."""
    y, h_n, c_n, cache = ops.lstm_forward(**args, training=training, **kwargs)
    out = [y, h_n, c_n]
    if training:
        rng = np.random.default_rng(7)
        grads = ops.lstm_backward(cache, rng.standard_normal(y.shape).astype(y.dtype),
                                  rng.standard_normal(h_n.shape).astype(y.dtype),
                                  rng.standard_normal(c_n.shape).astype(y.dtype))
        out += [grads[k] for k in sorted(grads) if grads[k] is not None]
    return out


def run_on_blas(args, training, **kwargs):
    """`run` on the BLAS time loop: no packed kernel, the input product by a GEMM."""
    with _plan.forced(packing=False):
        plan = ops.explain(args["x"].shape, args["recurrent_kernel"].shape[0],
                           training=training, lengths=kwargs.get("lengths"))
        assert plan.recurrent == "BLAS", plan
        assert not training or plan.backward.recurrent == "BLAS", plan
        return run(args, training, **kwargs)


CASES = [
    # B, T, D, H, options
    (1, 6, 3, 5, {}),
    (3, 5, 4, 16, {}),
    (6, 7, 5, 100, dict(reverse=True)),
    (9, 5, 3, 64, {}),
    (9, 4, 3, 192, {}),
    (5, 6, 4, 80, dict(lengths=np.array([6, 1, 4, 6, 2]))),
    (5, 6, 4, 80, dict(lengths=np.array([6, 1, 4, 6, 2]), reverse=True)),
    (4, 6, 3, 130, dict(mask="random")),
    (4, 6, 3, 130, dict(mask="random", zero_output_for_mask=True, reverse=True)),
    (7, 4, 3, 96, dict(gate_activations=("hard_sigmoid", "sigmoid", "relu", "swish", "elu"))),
    (2, 5, 3, 24, dict(activation="swish", recurrent_activation="softsign")),
    # Longer runs: the backward's team adds the weight gradients every 64 rows or more
    # (every 64 steps at batch 1), so these cross several blocks and end in a partial one.
    (1, 150, 3, 20, {}),
    (1, 150, 3, 20, dict(reverse=True)),
    (7, 30, 4, 40, dict(lengths=np.array([30, 5, 18, 30, 1, 24, 12]), reverse=True)),
    (7, 30, 4, 40, dict(lengths=np.array([30, 5, 18, 30, 1, 24, 12]))),
    (10, 15, 3, 70, dict(mask="random")),
]


def options(B, T, opts, seed):
    opts = dict(opts)
    if opts.get("mask") == "random":
        rng = np.random.default_rng(seed)
        opts["mask"] = rng.random((B, T)) < 0.7
    return opts


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_teams_bitwise_equal_and_match_blas(force_teams, case, training):
    B, T, D, H, opts = CASES[case]
    args = problem(B, T, D, H, seed=case)
    kwargs = options(B, T, opts, seed=case)
    results = []
    for team in (1, 2, 3):
        pylstm.set_num_threads(team)
        plan = ops.explain(args["x"].shape, H, training=training,
                           lengths=kwargs.get("lengths"))
        assert plan.recurrent == "fused" and plan.team == team, plan
        results.append(run(args, training, **kwargs))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)

    expected = run_on_blas(args, training, **kwargs)
    assert len(expected) == len(results[0])
    for got, want in zip(results[0], expected):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)

    args64 = {k: v.astype(np.float64) for k, v in args.items()}
    reference = run(args64, training, **kwargs)
    for got, want in zip(results[0], reference):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_chunked_inference_packs_once_and_matches(force_teams):
    """Inference in several chunks reuses the buffer packed in the first chunk."""
    args = problem(4, 10, 3, 40, seed=3)
    # with input dropout the recurrent kernel alone is packed, on the chunked route
    args["dropout_mask"] = np.full((4, 3), 1.25, np.float32)
    pylstm.set_num_threads(2)
    with _plan.forced(chunk_bytes=3 * 4 * 160 * 4):   # 3 steps of B=4 rows of 4H=160 floats
        plan = ops.explain((4, 10, 3), 40, dropout=True)
        assert (plan.route, plan.recurrent, plan.chunk_rows) == ("chunked inference",
                                                                  "packed", 12), plan
        got = run(args, False)
    whole = run(args, False)
    for a, b in zip(got, whole):
        np.testing.assert_array_equal(a, b)


# Run in a fresh process, whose new threads after a team's first call are that team's helpers.
# It prints the number of helpers and how many samples in a row found them all asleep
# (waiting, state S): a spinning helper is running (state R) whenever it is sampled.
_HELPERS_SLEEP = """
import os, time
import numpy as np
import pylstm
from pylstm import _plan, ops

def state(tid):
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"

rng = np.random.default_rng(2)
x = rng.standard_normal((3, 5, 4)).astype(np.float32)
kernel = rng.uniform(-0.1, 0.1, (4, 520)).astype(np.float32)
recurrent_kernel = rng.uniform(-0.1, 0.1, (130, 520)).astype(np.float32)
pylstm.set_num_threads(2)
with _plan.forced(packing=True, team=1):
    ops.lstm_forward(x, kernel, recurrent_kernel)
before = set(os.listdir("/proc/self/task"))
with _plan.forced(packing=True, team=2):
    y, h, c, cache = ops.lstm_forward(x, kernel, recurrent_kernel, training=True)
    ops.lstm_backward(cache, np.ones_like(y), np.zeros_like(h), np.zeros_like(c))
helpers = sorted(set(os.listdir("/proc/self/task")) - before)
asleep = 0
for _ in range(20000):
    asleep = asleep + 1 if all(state(t) in ("S", "D", "gone") for t in helpers) else 0
    if asleep == 20:
        break
    time.sleep(0.001)
print(len(helpers), asleep)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads thread states in /proc")
def test_team_helpers_sleep_after_a_call():
    """After a call, the team's helper threads go to sleep (they linger spinning only briefly
    for a next call): sampled 20 times in a row, every helper is waiting, none running."""
    out = subprocess.run([sys.executable, "-P", "-c", _HELPERS_SLEEP], capture_output=True,
                         text=True, timeout=120)    # a hang guard
    assert out.returncode == 0, out.stderr
    helpers, asleep = map(int, out.stdout.split())
    assert helpers >= 1 and asleep == 20, out.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_team_works_in_a_forked_child(force_teams):
    """A child forked after the team's helpers started runs teams of its own (no hang)."""
    pylstm.set_num_threads(2)
    args = problem(3, 5, 4, 130, seed=4)
    expected = run(args, True)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_run, args=(args, queue))
    child.start()
    try:
        got = queue.get(timeout=60)     # before join: the child exits once its data is read
    except Exception:
        child.kill()
        pytest.fail("the forked child hung in the core")
    child.join(timeout=60)
    assert child.exitcode == 0
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def _child_run(args, queue):
    pylstm.set_num_threads(2)
    with _plan.forced(packing=True):
        queue.put(run(args, True))


EXTRAS = {"plain": {}, "reverse": dict(reverse=True), "mask": dict(mask="random"),
          "lengths": dict(lengths=np.array([6, 2, 5, 1, 6]))}
FUSED_CASES = [(layout, extra) for layout in ("batch-first", "strided", "time-major")
               for extra in EXTRAS if not (layout == "time-major" and extra == "lengths")]


@pytest.mark.parametrize("layout, extra", FUSED_CASES)
def test_fused_inference_gives_the_training_bits(force_teams, layout, extra):
    """Inference computes each step's input product inside the time loop, reading x through
    its strides and writing y in the caller's layout; training computes it for all rows
    first. Both must give the same bits, on any team."""
    B, T, D, H = 5, 6, 4, 100
    args = problem(B, T, D, H, seed=11)
    kwargs = options(B, T, EXTRAS[extra], seed=11)
    if layout == "strided":
        x = np.asfortranarray(np.stack([args["x"], args["x"]], axis=-1))[..., 1]
        assert not x.flags.c_contiguous
        args["x"] = x
    elif layout == "time-major":
        args["x"] = np.ascontiguousarray(args["x"].transpose(1, 0, 2))
        kwargs["time_major"] = True
        if "mask" in kwargs:
            kwargs["mask"] = np.ascontiguousarray(kwargs["mask"].T)
    trained = ops.lstm_forward(**args, training=True, **kwargs)[:3]
    for team in (1, 2, 3):
        pylstm.set_num_threads(team)
        for return_sequences in (True, False):
            got = ops.lstm_forward(**args, return_sequences=return_sequences, **kwargs)
            np.testing.assert_array_equal(got[1], trained[1])
            np.testing.assert_array_equal(got[2], trained[2])
            if return_sequences:
                np.testing.assert_array_equal(got[0], trained[0])


@pytest.mark.parametrize("weights", [(1.0, 3.0), (3.0, 1.0), (0.25, 4.0), (4.0, 0.25)])
def test_uneven_team_splits_give_the_same_bits(force_teams, weights):
    """The team splits the units in proportion to each member's measured speed; any split,
    down to a member with no units at all, gives the bits of one thread."""
    from pylstm._kernels import core as _core

    args = problem(5, 6, 4, 120, seed=21)   # 8 panels, 2 groups: 0.25 to 4 leaves one empty
    kwargs = dict(mask=np.random.default_rng(21).random((5, 6)) < 0.8)
    pylstm.set_num_threads(1)
    expected = run(args, True, **kwargs) + list(ops.lstm_forward(**args, **kwargs)[:3])
    pylstm.set_num_threads(2)
    _core.set_team_weights(weights)
    assert _core.team_weights(2) == list(weights)
    try:
        got = run(args, True, **kwargs) + list(ops.lstm_forward(**args, **kwargs)[:3])
    finally:
        _core.set_team_weights((1.0, 1.0))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="weights"):
        _core.set_team_weights((1.0, 9.0))


@pytest.mark.parametrize("case", [0, 5, 7, 11, 13])
def test_weight_gradients_by_team_match_the_gemms(force_teams, case):
    """The backward's team adds the weight gradients itself while they fit in cache
    (_plan._WGRAD_TEAM_BYTES), else BLAS GEMMs follow the loop: both agree."""
    B, T, D, H, opts = CASES[case]
    args = problem(B, T, D, H, seed=case)
    kwargs = options(B, T, opts, seed=case)
    pylstm.set_num_threads(2)
    assert ops.explain((B, T, D), H, training=True).backward.weight_grads == "team"
    by_team = run(args, True, **kwargs)
    with _plan.forced(weight_grads="GEMM"):
        assert ops.explain((B, T, D), H, training=True).backward.weight_grads == "GEMM"
        by_gemm = run(args, True, **kwargs)
    for a, b in zip(by_team, by_gemm):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("layout", ["time-major view", "every other step", "reversed steps",
                                    "broadcast batch", "fortran order", "one sample"])
def test_fused_inference_reads_strided_input_in_place(force_teams, layout):
    """The fused inference reads x through its strides (ops._dense._strided_rows); every layout
    gives
    the bits of the same values in a C-contiguous array."""
    rng = np.random.default_rng(5)
    args = problem(3, 10, 6, 40, seed=5)
    base = rng.standard_normal((3, 20, 6)).astype(np.float32)
    time_major = False
    if layout == "time-major view":
        x, time_major = base[:, :10].transpose(1, 0, 2), True
    elif layout == "every other step":
        x = base[:, ::2]
    elif layout == "reversed steps":
        x = base[:, 10::-1][:, :10]
    elif layout == "broadcast batch":
        x = np.broadcast_to(base[:1, :10], (3, 10, 6))
    elif layout == "fortran order":
        x = np.asfortranarray(base[:, :10])
    else:
        x = base[:1, ::2]
        args = {k: (v[:1] if k in ("h0", "c0") else v) for k, v in args.items()}
    args = dict(args, x=x)
    for team in (1, 2):
        pylstm.set_num_threads(team)
        got = ops.lstm_forward(**args, time_major=time_major)
        want = ops.lstm_forward(**dict(args, x=np.ascontiguousarray(x)), time_major=time_major)
        for a, b in zip(got[:3], want[:3]):
            np.testing.assert_array_equal(a, b)


def test_small_loops_join_only_an_awake_team():
    """Loops between _TEAM_SMALL_* and _TEAM_MIN_* take the team only while its helpers are
    awake from the call before (the plan's `team_if_awake`); either way, and after
    the helpers have gone to sleep, the results are those of one thread."""
    args = problem(2, 40, 8, 48, seed=3)
    try:
        pylstm.set_num_threads(1)
        expected = run(args, True)
        pylstm.set_num_threads(2)
        with _plan.forced(team_scale=1.0):     # the thresholds of the reference machine
            plan = ops.explain((2, 40, 8), 48, training=True)
            assert (plan.team, plan.team_if_awake) == (2, True), plan
            assert (plan.backward.team, plan.backward.team_if_awake) == (2, True), plan
            for pause in (0.0, 0.0, 0.01, 0.0):        # 10 ms: the helpers fall asleep
                time.sleep(pause)
                for a, b in zip(run(args, True), expected):
                    np.testing.assert_array_equal(a, b)
    finally:
        pylstm.set_num_threads(None)


def test_which_path_adds_the_weight_gradients_does_not_depend_on_threads():
    """With 1.5 MB of weight gradients (under _plan._WGRAD_TEAM_BYTES, over a 1 MiB share for
    one thread: a limit per member would pick GEMMs on one thread and the team on two), one
    and two threads give the same bits."""
    args = problem(2, 70, 128, 256, seed=9)
    try:
        results = []
        for n in (1, 2):
            pylstm.set_num_threads(n)
            results.append(run(args, True))
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
    finally:
        pylstm.set_num_threads(None)
