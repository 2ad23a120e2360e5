"""Which code runs an LSTM call: the route, its threads, chunks and packing, chosen in one place.

`forward_plan` and `backward_plan` turn a call's sizes and options into a `Plan`; `pylstm.ops`
runs what the plan names and nothing else, and `pylstm.ops.explain` shows it. Every size
threshold of the choice lives here, with the benchmark command that set it (the measurements
are in benchmarks/README.md). This module computes; it sets no threads and touches no array:
the thread count it needs comes from the caller (`available`, `pylstm._threads.available`).

The routes (`ROUTES`):
- "reference": the plain-NumPy loop of `pylstm._reference`, for activations that are Python
  callables (forward and backward).
- "small call": one `_core.forward_small` call for a few dense inference rows (a single step,
  a short sequence at batch 1), where Python overhead is most of the time.
- "fused inference": float32 without projection or dropout: the core packs both kernels and
  computes each step's input and recurrent products itself, on a thread team, reading x in
  place (no input GEMM, no chunks).
- "chunked inference": everything else at inference: one input GEMM per chunk of steps, then
  the time loop over the chunk while its gates are in cache.
- "fused training": the training forward of the fused route (its cache feeds the backward).
- "GEMM training": one input GEMM over all rows, then the time loop.
In "chunked inference" and "GEMM training" the time loop's recurrent product is "packed" (the
core's own product on a packed recurrent kernel, float32 without projection or recurrent
dropout, when packing pays) or "BLAS" (one product per step). Input is "dense", "lengths"
(packed by `lengths`, run, scattered back) or "packed" (`lstm_forward_packed`).

Tests choose a route, team or chunk size with `forced`, never by changing a threshold.
"""

import contextlib
import threading
from typing import NamedTuple

from pylstm import _tuning

REFERENCE = "reference"
SMALL = "small call"
FUSED_INFERENCE = "fused inference"
CHUNKED_INFERENCE = "chunked inference"
FUSED_TRAINING = "fused training"
GEMM_TRAINING = "GEMM training"
BACKWARD = "backward"
REFERENCE_BACKWARD = "reference backward"
ROUTES = (REFERENCE, SMALL, FUSED_INFERENCE, CHUNKED_INFERENCE, FUSED_TRAINING, GEMM_TRAINING)

# The numbers behind these thresholds were measured with interleaved A/B runs of the two
# settings (`python benchmarks/bench_compare.py` runs two builds side by side); they are in
# benchmarks/README.md, "Measurements behind the thresholds".

# Packing the kernels costs about as much as reading them once: a call with fewer input rows
# than this, whose steps are too small for a thread team, runs on BLAS; dense inference of
# so few rows (in place) is one `forward_small` call. README "Route measurements";
# `python benchmarks/bench_step.py` and `python benchmarks/bench_lstm.py --quick` time both.
_PACK_MIN_ROWS = 64

# Per-step BLAS products below this many FLOPs run on one BLAS thread, above on
# `get_num_threads()`. README "Thread policy measurements";
# `python benchmarks/bench_scaling.py --threads 1` and `--threads 2` time both sides.
_LOOP_MIN_FLOP = 1 << 20

# The core's packed time loop runs on a team of threads (a barrier per step) from these sizes
# (FLOPs a step and a call) times `_tuning.team_scale` (1 on the machine they were measured
# on). README "Thread policy measurements" (forward T=100, 2 threads against 1).
_TEAM_MIN_STEP_FLOP = 1 << 17
_TEAM_MIN_FLOP = 1 << 24
# Between these and the above, a loop takes a team only while its helpers are awake from the
# call before (a loop of calls; `Plan.team_if_awake`: no wake-up to wait for).
# README "Thread policy measurements" (a loop of calls at B=1 T=100).
_TEAM_SMALL_STEP_FLOP = 1 << 14
_TEAM_SMALL_FLOP = 1 << 20

# Inference chunks: whole steps whose gates (rows, 4H) take about this many bytes (one L2,
# `pylstm._tuning`), written by one GEMM per chunk and read by the time loop while still in L2.
# README "Route measurements"; `python benchmarks/bench_memory.py` checks the memory it bounds.
_CHUNK_BYTES = _tuning.TUNING.chunk_bytes

# The backward's team adds the weight gradients itself while they take at most this many
# bytes; above, BLAS GEMMs after the loop are faster. README "Route measurements" (team
# against GEMMs, training step). A constant, not derived from the cache sizes: the choice
# changes the gradients' rounding (`pylstm._tuning`).
_WGRAD_TEAM_BYTES = 3 << 20

# Independent calls (the two directions of a bidirectional layer) run side by side from this
# many recurrent FLOPs each. Set by `python -m benchmarks.bench_bidirectional`.
_CONCURRENT_MIN_FLOP = 1 << 26


