"""Helpers shared by the Keras 3 parity suites: the Keras twin of a pylstm layer, weights copied
either way, and Keras's gradients taken with `tf.GradientTape`.

pytest runs with `--import-mode=importlib`, which keeps `tests/` off `sys.path`; a test module
imports it as `pylstm_tests_keras_util`, which `conftest.py` registers.

Keras runs on its TensorFlow backend (CI installs tensorflow-cpu): the variables below are set
before `keras` is first imported.
"""

import os

import numpy as np
# MASKS, as_list and lstm_weights are re-exported for the parity suites (ku.MASKS, ...).
from pylstm_tests import MASKS, as_list, lstm_weights, require  # noqa: F401

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = require("keras")
tf = require("tensorflow")


def copy_weights(src, dst):
    """Copies `src.get_weights()` into `dst` (pylstm or Keras layers or models, either way).

    Raises:
        AssertionError: the two do not hold the same list of weight shapes.
    """
    weights = [np.asarray(w) for w in src.get_weights()]
    want = [tuple(np.shape(w)) for w in dst.get_weights()]
    assert [w.shape for w in weights] == want, (
        f"weight shapes differ: {[w.shape for w in weights]} vs {want}")
    dst.set_weights(weights)


def keras_call(layer, x, upstream, *, mask=None, initial_state=None, training=False):
    """Calls a Keras layer (or model) on `x` under a GradientTape.

    The loss is `sum_k sum(outputs[k] * upstream[k])`, so the gradients are the vector-Jacobian
    products with a given upstream gradient, what a pylstm `backward(upstream)` computes.

    Args:
        layer: a built Keras layer or model.
        x: `(B, T, D)` float array.
        upstream: list of arrays, one per output, each of its output's shape.
        mask: `(B, T)` bool array or None, passed as the `mask` call argument.
        initial_state: list of arrays or None, passed as `initial_state`.
        training: the `training` call argument.

    Returns:
        `(outputs, grads)`: `outputs` a list of `np.ndarray`; `grads` a dict with `"inputs"`
        (like `x`), `"initial_state"` (a list, empty without `initial_state`) and `"weights"`
        (one per `layer.trainable_weights`, which for an LSTM is `get_weights()`'s order).
    """
    x = tf.constant(x)
    states = [] if initial_state is None else [tf.constant(s) for s in initial_state]
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    if initial_state is not None:
        kwargs["initial_state"] = states
    with tf.GradientTape() as tape:
        tape.watch(x)
        for s in states:
            tape.watch(s)
        outputs = as_list(layer(x, training=training, **kwargs))
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outputs, upstream)])
    sources = {"inputs": x, "initial_state": states, "weights": list(layer.trainable_weights)}
    grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    to_numpy = lambda t: np.asarray(t)  # noqa: E731
    return ([to_numpy(o) for o in outputs],
            {"inputs": to_numpy(grads["inputs"]),
             "initial_state": [to_numpy(g) for g in grads["initial_state"]],
             "weights": [to_numpy(g) for g in grads["weights"]]})


def keras_fit(model, x, y, optimizer, loss, epochs, batch_size):
    """Compiles and trains a Keras model by `fit` without shuffling; returns the per-epoch
    losses."""
    model.compile(optimizer=optimizer, loss=loss)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return history.history["loss"]
