"""`pylstm.dask` on a `LocalCluster` of 2 worker processes: `predict` bitwise equal to
`model.predict` per block with the model sent once per worker, `fit` equal to single-process
`fit` within float32 rounding (SGD and Adam, Sequential and functional), a worker killed in a
step and survived, and models of every kind sent to the workers and back."""

import copy
import operator
import os
import re
import sys
import time

import numpy as np
import pytest

from pylstm_tests import require

dask = require("dask")
distributed = require("distributed")
da = require("dask.array")

import threadpoolctl  # noqa: E402

import pylstm  # noqa: E402
import pylstm.dask  # noqa: E402
from pylstm import optimizers  # noqa: E402
from pylstm.layers import (LSTM, Bidirectional, Concatenate, Dense, Embedding,  # noqa: E402
                           Input, Masking)
from pylstm.losses import MeanSquaredError  # noqa: E402
from pylstm.models import Model, Sequential  # noqa: E402

# The workers cannot import this module (pytest's importlib mode keeps tests/ off sys.path):
# its functions and classes travel by value.
require("cloudpickle").register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def _worker_settings():
    """This process's pylstm and BLAS thread settings and its count of unpickled models."""
    # BLAS libraries only: an OpenMP runtime loaded by another package (torch's libgomp)
    # is not pylstm's to pin
    blas = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"]
    return pylstm.get_num_threads(), blas, pylstm.dask._models.loads


def _arrivals(dask_worker, key):
    """How many times `key` came into this worker's memory, computed or fetched from a peer
    (the transitions in its state machine's log)."""
    return sum(1 for entry in dask_worker.state.log
               if entry[0] == key and entry[1] in ("executing", "flight")
               and entry[2] == "memory")


def _sequence_model():
    model = Sequential([Input((7, 3)), LSTM(5, return_sequences=True, seed=1), Dense(2)])
    model.compile("adam", "mse")
    return model


def _token_model():
    model = Sequential([Input((6,), dtype="int32"), Embedding(11, 4, mask_zero=True),
                        LSTM(3, seed=2), Dense(2)])
    model.compile("adam", "mse")
    return model


def _functional_model(optimizer="adam"):
    a, b = Input((6, 3), name="a"), Input((4, 2), name="b")
    steps = LSTM(4, return_sequences=True, seed=3)(a)
    last = LSTM(3, seed=4)(b)
    merged = Concatenate()([LSTM(2, seed=5)(steps), last])
    model = Model([a, b], [Dense(1, name="steps")(steps), Dense(2, name="end")(merged)])
    model.compile(optimizer, loss={"steps": "mse", "end": "mae"},
                  loss_weights={"steps": 0.5, "end": 2.0}, metrics={"end": ["mae"]})
    return model


def _bidirectional_model():
    model = Sequential([Input((6, 3)), Masking(0.0), Bidirectional(LSTM(3, seed=6)), Dense(1)])
    model.compile("adam", "mse")
    return model


def _blocks(array):
    """`(start, stop)` of each block of a dask array along axis 0."""
    stops = np.cumsum(array.chunks[0])
    return list(zip(stops - array.chunks[0], stops))


# predict ---------------------------------------------------------------------------------

def test_predict_equals_model_predict_per_block_and_sends_the_model_once(client):
    model = _sequence_model()
    x = np.random.default_rng(0).normal(size=(50, 7, 3)).astype("float32")
    before = client.run(_worker_settings)
    # Chunks along the time axis are merged: every block holds whole samples.
    dx = da.from_array(x, chunks=(6, 4, 3))
    y = pylstm.dask.predict(model, dx, batch_size=4)
    assert y.shape == (50, 7, 2) and y.dtype == np.float32
    assert y.chunks == (dx.chunks[0], (7,), (2,))
    out = y.compute()
    assert out.dtype == np.float32
    for start, stop in _blocks(dx):
        np.testing.assert_array_equal(out[start:stop],
                                      model.predict(x[start:stop], batch_size=4, verbose=0))
    after = client.run(_worker_settings)
    # 9 blocks on 2 workers: the model reached each worker at most once and was unpickled
    # there at most once, and every task left the process's thread settings as it found them.
    (key,) = [k for k in y.__dask_graph__() if str(k).startswith("pylstm-model-")]
    arrivals = client.run(_arrivals, key=key)
    assert sum(arrivals.values()) >= 1 and max(arrivals.values()) == 1
    for address in after:
        assert after[address][2] - before[address][2] <= 1
        assert after[address][:2] == before[address][:2]
    assert sum(after[a][2] - before[a][2] for a in after) >= 1