class Plan(NamedTuple):
    """How one LSTM call runs, as `pylstm.ops.explain` returns it (`str()` says it in words).

    Attributes:
        route: one of `ROUTES` (forward), or "backward" / "reference backward".
        dtype: "float32" or "float64".
        input: "dense", "lengths" (packed by `lengths` and scattered back) or "packed"
            (`lstm_forward_packed`).
        batch, steps, rows: B, T and the real (timestep, sample) rows N.
        recurrent: the time loop's recurrent product: "fused" (both kernels packed),
            "packed" (the recurrent kernel packed), "BLAS" (one product per step), "NumPy".
        team: threads of the core's packed loop; 1 off the packed loop.
        team_if_awake: whether the loop takes that team only if its helpers are awake from
            the call before, else runs on one thread (a loop too small to wait for them).
        loop_threads: BLAS threads of the per-step products: 1, or None for
            `get_num_threads()` (the BLAS library's setting by default).
        chunk_rows: rows a chunk of chunked inference holds at most (whole steps, at least
            one), else None.
        weight_grads: backward only: "team" (the core's team adds them in the loop) or
            "GEMM" (after the loop); else None.
        backward: `explain` of a training call: the backward's plan, else None.
    """

    route: str
    dtype: str
    input: str
    batch: int
    steps: int
    rows: int
    recurrent: str
    team: int = 1
    team_if_awake: bool = False
    loop_threads: object = 1
    chunk_rows: object = None
    weight_grads: object = None
    backward: object = None

    def __str__(self):
        details = [self.dtype, _RECURRENT_WORDS[self.recurrent]]
        if self.recurrent in ("fused", "packed"):
            n = self.team
            details.append("one thread" if n == 1 else f"{n}-thread team"
                           + (" if awake, else one thread" if self.team_if_awake else ""))
        elif self.recurrent == "BLAS":
            details.append("one BLAS thread a step" if self.loop_threads == 1
                           else "get_num_threads() BLAS threads a step")
        if self.chunk_rows is not None:
            details.append(f"chunks of up to {self.chunk_rows} rows")
        if self.weight_grads is not None:
            details.append("weight gradients " + ("in the team" if self.weight_grads == "team"
                                                  else "by GEMMs after the loop"))
        text = (f"route: {self.route} ({', '.join(details)}): {_ROUTE_WORDS[self.route]}; "
                f"{_INPUT_WORDS[self.input]}, B={self.batch}, T={self.steps}, "
                f"{self.rows} rows")
        if self.backward is not None:
            text += "\n" + str(self.backward)
        return text


_RECURRENT_WORDS = {"fused": "packed kernels", "packed": "packed recurrent kernel",
                    "BLAS": "BLAS products", "NumPy": "NumPy"}
_ROUTE_WORDS = {
    REFERENCE: "the plain-NumPy loop of pylstm._reference (an activation is a Python callable)",
    SMALL: "one compiled call for a few rows, a BLAS product a step",
    FUSED_INFERENCE: "the core computes each step's input and recurrent products on kernels "
                     "packed once per call, reading x in place",
    CHUNKED_INFERENCE: "one input GEMM per chunk of steps, then the time loop over the chunk",
    FUSED_TRAINING: "the core computes the input product and the time loop on packed "
                    "kernels, keeping the cache for the backward",
    GEMM_TRAINING: "one input GEMM over all rows, then the time loop, keeping the cache",
    BACKWARD: "the compiled backward through time, then the weight and input gradients",
    REFERENCE_BACKWARD: "the plain-NumPy backward of pylstm._reference",
}
_INPUT_WORDS = {"dense": "dense input", "lengths": "input packed by lengths",
                "packed": "packed input"}


_overrides = {}
_override_lock = threading.Lock()


@contextlib.contextmanager
def forced(**choices):
    """Within the block, every plan takes `choices` instead of what the sizes say (tests).

    Keys: `route` (one of `ROUTES`; a call it cannot run raises ValueError), `packing`
    (True: pack wherever the dtype and options allow; False: never), `team` (an int for
    every packed loop), `team_scale` (instead of `_tuning.team_scale`), `chunk_bytes`
    (instead of `_CHUNK_BYTES`), `weight_grads` ("team" or "GEMM", where the team can),
    `side_by_side` (bool, for `side_by_side`).
    """
    unknown = set(choices) - {"route", "packing", "team", "team_scale", "chunk_bytes",
                              "weight_grads", "side_by_side"}
    if unknown:
        raise ValueError(f"forced: unknown choices {sorted(unknown)}.")
    if "route" in choices and choices["route"] not in ROUTES:
        raise ValueError(f"forced: `route` must be one of {ROUTES}, received "
                         f"{choices['route']!r}.")
    with _override_lock:
        saved = dict(_overrides)
        _overrides.update(choices)
    try:
        yield
    finally:
        with _override_lock:
            _overrides.clear()
            _overrides.update(saved)


