"""Config round-trips for every registered object and every layer class in pylstm.

The objects are discovered: every class of each package's registry (built with its default
arguments, plus the non-default instances below), and every public `Layer` subclass defined in
a `pylstm.layers` module. A layer class needs an entry in `LAYER_CASES` only when it cannot be
built with no arguments or does not take a `(B, T, D)` float input.
"""

import importlib
import json
import pkgutil

import numpy as np
import pytest

import pylstm.layers
from pylstm import constraints, initializers, losses, optimizers, regularizers

# Import every layer module, so that layers not yet exported by `pylstm.layers` are covered too.
for _info in pkgutil.iter_modules(pylstm.layers.__path__):
    importlib.import_module(f"pylstm.layers.{_info.name}")

MODULES = {"initializers": initializers, "regularizers": regularizers,
           "constraints": constraints, "optimizers": optimizers, "losses": losses}

# Non-default arguments, so that the round-trips carry more than defaults.
CUSTOM_OBJECTS = [
    ("initializers", initializers.Constant(2.5)),
    ("initializers", initializers.RandomNormal(1.0, 0.2, seed=3)),
    ("initializers", initializers.RandomUniform(-1.0, 2.0, seed=4)),
    ("initializers", initializers.GlorotNormal(seed=5)),
    ("initializers", initializers.Orthogonal(gain=2.0, seed=1)),
    ("regularizers", regularizers.L1L2(l1=0.1, l2=0.2)),
    ("regularizers", regularizers.OrthogonalRegularizer(0.3, mode="columns")),
    ("constraints", constraints.MaxNorm(3.0, axis=[0, 1])),
    ("constraints", constraints.MinMaxNorm(0.5, 2.0, rate=0.5, axis=1)),
    ("optimizers", optimizers.SGD(0.1, momentum=0.9, nesterov=True, clipnorm=1.0)),
    ("optimizers", optimizers.Adam(0.01, amsgrad=True, global_clipnorm=2.0)),
    ("optimizers", optimizers.RMSprop(centered=True, momentum=0.5, clipvalue=0.5)),
    ("losses", losses.CategoricalCrossentropy(from_logits=True)),
]

_W = np.random.default_rng(0).normal(size=(4, 3))

# What each restored object must compute exactly as the original does (None: config only).
PROBES = {
    "initializers": lambda init: (init((4, 3), dtype="float64")
                                  if getattr(init, "seed", 0) is not None else None),
    "regularizers": lambda reg: (reg(_W), reg.gradient(_W)),
    "constraints": lambda c: c(_W),
}


def _registered(module):
    """The pylstm classes a package's registry resolves names to."""
    registry = module._registry() if hasattr(module, "_registry") else module._REGISTRY
    classes = {registry.lookup(name) for name in registry.names}
    return sorted((c for c in classes if c.__module__.startswith("pylstm")),
                  key=lambda c: c.__name__)


def _object_params():
    params = [pytest.param(kind, cls(), id=f"{kind}-{cls.__name__}")
              for kind, module in MODULES.items() for cls in _registered(module)]
    params += [pytest.param(kind, obj, id=f"{kind}-{type(obj).__name__}-custom")
               for kind, obj in CUSTOM_OBJECTS]
    return params