def test_predict_of_token_ids_and_of_several_inputs_and_outputs(client):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 11, size=(30, 6)).astype("int32")
    model = _token_model()
    y = pylstm.dask.predict(model, da.from_array(tokens, chunks=7))
    assert y.chunks == ((7, 7, 7, 7, 2), (2,))
    out = y.compute()
    for start, stop in _blocks(y):
        np.testing.assert_array_equal(out[start:stop], model.predict(tokens[start:stop],
                                                                     verbose=0))

    model = _functional_model()
    a = rng.normal(size=(25, 6, 3)).astype("float32")
    b = rng.normal(size=(25, 4, 2)).astype("float32")
    # The second input's blocks follow the first's; a dict by input name works as a list.
    steps, end = pylstm.dask.predict(
        model, {"b": da.from_array(b, chunks=(5, 4, 2)), "a": da.from_array(a, chunks=10)})
    assert steps.shape == (25, 6, 1) and end.shape == (25, 2)
    assert steps.chunks[0] == end.chunks[0] == (10, 10, 5)
    steps, end = dask.compute(steps, end)
    for start, stop in ((0, 10), (10, 20), (20, 25)):
        expected = model.predict([a[start:stop], b[start:stop]], verbose=0)
        np.testing.assert_array_equal(steps[start:stop], expected[0])
        np.testing.assert_array_equal(end[start:stop], expected[1])


def test_predict_on_local_threads_restores_this_process():
    # Dask's threaded scheduler: two blocks at a time in this process, each thread with a
    # model of its own, the thread settings pinned while any runs and restored after.
    model = _sequence_model()
    x = np.random.default_rng(6).normal(size=(40, 7, 3)).astype("float32")
    before = _worker_settings()
    out = pylstm.dask.predict(model, da.from_array(x, chunks=5)).compute(
        scheduler="threads", num_workers=2)
    for start in range(0, 40, 5):
        np.testing.assert_array_equal(out[start:start + 5],
                                      model.predict(x[start:start + 5], verbose=0))
    after = _worker_settings()
    assert after[:2] == before[:2]
    assert 1 <= after[2] - before[2] <= 2


def test_predict_refuses_what_it_cannot_run():
    model = _sequence_model()
    with pytest.raises(TypeError, match="`x` must be a dask.array.Array"):
        pylstm.dask.predict(model, np.zeros((4, 7, 3), "float32"))
    with pytest.raises(ValueError, match="must hold 2 arrays"):
        pylstm.dask.predict(_functional_model(), [da.zeros((4, 6, 3), chunks=2)])
    with pytest.raises(ValueError, match="same number of samples"):
        pylstm.dask.predict(_functional_model(), [da.zeros((4, 6, 3), chunks=2),
                                                  da.zeros((5, 4, 2), chunks=2)])
    with pytest.raises(ValueError, match="`batch_size`"):
        pylstm.dask.predict(model, da.zeros((4, 7, 3), chunks=2), batch_size=0)


def test_limited_threads_pins_and_restores_this_process():
    from concurrent.futures import ThreadPoolExecutor

    def pinned():
        with pylstm.dask._limited_threads(1):
            with pylstm.dask._limited_threads(1):   # a second task in the same process
                pass
            return _worker_settings()[:2]

    before = _worker_settings()[:2]
    for previous in (None, 2):
        pylstm.set_num_threads(previous)
        try:
            # In this thread, then in a pool's threads (as Dask runs tasks): every BLAS
            # library and pylstm at one thread inside, the process's settings after.
            inside = [pinned()]
            with ThreadPoolExecutor(2) as pool:
                inside += list(pool.map(lambda _: pinned(), range(4)))
            assert pylstm.get_num_threads() == previous
            assert _worker_settings()[:2] == (previous, before[1])
        finally:
            pylstm.set_num_threads(before[0])
        for threads, blas in inside:
            assert threads == (None if previous is None else 1)
            assert blas and blas == [1] * len(blas)


