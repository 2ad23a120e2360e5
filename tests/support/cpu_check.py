"""A short correctness check of an installed pylstm on the CPU that runs it, emulated or real.

    python -P tests/support/cpu_check.py EXPECTED_LEVEL

Checks that pylstm chose the kernel level EXPECTED_LEVEL (`baseline`, `avx2`, `avx512`), and
that on that level: `pylstm.ops.lstm_forward` / `lstm_backward` give the outputs, states and
gradients of the NumPy reference (`pylstm._reference`, run in float64) in float32 and float64,
on the small-call, BLAS and packed-kernel routes, with lengths and in reverse; the compiled
step (`LSTMStepper.step`) follows the same sequence; one training step of a small `Sequential`
lowers its loss; a saved and loaded model predicts the same numbers.

`.ci/run` runs it under `qemu-x86_64 -cpu Nehalem` (SSE4.2, no AVX: `baseline`) and `-cpu
Haswell` (AVX2 and FMA: `avx2`). It runs everything in this one process: a child process
would run on the real CPU. Exits non-zero with the first failed check.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import pylstm
from pylstm import _reference, ops
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential, load_model
from pylstm.streaming import LSTMStepper

# (B, T, D, H, options): a small call, a BLAS-product time loop, the packed kernels with a
# team of threads (float32), in reverse, and with lengths (the packed layout).
CASES = [
    (1, 5, 3, 4, {}),
    (4, 6, 5, 8, {}),
    (16, 10, 24, 48, {}),
    (8, 12, 16, 32, {"reverse": True}),
    (6, 9, 7, 40, {"lengths": np.array([9, 3, 7, 1, 9, 5])}),
]

# Largest error allowed against the float64 reference, relative to the largest magnitude of
# the compared array: float32 sums and the core's float32 activation approximations (below
# 3e-7 each) add up over the steps; float64 differs from the reference only in the order of
# its sums.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def check_close(name, got, want, dtype):
    got = np.asarray(got, np.float64)
    scale = max(float(np.max(np.abs(want))), 1.0)
    error = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
    if not error <= TOLERANCE[dtype]:
        sys.exit(f"FAIL {name}: relative error {error:.3g} > {TOLERANCE[dtype]:g}")
    return error


def check_ops(rng):
    """lstm_forward / lstm_backward against the reference for every case and dtype."""
    worst = {np.float32: 0.0, np.float64: 0.0}
    for B, T, D, H, options in CASES:
        x = rng.normal(size=(B, T, D))
        kernel = rng.normal(scale=0.4, size=(D, 4 * H))
        recurrent = rng.normal(scale=0.4, size=(H, 4 * H))
        bias = rng.normal(scale=0.2, size=4 * H)
        h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
        dy, dh, dc = rng.normal(size=(B, T, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
        for dtype in (np.float32, np.float64):
            # the reference gets the same numbers, rounded to `dtype`, in float64
            args = [a.astype(dtype) for a in (x, kernel, recurrent, bias, h0, c0)]
            grads_in = [a.astype(dtype) for a in (dy, dh, dc)]
            y, h_n, c_n, cache = ops.lstm_forward(*args, training=True, **options)
            grads = ops.lstm_backward(cache, *grads_in)
            wide = [a.astype(np.float64) for a in args]
            ry, rh, rc, rcache = _reference.lstm_forward(*wide, training=True, **options)
            rgrads = _reference.lstm_backward(rcache, *[a.astype(np.float64) for a in grads_in])
            case = f"B={B} T={T} D={D} H={H} {sorted(options)} {np.dtype(dtype).name}"
            for name, got, want in [("y", y, ry), ("h_n", h_n, rh), ("c_n", c_n, rc)] + [
                    (f"d{k}", grads[k], rgrads[k])
                    for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]:
                if got.dtype != dtype:
                    sys.exit(f"FAIL {case} {name}: dtype {got.dtype}")
                worst[dtype] = max(worst[dtype], check_close(f"{case} {name}", got, want, dtype))
    for dtype, error in worst.items():
        print(f"ops: forward and backward of {len(CASES)} cases, {np.dtype(dtype).name}: "
              f"largest relative error {error:.2g}")


def check_stepper(rng):
    """The compiled step, run step by step, follows the reference's sequence."""
    B, T, D, H = 3, 7, 5, 16
    for dtype in (np.float32, np.float64):
        x = rng.normal(size=(B, T, D)).astype(dtype)
        kernel = rng.normal(scale=0.4, size=(D, 4 * H)).astype(dtype)
        recurrent = rng.normal(scale=0.4, size=(H, 4 * H)).astype(dtype)
        bias = rng.normal(scale=0.2, size=4 * H).astype(dtype)
        ry, _, _, _ = _reference.lstm_forward(
            *[a.astype(np.float64) for a in (x, kernel, recurrent, bias)])
        stepper = LSTMStepper(kernel, recurrent, bias)
        state = stepper.initial_state(batch_size=B)
        for t in range(T):
            y, state = stepper.step(x[:, t], state)
            check_close(f"step {t} {np.dtype(dtype).name}", y, ry[:, t], dtype)
    print(f"LSTMStepper.step: {T} steps agree with the reference in float32 and float64")


def check_model(rng, folder):
    """One training step lowers the loss; the saved model loads and predicts the same."""
    pylstm.utils.set_random_seed(0)
    x = rng.normal(size=(64, 12, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None] / 10
    model = Sequential([Input((12, 3)), LSTM(16), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    before = model.evaluate(x, y, batch_size=64, verbose=0)
    model.train_on_batch(x, y)
    after = model.evaluate(x, y, batch_size=64, verbose=0)
    if not after < before:
        sys.exit(f"FAIL training: loss {before:.6g} -> {after:.6g}")
    path = Path(folder) / "model.pylstm"
    model.save(path)
    again = load_model(path)
    if not np.array_equal(again.predict(x), model.predict(x)):
        sys.exit("FAIL save/load: the loaded model predicts other numbers")
    print(f"Sequential: loss {before:.5f} -> {after:.5f} after one training step; "
          "saved and loaded, same predictions")


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    expected = argv[1]
    config = pylstm.show_config(mode="dicts")
    level = config["kernels"]["level"]
    print(f"pylstm {pylstm.__version__} from {Path(pylstm.__file__).parent}")
    pylstm.show_config()
    if level != expected:
        sys.exit(f"FAIL kernel level: pylstm chose {level!r}, expected {expected!r}")
    rng = np.random.default_rng(0)
    check_ops(rng)
    check_stepper(rng)
    with tempfile.TemporaryDirectory() as folder:
        check_model(rng, folder)
    print(f"cpu_check: every check passed on the {level} level")


if __name__ == "__main__":
    main(sys.argv)