def _worth_packing(rows, step_flop, B):
    """Whether `rows` input rows of batch B, `step_flop` FLOPs a step, gain from packing:
    enough rows, or steps that a thread team shares."""
    packing = _overrides.get("packing") if _overrides else None
    if packing is not None:
        return packing
    return rows >= _PACK_MIN_ROWS or (step_flop >= _TEAM_MIN_STEP_FLOP and
                                      step_flop * (rows // B) >= _TEAM_MIN_FLOP)


def parameters():
    """The sizes the plans are chosen with, by name (`pylstm.show_config`'s "tuning"); the
    team thresholds before their scale, and the scales measured so far by team size."""
    return {"chunk_bytes": _CHUNK_BYTES, "weight_grad_team_bytes": _WGRAD_TEAM_BYTES,
            "pack_min_rows": _PACK_MIN_ROWS, "loop_min_flop": _LOOP_MIN_FLOP,
            "team_min_step_flop": _TEAM_MIN_STEP_FLOP, "team_min_flop": _TEAM_MIN_FLOP,
            "team_if_awake_min_step_flop": _TEAM_SMALL_STEP_FLOP,
            "team_if_awake_min_flop": _TEAM_SMALL_FLOP,
            "team_calibration_by_threads": _tuning.team_scales(),
            "side_by_side_min_flop": _CONCURRENT_MIN_FLOP}


def team_size(step_flop, steps, available):
    """`(team, team_if_awake)` of the core's packed loop of `steps` steps at `step_flop` FLOPs
    each (`Plan`'s fields): one thread below `_TEAM_SMALL_*`; else n = `available()`, only if
    its helpers are awake below `_TEAM_MIN_*`; every threshold times this machine's
    `_tuning.team_scale(n)`."""
    if _overrides and "team" in _overrides:
        return _overrides["team"], False
    if (_overrides.get("packing") if _overrides else None):
        return available(), False      # forced packing at any size: a full team
    low = _tuning.TEAM_SCALE_RANGE[0]
    if step_flop < low * _TEAM_SMALL_STEP_FLOP or step_flop * steps < low * _TEAM_SMALL_FLOP:
        return 1, False
    n = available()
    if n <= 1:
        return 1, False
    scale = _overrides.get("team_scale") if _overrides else None
    if scale is None:
        scale = _tuning.team_scale(n)
    if step_flop < scale * _TEAM_SMALL_STEP_FLOP or step_flop * steps < scale * _TEAM_SMALL_FLOP:
        return 1, False
    if step_flop < scale * _TEAM_MIN_STEP_FLOP or step_flop * steps < scale * _TEAM_MIN_FLOP:
        return n, True
    return n, False


def loop_threads(step_flop):
    """BLAS threads of a per-step product of `step_flop` FLOPs: 1, or None (all allowed)."""
    return 1 if step_flop < _LOOP_MIN_FLOP else None


def side_by_side(flop_each):
    """Whether independent calls of `flop_each` recurrent FLOPs each run concurrently."""
    if _overrides and "side_by_side" in _overrides:
        return _overrides["side_by_side"]
    return flop_each >= _CONCURRENT_MIN_FLOP


def chunk_rows(row_bytes):
    """Rows of `row_bytes` bytes of gates that a chunk of chunked inference holds."""
    budget = _overrides.get("chunk_bytes", _CHUNK_BYTES) if _overrides else _CHUNK_BYTES
    return max(1, budget // row_bytes)


def forward_plan(dtype, D, H, P, B, T, N, projection, input_dropout, recurrent_dropout, mask,
                 training, in_core, input="dense", rows_in_place=False, available=None):
    """The `Plan` of one forward call.

    Args:
        dtype: the weights' `np.dtype`.
        D, H, P, B, T, N: input features, units, recurrent size, batch, steps, real rows.
        projection, input_dropout, recurrent_dropout, mask, training: whether the call has
            them.
        in_core: every activation is one of the core's (no Python callable).
        input: "dense", "lengths" or "packed".
        rows_in_place: dense input whose rows are already time-major (time-major, or B = 1).
        available: a function returning the threads pylstm may use, called only when a team
            is sized (`pylstm._threads.team_available` for a call, `available` to explain one).

    Raises:
        ValueError: a route forced by `forced` that this call cannot run.
    """
    if not _overrides:
        key = (dtype, D, H, P, B, T, N, projection, input_dropout, recurrent_dropout, mask,
               training, in_core, input, rows_in_place)
        plan = _known.get(key)
        if plan is not None:
            return plan
    plan = _forward_plan(dtype, D, H, P, B, T, N, projection, input_dropout, recurrent_dropout,
                         mask, training, in_core, input, rows_in_place, available)
    if plan.recurrent in ("BLAS", "NumPy") and not _overrides:
        # No thread team to size: the same sizes and options always give this plan.
        if len(_known) >= 256:
            _known.clear()
        _known[key] = plan
    return plan


# Plans without a thread team, by their arguments: small calls skip the choice.
_known = {}


def _forward_plan(dtype, D, H, P, B, T, N, projection, input_dropout, recurrent_dropout, mask,
                  training, in_core, input, rows_in_place, available):
    """`forward_plan`, computed."""
    G = 4 * H
    f32 = dtype.itemsize == 4
    fusable = f32 and not (projection or input_dropout or recurrent_dropout)
    packable = f32 and not (projection or recurrent_dropout)
    small = (input == "dense" and not training and (rows_in_place or T == 1)
             and not (projection or input_dropout or recurrent_dropout or mask))
    route = _overrides.get("route") if _overrides else None
    if route is None:
        if not in_core:
            route = REFERENCE
        elif fusable and _worth_packing(N, 2 * B * (D + H) * G, B):
            route = FUSED_TRAINING if training else FUSED_INFERENCE
        elif training:
            route = GEMM_TRAINING
        elif small and N < _PACK_MIN_ROWS:
            route = SMALL
        else:
            route = CHUNKED_INFERENCE
    else:
        able = {REFERENCE: input == "dense", SMALL: small and in_core,
                FUSED_INFERENCE: fusable and in_core and not training,
                CHUNKED_INFERENCE: in_core and not training,
                FUSED_TRAINING: fusable and in_core and training,
                GEMM_TRAINING: in_core and training}
        if not able[route]:
            raise ValueError(f"forced route {route!r} cannot run this call.")
    name = "float32" if f32 else "float64"
    if route == REFERENCE:
        return Plan(route, name, input, B, T, N, "NumPy")
    step_flop = 2 * B * P * G
    if route == SMALL:
        return Plan(route, name, input, B, T, N, "BLAS", loop_threads=loop_threads(step_flop))
    if route in (FUSED_INFERENCE, FUSED_TRAINING):
        steps = N // B if training else T
        team, if_awake = team_size(2 * B * (D + P) * G, steps, available)
        return Plan(route, name, input, B, T, N, "fused", team=team, team_if_awake=if_awake)
    chunks = chunk_rows(G * dtype.itemsize) if route == CHUNKED_INFERENCE else None
    if packable and _worth_packing(N, step_flop, B):
        team, if_awake = team_size(step_flop, N // B, available)
        return Plan(route, name, input, B, T, N, "packed", team=team, team_if_awake=if_awake,
                    chunk_rows=chunks)
    return Plan(route, name, input, B, T, N, "BLAS", loop_threads=loop_threads(step_flop),
                chunk_rows=chunks)


def backward_plan(dtype, D, H, P, B, T, N, *, projection, input_dropout, recurrent_dropout,
                  reference, input="dense", available=None):
    """The `Plan` of the backward of a training forward with these sizes and options
    (arguments as `forward_plan`; `reference`: the forward ran the NumPy route)."""
    if not _overrides:
        key = (BACKWARD, dtype, D, H, P, B, T, N, projection, input_dropout, recurrent_dropout,
               reference, input)
        plan = _known.get(key)
        if plan is not None:
            return plan
    plan = _backward_plan(dtype, D, H, P, B, T, N, projection, input_dropout,
                          recurrent_dropout, reference, input, available)
    if plan.recurrent in ("BLAS", "NumPy") and not _overrides:
        if len(_known) >= 256:
            _known.clear()
        _known[key] = plan
    return plan


def _backward_plan(dtype, D, H, P, B, T, N, projection, input_dropout, recurrent_dropout,
                   reference, input, available):
    """`backward_plan`, computed."""
    name = "float32" if dtype.itemsize == 4 else "float64"
    if reference:
        return Plan(REFERENCE_BACKWARD, name, input, B, T, N, "NumPy")
    G = 4 * H
    step_flop = 2 * B * P * G
    if (dtype.itemsize == 4 and not (projection or recurrent_dropout)
            and _worth_packing(N, step_flop, B)):
        # Not chosen by the team's size: the results must not depend on the thread count.
        grads = "team" if (not input_dropout
                           and (D + P) * G * dtype.itemsize <= _WGRAD_TEAM_BYTES) else "GEMM"
        if _overrides and "weight_grads" in _overrides and not input_dropout:
            grads = _overrides["weight_grads"]
        team, if_awake = team_size(step_flop, N // B, available)
        return Plan(BACKWARD, name, input, B, T, N, "packed", team=team,
                    team_if_awake=if_awake, weight_grads=grads)
    return Plan(BACKWARD, name, input, B, T, N, "BLAS", loop_threads=loop_threads(step_flop),
                weight_grads="GEMM")
