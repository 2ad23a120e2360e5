"""Every public class pickles and deep-copies (issue 19: models travel between processes):
discovered from the package's public modules, each made "live" by a factory (built, called in
training mode, fitted, stepped), round-tripped, and compared by its pickle bytes and by its
behaviour; fitted models and `nn` modules continue training bitwise as the original; stateful
states travel; what a call keeps for `backward` and compiled steppers do not."""

import copy
import copyreg
import importlib
import inspect
import pickle
import pkgutil
import types

import numpy as np
import pytest

import pylstm
from pylstm import (callbacks, constraints, initializers, layers, losses, metrics, nn, ops, optim,
                    optimizers, regularizers, state, streaming, utils, variable)
from pylstm.datasets import Sunspots
from pylstm.models import Model, Sequential
from pylstm.nn.utils import rnn as rnn_utils
from pylstm.optimizers import schedules

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 4, 3)).astype("float32")
X2 = RNG.normal(size=(2, 4, 3)).astype("float32")
TOKENS = np.array([[1, 2, 0, 3], [4, 4, 1, 0]])


# Public modules of an optional extra, and the package each needs: where that package is not
# installed (tests/unit runs without the extras), the module's classes cannot exist there.
EXTRAS = {"pylstm.onnx": "onnx", "pylstm.dask": "distributed"}


