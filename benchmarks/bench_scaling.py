"""Scaling of the forward pass: pylstm and PyTorch time against T, B and H, in one process.

Usage (from the repository root, with the extension built in place or the package installed):

    python benchmarks/bench_scaling.py [--quick] [--threads 2] [--budget 0.3] [--dtype float32]

Three sweeps, one axis varied at a time (B batch, T timesteps, D input features, H units):
- T in 25, 50, 100, 200, 400 at B=32, D=H=128: cost should grow linearly in T;
- B in 1, 8, 32, 128, 512 at T=50, D=H=128: per-sample cost falls as the GEMMs grow;
- H in 64, 128, 256, 512, 1024 at B=32, T=50, D=H: cost grows as H^2 once GEMM-bound.

Each point checks pylstm's outputs against PyTorch's (max abs difference < 1e-4 in float32)
before timing `pylstm.ops.lstm_forward` and `torch.nn.LSTM` under `torch.no_grad()` (medians,
`_common.measure`, waiting for idle threads first). GFLOP/s counts the GEMMs,
2*B*T*(D+H)*4H.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fmt_time, make_weights, measure  # noqa: E402

import torch  # noqa: E402

from pylstm.ops import lstm_forward  # noqa: E402

SWEEPS = {
    "T": [(32, t, 128, 128) for t in (25, 50, 100, 200, 400)],
    "B": [(b, 50, 128, 128) for b in (1, 8, 32, 128, 512)],
    "H": [(32, 50, h, h) for h in (64, 128, 256, 512, 1024)],
}
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def run(dtype, threads, budget_s, quick=False):
    """Checks and times every point; returns `[(axis, (B, T, D, H), pylstm, torch)]` with
    `_common.Timing`s."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for axis, shapes in SWEEPS.items():
        for B, T, D, H in (shapes[:3] if quick else shapes):
            print(f"scaling {axis}: B={B} T={T} D={D} H={H} ...", file=sys.stderr, flush=True)
            x, kernel, recurrent_kernel, bias = make_weights(B, T, D, H, dtype, rng)
            module = torch.nn.LSTM(D, H, batch_first=True).to(getattr(torch, dtype))
            with torch.no_grad():
                module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
                module.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
                module.bias_ih_l0.copy_(torch.from_numpy(bias))
                module.bias_hh_l0.zero_()
            x_t = torch.from_numpy(x)

            def py():
                return lstm_forward(x, kernel, recurrent_kernel, bias)

            def th():
                with torch.no_grad():
                    return module(x_t)

            diff = float(np.abs(py()[0] - th()[0].numpy()).max())
            if not diff < TOLERANCE[dtype]:
                raise AssertionError(f"scaling B={B} T={T} D={D} H={H}: pylstm vs torch max "
                                     f"abs difference {diff:.3g}")
            rows.append((axis, (B, T, D, H), measure(py, budget_s, spin_probes=0),
                         measure(th, budget_s, spin_probes=0)))
    return rows


def markdown(rows):
    """The scaling table, with each time relative to the sweep's first point."""
    out = ["### Scaling (forward, pylstm vs PyTorch)", "",
           "`growth`: time / time of the sweep's first point, beside the work's growth.", "",
           "| sweep | B | T | D | H | GFLOP | work growth | pylstm | pylstm growth "
           "| pylstm GFLOP/s | torch | torch growth | torch GFLOP/s | pylstm / torch |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
           "| ---: | ---: |"]
    first = {}
    for axis, (B, T, D, H), py, th in rows:
        flop = 2 * B * T * (D + H) * 4 * H
        base = first.setdefault(axis, (flop, py.wall, th.wall))
        out.append(f"| {axis} | {B} | {T} | {D} | {H} | {flop / 1e9:.4g} | {flop / base[0]:.3g}x "
                   f"| {fmt_time(py.wall)} | {py.wall / base[1]:.3g}x | {flop / py.wall / 1e9:.1f} "
                   f"| {fmt_time(th.wall)} | {th.wall / base[2]:.3g}x "
                   f"| {flop / th.wall / 1e9:.1f} | {py.wall / th.wall:.2f} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three points per sweep")
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32")
    parser.add_argument("--threads", type=int, default=2, help="threads for both systems")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of repeats per measurement (default 0.3)")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            rows = run(args.dtype, args.threads, args.budget, args.quick)
    else:
        rows = run(args.dtype, args.threads, args.budget, args.quick)
    print(f"{args.dtype}, {args.threads} threads, load average "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
