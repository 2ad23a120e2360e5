"""Bidirectional LSTM: the two directions side by side (one per core) against one after the other.

`pylstm.nn.LSTM(bidirectional=True)` runs its directions concurrently from
`pylstm._plan._CONCURRENT_MIN_FLOP` per direction; this times forward (eval) and a
training step (train + backward) both ways, whatever the size, interleaved in rounds in one process, after
checking that both ways give the same bits. Run: python -m benchmarks.bench_bidirectional
[--rounds N] [--shape B T D H] [--layers L]
"""

import argparse
import os
import platform
import sys

import numpy as np

import pylstm
from pylstm import _plan

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median_ms  # noqa: E402

DEFAULT = _plan._CONCURRENT_MIN_FLOP
SIDE_BY_SIDE = 0            # whatever the size
ONE_AFTER_THE_OTHER = 1 << 62


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="calls per round and mode")
    parser.add_argument("--shape", type=int, nargs=4, default=(32, 100, 64, 128),
                        metavar=("B", "T", "D", "H"))
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    B, T, D, H = args.shape
    rng = np.random.default_rng(0)
    model = pylstm.nn.LSTM(D, H, num_layers=args.layers, bidirectional=True, batch_first=True,
                           dtype=np.float32)
    x = rng.standard_normal((B, T, D)).astype(np.float32)

    def forward():
        model.eval()
        return model(x)[0]

    def train():
        model.train()
        y, _ = model(x)
        return model.backward(np.ones_like(y))

    outputs = {}
    for label, threshold in (("side by side", SIDE_BY_SIDE),
                             ("one after the other", ONE_AFTER_THE_OTHER)):
        _plan._CONCURRENT_MIN_FLOP = threshold
        outputs[label] = (forward(), train())
    for a, b in zip(outputs["side by side"], outputs["one after the other"]):
        np.testing.assert_array_equal(a, b)

    times = {}
    for _ in range(args.rounds):
        for label, threshold in (("side by side", SIDE_BY_SIDE),
                                 ("one after the other", ONE_AFTER_THE_OTHER)):
            _plan._CONCURRENT_MIN_FLOP = threshold
            for name, fn in (("forward", forward), ("train step", train)):
                times.setdefault((label, name), []).append(median_ms(fn, args.repeats))
    _plan._CONCURRENT_MIN_FLOP = DEFAULT

    print(f"Bidirectional {args.layers}-layer LSTM, B={B} T={T} D={D} H={H}, float32, "
          f"{platform.machine()}; median of {args.rounds} rounds of {args.repeats} calls "
          f"(same bits both ways)\n")
    print("| mode | forward | train step |")
    print("|---|---:|---:|")
    for label in ("side by side", "one after the other"):
        print(f"| {label} | {np.median(times[(label, 'forward')]):.2f} ms "
              f"| {np.median(times[(label, 'train step')]):.2f} ms |")


if __name__ == "__main__":
    main()
