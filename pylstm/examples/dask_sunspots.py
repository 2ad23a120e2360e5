"""The sunspots forecaster (`pylstm.examples.sunspots`) trained data-parallel on a Dask cluster
and used for batch prediction over a `dask.array`.

Run it with `python -m pylstm.examples.dask_sunspots` (needs `pip install pylstm[dask]`). It:
1. cuts the monthly sunspot numbers into windows as the sunspots example does (its
   `make_windows` and `window_dataset`: the same train, validation and test months),
2. trains the same `Sequential([Input, LSTM, Dense(1)])` twice from the same initial
   weights, on the same shuffled batches, with the same early stopping: once in this process
   (`model.fit`), once with each batch's gradients computed on a `LocalCluster` of
   `--workers` worker processes (`pylstm.dask.fit`),
3. predicts the test windows with the data-parallel model over a `dask.array` split into
   blocks (`pylstm.dask.predict`), each block computed on a worker,
4. prints both runs' test RMSE (sunspot numbers) beside the persistence baseline, and fails
   if they differ by more than float32 rounding can explain (`--rtol`) or if the blocks'
   predictions are not bitwise those of `model.predict`.
"""

import argparse
import copy
import sys
import time

import numpy as np

import pylstm
import pylstm.dask
from pylstm.callbacks import EarlyStopping
from pylstm.datasets import load_sunspots
from pylstm.examples.sunspots import SCALE, make_windows, rmse, window_dataset
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential


def _train(fit, model, series, args, n_train, n_val, **kwargs):
    """`fit(model, ...)` on the sunspots example's batches, reshuffled from the same seed;
    returns the number of epochs run and the seconds taken."""
    pylstm.utils.set_random_seed(args.seed)
    train = window_dataset(series, args.window, 0, n_train, args.batch_size, shuffle=True,
                           seed=args.seed)
    validation = window_dataset(series, args.window, n_train, n_val, args.batch_size)
    stopping = EarlyStopping(monitor="val_loss", patience=args.patience,
                             restore_best_weights=True)
    start = time.perf_counter()
    history = fit(model, train, epochs=args.epochs, validation_data=validation,
                  callbacks=[stopping], verbose=0, **kwargs)
    return len(history.history["loss"]), time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=48, help="months of history per sample")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--rtol", type=float, default=1e-3,
                        help="largest relative difference of the two runs' test RMSE")
    args = parser.parse_args(argv)

    from dask import array as da
    from distributed import Client, LocalCluster

    sunspots = load_sunspots()
    series = (sunspots.data / SCALE).astype("float32")
    x, y = make_windows(series, args.window)
    n_test = n_val = len(x) // 10
    n_train = len(x) - n_val - n_test
    x_test, y_test = x[n_train + n_val:], y[n_train + n_val:]

    pylstm.utils.set_random_seed(args.seed)
    model = Sequential([Input((args.window, 1)), LSTM(args.units, seed=args.seed), Dense(1)])
    model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=0.005), loss="mse")
    distributed_model = copy.deepcopy(model)

    epochs, seconds = _train(type(model).fit, model, series, args, n_train, n_val)
    print(f"One process:      {epochs} epochs in {seconds:.1f} s.")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dp_epochs, dp_seconds = _train(pylstm.dask.fit, distributed_model, series, args,
                                       n_train, n_val, client=client)
        print(f"Data-parallel on {args.workers} workers: {dp_epochs} epochs in "
              f"{dp_seconds:.1f} s.")
        blocks = da.from_array(x_test, chunks=(len(x_test) // args.workers + 1, -1, -1))
        forecast = pylstm.dask.predict(distributed_model, blocks)
        print(f"Predicting {len(x_test)} test windows in {blocks.numblocks[0]} blocks of "
              f"{blocks.chunks[0][0]} on the cluster.")
        pred_dask = forecast.compute()

    pred = model.predict(x_test, verbose=0)
    same_blocks = all(
        np.array_equal(pred_dask[a:a + size], distributed_model.predict(x_test[a:a + size],
                                                                        verbose=0))
        for a, size in zip(np.cumsum((0,) + blocks.chunks[0][:-1]), blocks.chunks[0]))
    single_rmse = rmse(pred * SCALE, y_test * SCALE)
    dp_rmse = rmse(pred_dask * SCALE, y_test * SCALE)
    persistence_rmse = rmse(x_test[:, -1] * SCALE, y_test * SCALE)
    weights_gap = max(float(np.max(np.abs(a - b))) for a, b in zip(
        model.get_weights(), distributed_model.get_weights()))
    print(f"Test RMSE (sunspot number), the last {n_test} months:")
    print(f"  LSTM, one process     {single_rmse:8.3f}")
    print(f"  LSTM, data-parallel   {dp_rmse:8.3f}  (predicted over a dask.array)")
    print(f"  persistence           {persistence_rmse:8.3f}")
    print(f"Largest weight difference between the two runs: {weights_gap:.2e}.")
    if not same_blocks:
        print("pylstm.dask.predict's blocks differ from model.predict.", file=sys.stderr)
        return 1
    if epochs != dp_epochs or abs(dp_rmse - single_rmse) > args.rtol * single_rmse:
        print("The data-parallel run does not match the single-process run.", file=sys.stderr)
        return 1
    print("The data-parallel model matches the single-process model.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
