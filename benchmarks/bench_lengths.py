"""Variable-length sequences: time with lengths uniform over [1, T] against all lengths = T.

The core computes only real steps (packed by step, the batch shrinking as samples end), so
the ratio should be close to the ratio of real steps, about 0.5. Checks the lengths run
against the masked dense run before timing. Run: python -m benchmarks.bench_lengths [--repeats N]
"""

import argparse
import os
import platform
import sys

import numpy as np

from pylstm import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median_ms  # noqa: E402

SHAPES = [(64, 100, 128, 256), (16, 50, 32, 64)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"# lengths uniform over [1, T] vs all T, float32, medians of {args.repeats} runs; "
          f"{platform.processor() or platform.machine()}")
    print("| B T D H | real steps | fwd all T ms | fwd lengths ms | ratio | train all T ms "
          "| train lengths ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for B, T, D, H in SHAPES:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(B, T, D)).astype(np.float32)
        w = dict(kernel=(rng.normal(size=(D, 4 * H)) * 0.1).astype(np.float32),
                 recurrent_kernel=(rng.normal(size=(H, 4 * H)) * 0.1).astype(np.float32),
                 bias=np.zeros(4 * H, np.float32))
        lengths = rng.integers(1, T + 1, size=B)
        full = np.full(B, T)
        mask = np.arange(T)[None] < lengths[:, None]
        got = ops.lstm_forward(x, lengths=lengths, **w)[0]
        want = ops.lstm_forward(x, mask=mask, zero_output_for_mask=True, **w)[0]
        assert np.allclose(got, want, rtol=1e-5, atol=1e-6), "lengths run differs from mask"

        def fwd(lens):
            return lambda: ops.lstm_forward(x, lengths=lens, **w)

        def train(lens):
            def step():
                y, _, _, cache = ops.lstm_forward(x, lengths=lens, training=True, **w)
                ops.lstm_backward(cache, np.ones_like(y))
            return step

        f_full, f_len = median_ms(fwd(full), args.repeats), median_ms(fwd(lengths), args.repeats)
        t_full = median_ms(train(full), args.repeats)
        t_len = median_ms(train(lengths), args.repeats)
        print(f"| {B} {T} {D} {H} | {lengths.sum() / (B * T):.2f} | {f_full:.2f} | {f_len:.2f} "
              f"| {f_len / f_full:.2f} | {t_full:.2f} | {t_len:.2f} | {t_len / t_full:.2f} |")


if __name__ == "__main__":
    main()