# fit -------------------------------------------------------------------------------------

def _close(first, second, atol):
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_equals_single_process_fit_sequential(client, optimizer):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 7, 3)).astype("float32")
    y = rng.normal(size=(60, 7, 2)).astype("float32")
    local = _sequence_model()
    local.compile(optimizers.get({"class_name": optimizer, "config": {"learning_rate": 0.05}}),
                  "mse", metrics=["mae"])
    remote = copy.deepcopy(local)
    args = dict(batch_size=16, epochs=3, shuffle=False, verbose=0, validation_split=0.2)
    expected = local.fit(x, y, **args).history
    history = pylstm.dask.fit(remote, x, y, client=client, **args).history
    _close(local, remote, 1e-5)
    assert history.keys() == expected.keys() == {"loss", "mae", "val_loss", "val_mae"}
    for name in expected:
        np.testing.assert_allclose(history[name], expected[name], rtol=1e-5)
    assert "_gradient_fn" not in remote.__dict__   # the seam is removed after fit


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_fit_keeps_embedding_rows_as_single_process_fit(client, optimizer):
    """Tokens repeat within every batch: Adam's and RMSprop's second moments of the table are
    per-row sums of squared rows in `fit` (Keras on TensorFlow); the shards' rows travel as
    rows, so the distributed step is the same."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, size=(48, 6)).astype("int32")
    y = rng.normal(size=(48, 2)).astype("float32")
    local = Sequential([Input((6,), dtype="int32"), Embedding(5, 4), LSTM(3, seed=2),
                        Dense(2)])
    local.compile(optimizers.get({"class_name": optimizer, "config": {"learning_rate": 0.05}}),
                  "mse")
    remote = copy.deepcopy(local)
    args = dict(batch_size=16, epochs=2, shuffle=False, verbose=0)
    local.fit(x, y, **args)
    pylstm.dask.fit(remote, x, y, client=client, **args)
    _close(local, remote, 1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_equals_single_process_fit_functional_from_dask_arrays(client, optimizer):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 6, 3)).astype("float32")
    b = rng.normal(size=(40, 4, 2)).astype("float32")
    steps = rng.normal(size=(40, 6, 1)).astype("float32")
    end = rng.normal(size=(40, 2)).astype("float32")
    local = _functional_model(optimizers.get({"class_name": optimizer,
                                              "config": {"learning_rate": 0.05}}))
    remote = copy.deepcopy(local)
    seen = []

    class Batches(pylstm.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    args = dict(batch_size=10, epochs=2, verbose=0, shuffle=True)
    pylstm.utils.set_random_seed(7)
    expected = local.fit([a, b], [steps, end], **args).history
    pylstm.utils.set_random_seed(7)
    history = pylstm.dask.fit(
        remote, [da.from_array(a, chunks=8), da.from_array(b, chunks=8)],
        {"steps": da.from_array(steps, chunks=8), "end": end}, client=client,
        callbacks=[Batches()], **args).history
    _close(local, remote, 1e-5)
    assert seen == [0, 1, 2, 3] * 2
    assert history.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(history[name], expected[name], rtol=1e-5)


class DiesOnce(MeanSquaredError):
    """MSE that kills the worker process computing a shard whose first target is in
    `markers`, once per flag file in `flags` (created as its worker dies): with two flags and
    the first targets of both shards of a step, both workers die in that step, the second
    before the first is back, so that the step's scattered weights are lost with them."""

    def __init__(self, flags, markers, **kwargs):
        super().__init__(**kwargs)
        self.flags, self.markers = flags, markers

    def value_and_gradient(self, y_true, *args, **kwargs):
        try:
            distributed.get_worker()
        except ValueError:      # the driver: never
            return super().value_and_gradient(y_true, *args, **kwargs)
        if float(y_true.flat[0]) in self.markers:
            for flag in self.flags:
                try:
                    os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                time.sleep(0.2)
                os._exit(1)
        return super().value_and_gradient(y_true, *args, **kwargs)


