"""`pylstm.layers.Bidirectional` against Keras 3's `keras.layers.Bidirectional` on the same
weights (float32: outputs rtol 1e-5, gradients rtol 1e-4 against tf.GradientTape): every merge
mode, return_sequences x return_state, masks, initial_state, go_backwards, a custom backward
layer and RNN(LSTMCell) inside; stateful use, weights, output shapes and training. Oracle-free
checks (central differences, masks, config, bad arguments): unit/layers/test_bidirectional.py."""

import itertools

import numpy as np
import pytest

from pylstm.layers import LSTM, Dense, Input
from pylstm.layers.bidirectional import Bidirectional
from pylstm.layers.rnn import RNN, LSTMCell
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

B, T, D, H = 3, 5, 4, 6
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6
MERGE_MODES = ["concat", "sum", "mul", "ave", None]
MASKS = ku.MASKS


def random_weights(rng, layer):
    return [(rng.normal(size=w.shape) * 0.4).astype(w.dtype) for w in layer.get_weights()]


def twins(rng, ours, theirs):
    """Builds both for `(B, T, D)` and gives them the same random weights (ours' order)."""
    ours.build((B, T, D))
    theirs.build((B, T, D))
    ours.set_weights(random_weights(rng, ours))
    ku.copy_weights(ours, theirs)
    return ours, theirs


def assert_parity(rng, ours, theirs, mask=None, initial_state=None):
    """Same outputs as Keras, and `backward` gives Keras's input, initial-state and weight
    gradients for a random upstream gradient."""
    x = (rng.normal(size=(B, T, D)) * 0.5).astype("float32")
    kwargs = {} if initial_state is None else {"initial_state": initial_state}
    outputs = ku.as_list(ours(x, training=True, mask=mask, **kwargs))
    upstream = [rng.normal(size=o.shape).astype("float32") for o in outputs]
    k_outputs, k_grads = ku.keras_call(theirs, x, upstream, mask=mask,
                                       initial_state=initial_state)
    assert [o.shape for o in outputs] == [o.shape for o in k_outputs]
    for ours_out, keras_out in zip(outputs, k_outputs):
        np.testing.assert_allclose(ours_out, keras_out, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    grads = ours.backward(upstream if len(upstream) > 1 else upstream[0])
    if initial_state is not None:
        grads, d_states = grads
        for ours_g, keras_g in zip(d_states, k_grads["initial_state"], strict=True):
            np.testing.assert_allclose(ours_g, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD)
    np.testing.assert_allclose(grads, k_grads["inputs"], rtol=RTOL_GRAD, atol=ATOL_GRAD)
    for var, keras_g in zip(ours.trainable_variables, k_grads["weights"], strict=True):
        np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)


def lstm_pair(merge_mode="concat", backward_layer=None, keras_backward_layer=None, **kwargs):
    ours = Bidirectional(LSTM(H, **kwargs), merge_mode=merge_mode,
                         backward_layer=backward_layer)
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(H, **kwargs), merge_mode=merge_mode,
                                        backward_layer=keras_backward_layer)
    return ours, theirs


# Parity with Keras ------------------------------------------------------------------------------


@pytest.mark.parametrize("merge_mode,return_sequences,return_state",
                         list(itertools.product(MERGE_MODES, [False, True], [False, True])))
def test_parity_merge_modes(rng, merge_mode, return_sequences, return_state):
    ours, theirs = twins(rng, *lstm_pair(merge_mode, return_sequences=return_sequences,
                                         return_state=return_state))
    assert_parity(rng, ours, theirs)


@pytest.mark.parametrize("mask_name,return_sequences,merge_mode",
                         [(m, rs, mm) for m in MASKS for rs in (False, True)
                          for mm in ("concat", "mul")])
def test_parity_masks(rng, mask_name, return_sequences, merge_mode):
    # Keras forces zero_output_for_mask = return_sequences on both layers.
    ours, theirs = twins(rng, *lstm_pair(merge_mode, return_sequences=return_sequences))
    assert ours.forward_layer.zero_output_for_mask == return_sequences
    assert_parity(rng, ours, theirs, mask=MASKS[mask_name])


@pytest.mark.parametrize("merge_mode", [None, "sum"])
def test_parity_initial_state_and_mask(rng, merge_mode):
    ours, theirs = twins(rng, *lstm_pair(merge_mode, return_sequences=True, return_state=True))
    states = [(rng.normal(size=(B, H)) * 0.5).astype("float32") for _ in range(4)]
    assert_parity(rng, ours, theirs, initial_state=states, mask=MASKS["holes"])


def test_parity_go_backwards_layer_with_custom_backward_layer(rng):
    # A go_backwards layer gets a forward-running backward copy; Keras needs it given explicitly.
    ours = Bidirectional(LSTM(H, return_sequences=True, go_backwards=True))
    assert ours.forward_layer.go_backwards and not ours.backward_layer.go_backwards
    theirs = keras.layers.Bidirectional(
        keras.layers.LSTM(H, return_sequences=True, go_backwards=True),
        backward_layer=keras.layers.LSTM(H, return_sequences=True))
    assert_parity(rng, *twins(rng, ours, theirs), mask=MASKS["right_padding"])