def _json(value):
    """`value` as it comes back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _assert_same_outputs(a, b):
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_outputs(x, y)
    elif a is None:
        assert b is None
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind, obj", _object_params())
def test_registered_object_round_trips(kind, obj):
    module = MODULES[kind]
    config = obj.get_config()
    restored = module.deserialize(json.loads(json.dumps(module.serialize(obj))))
    assert type(restored) is type(obj)
    assert _json(restored.get_config()) == _json(config)
    assert type(obj).from_config(config).get_config() == config
    assert type(module.get(module.serialize(obj))) is type(obj)
    probe = PROBES.get(kind)
    if probe is not None:
        _assert_same_outputs(probe(restored), probe(obj))


def test_every_registry_is_covered():
    assert {c.__name__ for c in _registered(regularizers)} >= {
        "L1", "L2", "L1L2", "OrthogonalRegularizer"}
    assert {c.__name__ for c in _registered(constraints)} >= {
        "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"}
    assert all(_registered(module) for module in MODULES.values())


_RNG = np.random.default_rng(1)
SEQUENCES = _RNG.normal(size=(2, 5, 4)).astype("float32")  # (B, T, D)
STEPS = _RNG.normal(size=(2, 4)).astype("float32")  # (B, D)
TOKENS = np.array([[1, 4, 9, 0, 0], [3, 3, 7, 2, 0]])  # (B, T) ids < 10, 0 = padding

def _functional_case(L):
    x = L["InputLayer"](shape=(5, 4)).output
    _, h, c = L["LSTM"](3, return_state=True)(x)
    return L["Functional"](x, L["LSTM"](3, return_sequences=True)(x, initial_state=[h, c]))


# Class name -> (make(classes) -> layer, inputs). Layers built by other means than `cls()` on
# `SEQUENCES`; the arguments are non-default where that exercises the config.
LAYER_CASES = {
    "Activation": (lambda L: L["Activation"]("tanh"), SEQUENCES),
    "Add": (lambda L: L["Add"](), [SEQUENCES, SEQUENCES[:, :1]]),
    "Average": (lambda L: L["Average"](), [SEQUENCES, 2 * SEQUENCES]),
    "Concatenate": (lambda L: L["Concatenate"](axis=1), [SEQUENCES, SEQUENCES[:, :2]]),
    "Dot": (lambda L: L["Dot"](axes=[2, 2], normalize=True), [SEQUENCES, SEQUENCES[:, :3]]),
    "Maximum": (lambda L: L["Maximum"](), [SEQUENCES, -SEQUENCES]),
    "Minimum": (lambda L: L["Minimum"](), [SEQUENCES, -SEQUENCES]),
    "Multiply": (lambda L: L["Multiply"](), [SEQUENCES, STEPS]),
    "Subtract": (lambda L: L["Subtract"](), [SEQUENCES, 2 * SEQUENCES]),
    "AdditiveAttention": (lambda L: L["AdditiveAttention"](dropout=0.2, seed=3),
                          [SEQUENCES, SEQUENCES[:, :3]]),
    "Attention": (lambda L: L["Attention"](use_scale=True, score_mode="concat", dropout=0.1),
                  [SEQUENCES, SEQUENCES[:, :3]]),
    "AveragePooling1D": (lambda L: L["AveragePooling1D"](3, strides=1, padding="same"),
                         SEQUENCES),
    "Conv1D": (lambda L: L["Conv1D"](3, 2, padding="causal", dilation_rate=2, activation="relu",
                                     kernel_regularizer="l2"), SEQUENCES),
    "LSTMLayer": (lambda L: L["LSTMLayer"](input_size=4, hidden_size=3, num_layers=2,
                                           bidirectional=True, proj_size=2, seed=0,
                                           return_sequences=True), SEQUENCES),
    "Bidirectional": (lambda L: L["Bidirectional"](
        L["LSTM"](3, return_sequences=True, seed=0), merge_mode="sum"), SEQUENCES),
    "Dense": (lambda L: L["Dense"](3, activation="relu", kernel_regularizer="l1_l2",
                                   bias_constraint="non_neg", activity_regularizer="l2"),
              SEQUENCES),
    "Dropout": (lambda L: L["Dropout"](0.3, seed=1), SEQUENCES),
    "Embedding": (lambda L: L["Embedding"](10, 3, mask_zero=True), TOKENS),
    "GlobalAveragePooling1D": (lambda L: L["GlobalAveragePooling1D"](keepdims=True), SEQUENCES),
    "GlobalMaxPooling1D": (lambda L: L["GlobalMaxPooling1D"](data_format="channels_first"),
                           SEQUENCES),
    "Permute": (lambda L: L["Permute"]((2, 1)), SEQUENCES),
    "RepeatVector": (lambda L: L["RepeatVector"](3), STEPS),
    "Reshape": (lambda L: L["Reshape"]((-1, 2)), SEQUENCES),
    "InputLayer": (lambda L: L["InputLayer"](shape=(5, 4)), SEQUENCES),
    "Functional": (lambda L: _functional_case(L), SEQUENCES),
    "Sequential": (lambda L: L["Sequential"]([L["LSTM"](3, return_sequences=True),
                                             L["Dense"](2)]), SEQUENCES),
    "LSTM": (lambda L: L["LSTM"](
        3, activation="softsign", return_sequences=True, return_state=True, go_backwards=True,
        kernel_regularizer=regularizers.L2(0.1), recurrent_constraint=constraints.UnitNorm(),
        dropout=0.2, seed=0), SEQUENCES),
    "LSTMCell": (lambda L: L["LSTMCell"](3, use_bias=False), STEPS),
    "Masking": (lambda L: L["Masking"](mask_value=0.5), SEQUENCES),
    "RNN": (lambda L: L["RNN"](L["LSTMCell"](3), return_sequences=True), SEQUENCES),
    "SpatialDropout1D": (lambda L: L["SpatialDropout1D"](0.4, seed=2), SEQUENCES),
    "StackedRNNCells": (lambda L: L["StackedRNNCells"]([L["LSTMCell"](3), L["LSTMCell"](2)]),
                        STEPS),
    "TimeDistributed": (lambda L: L["TimeDistributed"](L["Dense"](2)), SEQUENCES),
}


def _pylstm_layer_classes():
    return {name: cls for name, cls in pylstm.layers._layer_classes().items()
            if cls.__module__.startswith("pylstm.") and not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(_pylstm_layer_classes()))
def test_layer_round_trips_with_identical_outputs(name):
    classes = _pylstm_layer_classes()
    make, x = LAYER_CASES.get(name, (lambda L: L[name](), SEQUENCES))
    try:
        layer = make(classes)
    except TypeError as e:
        pytest.fail(f"{name}() needs arguments: add an entry to LAYER_CASES ({e})")
    outputs = layer(x)
    config = layer.get_config()
    clone = pylstm.layers.deserialize(json.loads(json.dumps(pylstm.layers.serialize(layer))))
    assert type(clone) is type(layer)
    assert _json(clone.get_config()) == _json(config)
    assert _json(type(layer).from_config(config).get_config()) == _json(config)
    clone(x)  # builds the clone, with its own initial weights
    weights = layer.get_weights()
    clone.set_weights(weights)
    _assert_same_outputs([w for w in clone.get_weights()], weights)
    _assert_same_outputs(clone(x), outputs)