@pytest.mark.parametrize("deaths", [1, 2])
def test_fit_survives_workers_killed_in_a_step(client, tmp_path, caplog, deaths):
    # One death: the scheduler runs the shard again on the other worker. Two: the step's
    # scattered weights die with both workers, and fit sends the step again.
    flags = [str(tmp_path / f"killed{k}") for k in range(deaths)]
    rng = np.random.default_rng(4)
    x = rng.normal(size=(48, 7, 3)).astype("float32")
    y = rng.normal(size=(48, 7, 2)).astype("float32")
    local = _sequence_model()
    local.compile(optimizers.Adam(0.05), "mse")
    uninterrupted, killed = copy.deepcopy(local), copy.deepcopy(local)
    # the third step of the first epoch: rows 24 to 35, shards 24:30 and 30:36
    killed.compile(optimizers.Adam(0.05), DiesOnce(flags, {float(y[24, 0, 0]),
                                                           float(y[30, 0, 0])}))
    args = dict(batch_size=12, epochs=2, shuffle=False, verbose=0)
    local.fit(x, y, **args)
    expected = pylstm.dask.fit(uninterrupted, x, y, client=client, **args).history
    history = pylstm.dask.fit(killed, x, y, client=client, **args).history
    assert all(os.path.exists(flag) for flag in flags)     # the workers did die in a step
    if deaths == 2:
        assert "lose scattered data" in caplog.text
    for a, b in zip(killed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_array_equal(a, b)
    _close(killed, local, 1e-5)
    assert history == expected
    client.wait_for_workers(2, timeout=60)


def test_fit_refuses_bad_arguments(client):
    with pytest.raises(RuntimeError, match="compile"):
        pylstm.dask.fit(Sequential([Input((7, 3)), Dense(1)]), np.zeros((4, 7, 3)),
                        np.zeros((4, 7, 1)), client=client)
    with pytest.raises(TypeError, match="`client` must be a distributed.Client"):
        pylstm.dask.fit(_sequence_model(), np.zeros((4, 7, 3)), np.zeros((4, 7, 2)),
                        client="tcp://127.0.0.1:8786")
    for value in (0, 1.5, True):
        with pytest.raises(ValueError, match="`num_shards`"):
            pylstm.dask.fit(_sequence_model(), np.zeros((4, 7, 3)), np.zeros((4, 7, 2)),
                            client=client, num_shards=value)


# Models travel ---------------------------------------------------------------------------

def test_models_of_every_kind_round_trip_through_the_cluster(client):
    rng = np.random.default_rng(5)
    cases = [
        (_sequence_model(), rng.normal(size=(4, 7, 3)).astype("float32")),
        (_token_model(), rng.integers(0, 11, size=(4, 6)).astype("int32")),
        (_bidirectional_model(), rng.normal(size=(4, 6, 3)).astype("float32")),
        (_functional_model(), [rng.normal(size=(4, 6, 3)).astype("float32"),
                               rng.normal(size=(4, 4, 2)).astype("float32")]),
    ]
    for model, x in cases:
        expected = model.predict(x, verbose=0)
        on_worker = client.submit(operator.methodcaller("predict", x, verbose=0), model)
        back = client.submit(copy.copy, model).result()
        for got in (on_worker.result(), back.predict(x, verbose=0)):
            for e, g in zip(expected if isinstance(expected, list) else [expected],
                            got if isinstance(got, list) else [got]):
                np.testing.assert_array_equal(g, e)
        assert back.optimizer.get_config() == model.optimizer.get_config()

    module = pylstm.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    expected = module(x)[0]
    np.testing.assert_array_equal(client.submit(module, x).result()[0], expected)
    np.testing.assert_array_equal(client.submit(copy.copy, module).result()(x)[0], expected)


# The example and the docs' recipe ----------------------------------------------------------

def test_dask_sunspots_example_matches_the_single_process_run(capsys):
    from pylstm.examples import dask_sunspots

    status = dask_sunspots.main(["--epochs", "2", "--workers", "2"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "The data-parallel model matches the single-process model." in out
    assert "LSTM, data-parallel" in out


def test_docs_recipes_run():
    """The Python blocks of docs/user_guide/dask.md, in order, as a reader runs them."""
    require("dask.dataframe")
    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "user_guide",
                        "dask.md")
    with open(path, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) >= 5
    namespace = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, path, "exec"), namespace)