def test_parity_backward_layer_with_other_units_and_activation(rng):
    ours, theirs = lstm_pair(
        "concat", return_sequences=True,
        backward_layer=LSTM(H + 2, activation="relu", return_sequences=True, go_backwards=True),
        keras_backward_layer=keras.layers.LSTM(H + 2, activation="relu", return_sequences=True,
                                               go_backwards=True))
    ours, theirs = twins(rng, ours, theirs)
    assert ours(np.zeros((B, T, D), "float32")).shape == (B, T, 2 * H + 2)
    assert_parity(rng, ours, theirs)


@pytest.mark.parametrize("merge_mode", ["ave", None])
def test_parity_rnn_lstm_cell_inside(rng, merge_mode):
    ours = Bidirectional(RNN(LSTMCell(H), return_sequences=True, return_state=True),
                         merge_mode=merge_mode)
    theirs = keras.layers.Bidirectional(
        keras.layers.RNN(keras.layers.LSTMCell(H), return_sequences=True, return_state=True),
        merge_mode=merge_mode)
    assert isinstance(ours.backward_layer, RNN) and ours.backward_layer.go_backwards
    assert ours.forward_layer.cell is not ours.backward_layer.cell
    assert_parity(rng, *twins(rng, ours, theirs), mask=MASKS["left_padding"])


def test_stateful_matches_keras_and_reset_state_reaches_both_layers(rng):
    ours, theirs = twins(rng, *lstm_pair("concat", return_sequences=True, stateful=True))
    assert ours.stateful
    batches = [(rng.normal(size=(B, T, D)) * 0.5).astype("float32") for _ in range(3)]
    for x in batches[:2]:
        np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(ours(batches[2]), np.asarray(theirs(batches[2])), rtol=RTOL_OUT,
                               atol=ATOL_OUT)


def test_weights_order_and_names_match_keras(rng):
    ours = Bidirectional(LSTM(H, return_sequences=True, name="enc"))
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True, name="enc"),
                                        name="bi")
    ours, theirs = twins(rng, ours, theirs)
    assert [v.name for v in ours.weights] == [
        f"{direction}_enc/{w}" for direction in ("forward", "backward")
        for w in ("kernel", "recurrent_kernel", "bias")]
    # Keras: bi/forward_enc/lstm_cell/kernel, ...
    assert [v.name for v in ours.weights] == [
        w.path.removeprefix("bi/").replace("lstm_cell/", "") for w in theirs.weights]
    for ours_w, keras_w in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(ours_w, keras_w)
    np.testing.assert_array_equal(ours.forward_layer.get_weights()[0], ours.get_weights()[0])
    np.testing.assert_array_equal(ours.backward_layer.get_weights()[0], ours.get_weights()[3])
    assert ours.count_params() == theirs.count_params()


@pytest.mark.parametrize("merge_mode,return_sequences,return_state",
                         list(itertools.product(MERGE_MODES, [False, True], [False, True])))
def test_compute_output_shape_matches_outputs_and_keras(merge_mode, return_sequences,
                                                         return_state):
    ours, theirs = lstm_pair(merge_mode, return_sequences=return_sequences,
                             return_state=return_state)
    shape = ours.compute_output_shape((B, T, D))
    outputs = ours(np.zeros((B, T, D), "float32"))
    if isinstance(shape, list):
        assert [o.shape for o in outputs] == [tuple(s) for s in shape]
    else:
        assert outputs.shape == shape
    keras_shape = theirs.compute_output_shape((B, T, D))
    keras_shape = [tuple(s) for s in keras_shape] if isinstance(keras_shape[0], tuple) \
        else tuple(keras_shape)
    assert (list(map(tuple, shape)) if isinstance(shape, list) else shape) == keras_shape


def test_mask_reaches_both_directions_in_a_sequential_model(rng):
    """Masking -> Bidirectional(LSTM) -> Dense predicts as the Keras model (a masked step
    changes neither direction)."""
    from pylstm.layers import Masking

    ours = Sequential([Input((T, D)), Masking(0.0), Bidirectional(LSTM(H)), Dense(2)])
    theirs = keras.Sequential([keras.Input((T, D)), keras.layers.Masking(0.0),
                               keras.layers.Bidirectional(keras.layers.LSTM(H)),
                               keras.layers.Dense(2)])
    ours.set_weights([(rng.normal(size=w.shape) * 0.4).astype("float32")
                      for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    x = rng.normal(size=(B, T, D)).astype("float32")
    x[MASKS["left_padding"] == 0] = 0.0
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=RTOL_OUT,
                               atol=ATOL_OUT)


# Gradients by central differences (float64) --------------------------------------------------


def test_training_in_a_sequential_model_matches_keras(rng):
    """Two SGD epochs give Keras's loss curve and weights (the wrapper's weight gradients reach
    the optimizer)."""
    ours = Sequential([Input((T, D)), Bidirectional(LSTM(H), merge_mode="ave"), Dense(1)])
    theirs = keras.Sequential([keras.Input((T, D)),
                               keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="ave"),
                               keras.layers.Dense(1)])
    ours.set_weights([(rng.normal(size=w.shape) * 0.4).astype("float32")
                      for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    x = rng.normal(size=(16, T, D)).astype("float32")
    y = np.tanh(x.sum(axis=(1, 2)))[:, None]
    ours.compile(optimizer="sgd", loss="mse")
    history = ours.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    keras_losses = ku.keras_fit(theirs, x, y, keras.optimizers.SGD(0.01), "mse", epochs=2,
                                batch_size=8)
    np.testing.assert_allclose(history.history["loss"], keras_losses, rtol=1e-4)
    for ours_w, keras_w in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(ours_w, keras_w, rtol=1e-3, atol=1e-6)