def _installed(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _public_classes():
    """Every class a public module of pylstm exports: its `__all__`, else the public classes
    it defines; private modules, the examples and the modules of missing extras are left
    out."""
    found = {}
    for info in pkgutil.walk_packages(pylstm.__path__, "pylstm."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or parts[1] == "examples":
            continue
        extra = EXTRAS.get(".".join(parts[:2]))
        if extra is not None and not _installed(extra):
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [k for k, v in vars(module).items() if not k.startswith("_")
                     and inspect.isclass(v) and v.__module__ == module.__name__]
        for name in names:
            obj = getattr(module, name, None)
            if inspect.isclass(obj):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


CLASSES = _public_classes()


# Module-level callables, which pickle by reference ------------------------------------------


def _halve(epoch, lr):
    return lr / 2


def _on_epoch_end(epoch, logs):
    return None


def _abs_error(y_true, y_pred):
    return np.abs(y_true - y_pred).mean(axis=-1)


class _Count(metrics.Metric):
    """The smallest `Metric` subclass: the base class is abstract."""

    def __init__(self, name="count"):
        super().__init__(name)
        self.count = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.count += len(y_true)

    def result(self):
        return float(self.count)

    def reset_state(self):
        self.count = 0


# Live objects --------------------------------------------------------------------------------


def _called(layer, inputs, **kwargs):
    """`layer` after a training call (its backward cache in place), probed by an inference
    call on the same inputs."""
    layer(inputs, training=True, **kwargs)
    return layer, lambda obj: obj(inputs, **kwargs)


def _module_called(module, inputs):
    """An `nn` module after a call in training mode (dropout drawn, cache kept), probed by
    another (the dropout generator travels with it)."""
    module(inputs)
    return module, lambda obj: obj(inputs)


def _fitted_sequential(optimizer="adam"):
    model = Sequential([layers.Input((4, 3)), layers.LSTM(5, return_sequences=True, seed=1,
                                                          dropout=0.2, recurrent_dropout=0.1),
                        layers.LSTM(3, seed=2), layers.Dropout(0.3, seed=3), layers.Dense(2)])
    model.compile(optimizer, "mse", metrics=["mae", metrics.RootMeanSquaredError()])
    model.fit(X, np.ones((2, 2)), epochs=2, verbose=0, shuffle=False)
    return model


def _fitted_functional():
    a, b = layers.Input((4, 3), name="a"), layers.Input((4, 3), name="b")
    shared = layers.LSTM(3, seed=4, kernel_regularizer="l2")
    merged = layers.Concatenate()([shared(a), shared(b)])
    model = Model([a, b], [layers.Dense(1, name="one")(merged),
                           layers.Dense(2, name="two")(merged)])
    model.compile(optimizers.Adam(0.01, use_ema=True), ["mse", "mae"])
    model.fit([X, X2], [np.ones((2, 1)), np.zeros((2, 2))], epochs=2, verbose=0,
              shuffle=False)
    return model


def _stepped_optimizer(optimizer):
    """`optimizer` after two steps on two variables, probed by a third step on its own
    variables (the keys of its state, which travel with it)."""
    weights = [variable.Variable("w", np.linspace(-1, 1, 6).reshape(2, 3)),
               variable.Variable("b", np.zeros(3))]
    for step in range(2):
        for var in weights:
            var.grad[...] = np.cos(var.value + step)
        optimizer.apply(weights)

    def probe(obj):
        own = list(obj._slots)
        for var in own:
            var.grad[...] = np.sin(var.value)
        obj.apply(own)
        return [v.value.copy() for v in own] + [s for v in own for s in obj._slots[v].values()]

    return optimizer, probe


def _stepped_torch_style(cls, **kwargs):
    module = nn.LSTM(3, 2, batch_first=True)
    optimizer = cls(module.parameters(), **kwargs)
    for var in module.parameters():
        var.grad[...] = 0.1
    optimizer.step()

    def probe(obj):
        params = [p for group in obj.param_groups for p in group["params"]]
        for var in params:
            var.grad[...] = 0.2
        obj.step()
        return [p.value.copy() for p in params]

    return optimizer, probe


def _onnx_model(tmp_path):
    from pylstm import onnx

    model = Sequential([layers.Input((4, 3)), layers.LSTM(2, seed=1)])
    onnx.export(model, tmp_path / "m.onnx")
    loaded = onnx.load(tmp_path / "m.onnx")
    return loaded, lambda obj: obj(**{loaded.input_names[0]: X})


def _fitted_callback(callback):
    model = Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(X[:, 0], np.ones((2, 1)), epochs=2, verbose=0, callbacks=[callback])
    return callback, None


def _updated(metric, y_true, y_pred):
    metric.update_state(y_true, y_pred)
    return metric, lambda obj: obj.result()


def _lstm_cache():
    rng = np.random.default_rng(1)
    kernel, recurrent = rng.normal(size=(3, 8)), rng.normal(size=(2, 8))
    cache = ops.lstm_forward(X.astype("float64"), kernel, recurrent, training=True)[3]
    return cache, lambda obj: [ops.lstm_backward(obj, np.ones((2, 4, 2)))[k]
                               for k in ("x", "kernel", "recurrent_kernel")]


def _stepper():
    rng = np.random.default_rng(2)
    stepper = streaming.LSTMStepper(rng.normal(size=(3, 8)).astype("float32"),
                                    rng.normal(size=(2, 8)).astype("float32"))
    stepper.step(X[:, 0], stepper.initial_state(2))
    return stepper, lambda obj: obj.step(X[:, 1], obj.initial_state(2))[0]


def _lstm_cell():
    cell = layers.LSTMCell(2, seed=1)
    states = cell.get_initial_state(2)
    cell(X[:, 0], states, training=True)
    return cell, lambda obj: obj(X[:, 0], states)


# Classes whose instance needs arguments, or a state worth carrying; every other class is
# made with no argument. A factory returns `(object, probe)`: `probe(obj)` (or None) is a
# behaviour the copy must reproduce.
FACTORIES = {
    "pylstm.layers.merging.Concatenate": lambda: _called(layers.Concatenate(), [X, X2]),
    "pylstm.layers.merging.Add": lambda: _called(layers.Add(), [X, X2]),
    "pylstm.layers.merging.Subtract": lambda: _called(layers.Subtract(), [X, X2]),
    "pylstm.layers.merging.Multiply": lambda: _called(layers.Multiply(), [X, X2]),
    "pylstm.layers.merging.Average": lambda: _called(layers.Average(), [X, X2]),
    "pylstm.layers.merging.Maximum": lambda: _called(layers.Maximum(), [X, X2]),
    "pylstm.layers.merging.Minimum": lambda: _called(layers.Minimum(), [X, X2]),
    "pylstm.layers.merging.Dot": lambda: _called(layers.Dot(axes=2), [X, X2]),
    "pylstm.layers.reshaping.RepeatVector": lambda: _called(layers.RepeatVector(3), X[:, 0]),
    "pylstm.layers.reshaping.Reshape": lambda: _called(layers.Reshape((12,)), X),
    "pylstm.layers.reshaping.Permute": lambda: _called(layers.Permute((2, 1)), X),
    "pylstm.layers.global_pooling.GlobalAveragePooling1D":
        lambda: _called(layers.GlobalAveragePooling1D(), X),
    "pylstm.layers.global_pooling.GlobalMaxPooling1D":
        lambda: _called(layers.GlobalMaxPooling1D(), X),
    "pylstm.variable.Variable": lambda: (variable.Variable("v", X[0].copy()),
                                         lambda obj: obj.value),
    "pylstm.layers.keras_tensor.KerasTensor": lambda: (layers.LSTM(2)(layers.Input((4, 3))),
                                                       lambda obj: obj.shape),
    "pylstm.layers.keras_tensor.KerasHistory": lambda: (
        layers.LSTM(2)(layers.Input((4, 3)))._keras_history, None),
    "pylstm.layers.keras_tensor.Node": lambda: (
        layers.LSTM(2)(layers.Input((4, 3)))._keras_history.layer._inbound_nodes[0], None),
    "pylstm.metrics.R2Score": lambda: _updated(metrics.R2Score(), X[:, 0], X2[:, 0]),
    "pylstm.layers.dense.Dense": lambda: _called(layers.Dense(2, activity_regularizer="l2"), X),
    "pylstm.layers.lstm.LSTM": lambda: _called(
        layers.LSTM(2, return_sequences=True, dropout=0.3, seed=1), X),
    "pylstm.layers.core.InputLayer": lambda: (layers.InputLayer((4, 3)), None),
    "pylstm.layers.core.Dropout": lambda: (
        layers.Dropout(0.5, seed=1), lambda obj: obj(X, training=True)),
    "pylstm.layers.core.Activation": lambda: _called(layers.Activation("tanh"), X),
    "pylstm.layers.core.Flatten": lambda: _called(layers.Flatten(), X),
    "pylstm.layers.embedding.Embedding": lambda: _called(
        layers.Embedding(5, 3, mask_zero=True), TOKENS),
    "pylstm.layers.masking.Masking": lambda: _called(layers.Masking(), X),
    "pylstm.layers.bidirectional.Bidirectional": lambda: _called(
        layers.Bidirectional(layers.LSTM(2, seed=1)), X),
    "pylstm.layers.time_distributed.TimeDistributed": lambda: _called(
        layers.TimeDistributed(layers.Dense(2)), X),
    "pylstm.layers.rnn.RNN": lambda: _called(layers.RNN(layers.LSTMCell(2, seed=1)), X),
    "pylstm.layers.rnn.LSTMCell": _lstm_cell,
    "pylstm.layers.rnn.StackedRNNCells": lambda: (
        layers.StackedRNNCells([layers.LSTMCell(2, seed=1), layers.LSTMCell(2, seed=2)]), None),
    "pylstm.layers.attention.Attention": lambda: _called(layers.Attention(), [X, X2]),
    "pylstm.layers.attention.AdditiveAttention": lambda: _called(
        layers.AdditiveAttention(), [X, X2]),
    "pylstm.layers.convolutional.Conv1D": lambda: _called(layers.Conv1D(2, 2), X),
    "pylstm.layers.pooling.MaxPooling1D": lambda: _called(layers.MaxPooling1D(), X),
    "pylstm.layers.pooling.AveragePooling1D": lambda: _called(layers.AveragePooling1D(2), X),
    "pylstm.layers.normalization.BatchNormalization": lambda: _called(
        layers.BatchNormalization(), X),
    "pylstm.layers.normalization.LayerNormalization": lambda: _called(
        layers.LayerNormalization(), X),
    "pylstm.layers.spatial_dropout.SpatialDropout1D": lambda: (
        layers.SpatialDropout1D(0.5, seed=1), lambda obj: obj(X, training=True)),
    "pylstm.layers.layer.Layer": lambda: (layers.Layer(name="plain"), None),
    "pylstm.models.sequential.Sequential": lambda: (
        _fitted_sequential(), lambda obj: obj.predict(X, verbose=0)),
    "pylstm.models.functional.Functional": lambda: (
        _fitted_functional(), lambda obj: obj.predict([X, X2], verbose=0)),
    "pylstm.nn.lstm.LSTM": lambda: _module_called(
        nn.LSTM(3, 2, num_layers=2, batch_first=True, dropout=0.5, seed=1), X),
    "pylstm.nn.cell.LSTMCell": lambda: _module_called(nn.LSTMCell(3, 2), X[:, 0]),
    "pylstm.nn.lstm.LSTMLayer": lambda: _called(
        nn.LSTMLayer(module=nn.LSTM(3, 2, batch_first=True)), X),
    "pylstm.state.LSTMStepState": lambda: (state.LSTMStepState.zeros(2, 2, 3), None),
    "pylstm.state.LSTMState": lambda: (state.LSTMState.zeros(2, 3), None),
    "pylstm.nn.module.IncompatibleKeys": lambda: (nn.IncompatibleKeys(["a"], ["b"]), None),
    "pylstm.nn.utils.rnn.PackedSequence": lambda: (
        rnn_utils.pack_sequence([X[0], X[1, :2]]), None),
    "pylstm.ops._caches.LSTMCache": _lstm_cache,
    "pylstm.ops.BlasThreads": lambda: (ops.BlasThreads(1), None),
    "pylstm.streaming.LSTMStepper": _stepper,
    "pylstm.optim.Optimizer": lambda: _stepped_torch_style(optim.SGD, lr=0.1),
    "pylstm.optim.SGD": lambda: _stepped_torch_style(optim.SGD, lr=0.1, momentum=0.9),
    "pylstm.optim.Adam": lambda: _stepped_torch_style(optim.Adam),
    "pylstm.optim.AdamW": lambda: _stepped_torch_style(optim.AdamW),
    "pylstm.optim.RMSprop": lambda: _stepped_torch_style(optim.RMSprop, momentum=0.5),
    "pylstm.optimizers.optimizer.Optimizer": lambda: _stepped_optimizer(
        optimizers.SGD(0.1, use_ema=True, gradient_accumulation_steps=2)),
    "pylstm.optimizers.schedules.ExponentialDecay": lambda: (
        schedules.ExponentialDecay(0.1, 10, 0.9), lambda obj: [obj(s) for s in range(20)]),
    "pylstm.optimizers.schedules.PiecewiseConstantDecay": lambda: (
        schedules.PiecewiseConstantDecay([5], [0.1, 0.01]),
        lambda obj: [obj(s) for s in range(10)]),
    "pylstm.optimizers.schedules.PolynomialDecay": lambda: (
        schedules.PolynomialDecay(0.1, 10), lambda obj: [obj(s) for s in range(20)]),
    "pylstm.optimizers.schedules.InverseTimeDecay": lambda: (
        schedules.InverseTimeDecay(0.1, 10, 0.5), lambda obj: [obj(s) for s in range(20)]),
    "pylstm.optimizers.schedules.CosineDecay": lambda: (
        schedules.CosineDecay(0.1, 10, warmup_steps=3, warmup_target=0.2),
        lambda obj: [obj(s) for s in range(20)]),
    "pylstm.optimizers.schedules.CosineDecayRestarts": lambda: (
        schedules.CosineDecayRestarts(0.1, 5), lambda obj: [obj(s) for s in range(20)]),
    "pylstm.metrics.Metric": lambda: (_Count(), lambda obj: obj.result()),
    "pylstm.metrics.MeanMetricWrapper": lambda: (
        metrics.MeanMetricWrapper(_abs_error, name="abs"), None),
    "pylstm.datasets.Sunspots": lambda: (Sunspots(np.ones(3), np.arange(3), np.arange(3)),
                                         None),
    "pylstm.utils.TimeseriesDataset": lambda: (
        utils.timeseries_dataset_from_array(np.arange(20.0), None, 5, batch_size=4),
        lambda obj: [b.copy() for b in obj]),
    "pylstm.variable.WeightBudget": lambda: (variable.WeightBudget(100), None),
    "pylstm.variable.WeightLimitError": lambda: (variable.WeightLimitError("too big"),
                                                 lambda obj: obj.args),
    "pylstm.callbacks.History": lambda: _fitted_callback(callbacks.History()),
    "pylstm.callbacks.EarlyStopping": lambda: _fitted_callback(
        callbacks.EarlyStopping(monitor="loss", restore_best_weights=True)),
    "pylstm.callbacks.ReduceLROnPlateau": lambda: _fitted_callback(
        callbacks.ReduceLROnPlateau(monitor="loss")),
    "pylstm.callbacks.LearningRateScheduler": lambda: _fitted_callback(
        callbacks.LearningRateScheduler(_halve)),
    "pylstm.callbacks.TerminateOnNaN": lambda: _fitted_callback(callbacks.TerminateOnNaN()),
    "pylstm.variable.SlicedGradient": lambda: (variable.SlicedGradient(
        np.ones((3, 2), "float32"), np.array([0, 2, 2]), np.ones((3, 2), "float32")), None),
    "pylstm.callbacks.LambdaCallback": lambda: _fitted_callback(
        callbacks.LambdaCallback(on_epoch_end=_on_epoch_end)),
}


def _factory(name, cls, tmp_path):
    if name == "pylstm.onnx._import.OnnxModel":
        return _onnx_model(tmp_path)
    if name == "pylstm.callbacks.ModelCheckpoint":
        return _fitted_callback(callbacks.ModelCheckpoint(str(tmp_path / "m.pylstm")))
    if name == "pylstm.callbacks.CSVLogger":
        return _fitted_callback(callbacks.CSVLogger(tmp_path / "log.csv"))
    if name in FACTORIES:
        return FACTORIES[name]()
    try:
        obj = cls()
    except TypeError as e:
        pytest.fail(f"{name} needs arguments: add a factory to FACTORIES ({e}).")
    probe = None
    if issubclass(cls, optimizers.Optimizer):
        return _stepped_optimizer(obj)
    if issubclass(cls, losses.Loss) and cls is not losses.Loss:
        y = np.abs(X) / np.abs(X).sum(axis=-1, keepdims=True)
        labels = np.argmax(X2, axis=-1)
        probe = (lambda loss: loss(labels, y)) if "Sparse" in name else (
            lambda loss: loss(np.abs(X2) / np.abs(X2).sum(axis=-1, keepdims=True), y))
    elif issubclass(cls, metrics.Metric):
        y_true = (X2 > 0).astype("float32")
        y_pred = 1 / (1 + np.exp(-X))
        labels = np.argmax(X2, axis=-1)
        try:
            obj.update_state(labels if "Sparse" in name else y_true, y_pred)
        except ValueError:
            obj.update_state(y_true[..., :1], y_pred[..., :1])
        probe = lambda metric: metric.result()  # noqa: E731
    elif issubclass(cls, (regularizers.Regularizer, constraints.Constraint)) \
            and cls not in (regularizers.Regularizer, constraints.Constraint):
        probe = lambda fn: fn(X[0].astype("float64"))  # noqa: E731
    elif issubclass(cls, layers.Layer):
        return _called(obj, X)
    return obj, probe


def _canonical(obj, memo=None, keep=None):
    """What pickling `obj` records, as nested tuples: each object by its `__reduce_ex__`,
    arrays by dtype, shape and bytes, an object met again by its first visit's number (so
    that shared objects must stay shared)."""
    memo = {} if memo is None else memo
    keep = [] if keep is None else keep  # holds the reductions, so that no id is reused
    if obj is None or isinstance(obj, (bool, int, str, bytes, complex)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) \
            or callable(obj) and hasattr(obj, "__qualname__") and not hasattr(obj, "__dict__"):
        return ("global", getattr(obj, "__module__", None), obj.__qualname__)
    if isinstance(obj, tuple) and type(obj) is not tuple and hasattr(obj, "_fields"):
        # a namedtuple is a value: deepcopy may duplicate one met through a cycle
        return (type(obj).__qualname__, tuple(_canonical(v, memo, keep) for v in obj))
    if id(obj) in memo:
        return ("seen", memo[id(obj)])
    memo[id(obj)] = len(memo)
    keep.append(obj)

    def canon(value):
        return _canonical(value, memo, keep)

    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return (type(obj).__name__, tuple(canon(v) for v in obj))
    if type(obj) is dict:
        return ("dict", tuple((canon(k), canon(v)) for k, v in obj.items()))
    if isinstance(obj, (set, frozenset)):
        return ("set", tuple(sorted(repr(canon(v)) for v in obj)))
    reducer = copyreg.dispatch_table.get(type(obj))  # as pickle looks it up (ufuncs)
    reduced = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
    if isinstance(reduced, str):
        return ("global", reduced)
    keep.append(reduced)
    parts = list(reduced) + [None] * (5 - len(reduced))
    return ("object", canon(parts[0]), canon(parts[1]), canon(parts[2]),
            None if parts[3] is None else tuple(canon(v) for v in parts[3]),
            None if parts[4] is None else tuple((canon(k), canon(v)) for k, v in parts[4]))


def _same(a, b):
    """Probe results equal, bitwise for arrays (NaN equal to NaN)."""
    if isinstance(a, (list, tuple)):
        assert isinstance(b, type(a)) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, state.LSTMState):
        _same([a.h, a.c], [b.h, b.c])
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_every_public_class_travels(name, how, tmp_path):
    cls = CLASSES[name]
    obj, probe = _factory(name, cls, tmp_path)
    assert isinstance(obj, cls)
    restored = pickle.loads(pickle.dumps(obj)) if how == "pickle" else copy.deepcopy(obj)
    assert type(restored) is type(obj) and restored is not obj
    # the same state: the copy pickles as the original does
    assert _canonical(restored) == _canonical(obj)
    if probe is not None:
        _same(probe(restored), probe(obj))


def test_discovery_finds_every_kind():
    kinds = {name.split(".")[1] for name in CLASSES}
    assert {"layers", "models", "optimizers", "losses", "metrics", "callbacks", "initializers",
            "regularizers", "constraints", "nn", "optim", "streaming", "state"} <= kinds
    assert "pylstm.layers.lstm.LSTM" in CLASSES and "pylstm.nn.lstm.LSTM" in CLASSES


# Training continues bitwise -------------------------------------------------------------------


def _continue(model, x, y):
    model.fit(x, y, epochs=2, batch_size=1, verbose=0, shuffle=False)
    return model.get_weights()


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_fitted_sequential_continues_training_bitwise(how):
    model = _fitted_sequential(optimizers.Adam(0.01, use_ema=True, ema_overwrite_frequency=3))
    restored = pickle.loads(pickle.dumps(model)) if how == "pickle" else copy.deepcopy(model)
    assert restored.optimizer.iterations == model.optimizer.iterations == 2
    for a, b in zip(_continue(restored, X, np.ones((2, 2))), _continue(model, X, np.ones((2, 2)))):
        np.testing.assert_array_equal(a, b)
    # each model's optimizer state is keyed by its own variables
    assert set(map(id, restored.optimizer._slots)) == set(map(id, restored.trainable_variables))


def test_a_fitted_functional_model_continues_training_bitwise():
    model = _fitted_functional()
    restored = pickle.loads(pickle.dumps(model))
    y = [np.ones((2, 1)), np.zeros((2, 2))]
    for a, b in zip(_continue(restored, [X, X2], y), _continue(model, [X, X2], y)):
        np.testing.assert_array_equal(a, b)


def test_weight_decay_exclusions_travel_with_the_optimizer():
    model = Sequential([layers.Input((3,)), layers.Dense(2)])
    optimizer = optimizers.AdamW(0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_list=[model.layers[0].bias])
    model.compile(optimizer, "mse")
    model.layers[0].bias.assign(np.ones(2))
    restored = pickle.loads(pickle.dumps(model))
    restored.optimizer._update = lambda value, grad, slots, lr: None  # weight decay only
    restored.train_on_batch(X[:, 0], np.zeros((2, 2)))
    np.testing.assert_array_equal(restored.layers[0].bias.value, np.ones(2))
    assert not np.array_equal(restored.layers[0].kernel.value, model.layers[0].kernel.value)


def test_an_nn_module_and_its_optimizer_continue_bitwise():
    module = nn.LSTM(3, 2, num_layers=2, batch_first=True, dropout=0.5, seed=3)
    optimizer = optim.Adam(module.parameters(), lr=0.01)

    def step(module, optimizer):
        out, _ = module(X)
        optimizer.zero_grad()
        module.backward(np.ones_like(out))
        optimizer.step()
        return out

    step(module, optimizer)
    restored_module, restored_optimizer = pickle.loads(pickle.dumps((module, optimizer)))
    for _ in range(2):
        np.testing.assert_array_equal(step(restored_module, restored_optimizer),
                                      step(module, optimizer))
    for a, b in zip(restored_module.parameters(), module.parameters()):
        np.testing.assert_array_equal(a.value, b.value)


def test_stateful_layers_keep_their_states():
    model = Sequential([layers.Input((4, 3), batch_size=2),
                        layers.LSTM(3, stateful=True, seed=1), layers.Dense(1)])
    model.predict(X, verbose=0)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X, verbose=0), model.predict(X, verbose=0))
    model.reset_states()
    assert not np.array_equal(restored.predict(X, verbose=0), model.predict(X, verbose=0))


# What does not travel ------------------------------------------------------------------------


def test_backward_caches_and_compiled_steppers_do_not_travel():
    layer = layers.LSTM(8, return_sequences=True)
    big = np.ones((16, 50, 8), dtype="float32")
    layer(big)
    small = len(pickle.dumps(layer))
    layer(big, training=True)
    assert layer._cache is not None
    assert len(pickle.dumps(layer)) == small  # the cache (tens of kB here) stays behind
    restored = pickle.loads(pickle.dumps(layer))
    assert restored._cache is None and not restored.kernel.grad.any()
    module = nn.LSTM(8, 4, batch_first=True)
    module(big)
    assert pickle.loads(pickle.dumps(module))._cache is None
    # a compiled stepper is made again on arrival
    stepper, probe = _stepper()
    assert "_kernel_step" not in stepper.__getstate__()
    _same(probe(pickle.loads(pickle.dumps(stepper))), probe(stepper))


def test_a_csv_logger_refuses_to_travel_while_writing(tmp_path):
    logger = callbacks.CSVLogger(tmp_path / "log.csv")
    logger.on_train_begin()
    with pytest.raises(TypeError, match="CSVLogger.*during `fit`"):
        pickle.dumps(logger)
    logger.on_train_end()
    assert pickle.loads(pickle.dumps(logger)).csv_file is None


def test_a_distributed_fits_gradient_function_does_not_travel():
    model = _fitted_sequential()
    model._gradient_fn = lambda *args: None  # a lambda: it would not pickle
    assert pickle.loads(pickle.dumps(model))._gradient_fn is None
