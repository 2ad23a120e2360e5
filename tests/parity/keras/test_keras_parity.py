"""Parity of `pylstm.layers.LSTM` with Keras 3's `keras.layers.LSTM` (TensorFlow backend,
float32) on the same weights, argument by argument.

For each configuration, pylstm's outputs and final states must match Keras's within rtol 1e-5
(atol 1e-6), and the gradients of `loss = sum(out * G)` for a random upstream `G` (pylstm's
`backward(G)` after `call(..., training=True)`, Keras's `tf.GradientTape`) with respect to the
inputs, the initial states and every weight within rtol 1e-4.

Training-mode dropout draws masks that cannot be shared with Keras: it is checked by its
structure in unit/layers/test_lstm_dropout.py. Regularizers and constraints are compared through `losses` and one SGD step of a one-layer
model.

Legend: B batch, T timesteps, D input features, H units.
"""

import numpy as np
import pytest

from pylstm import constraints, optimizers, regularizers
from pylstm.layers import LSTM, Input
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

B, T, D, H = 3, 5, 4, 6
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD = 1e-4

# (B, T) masks, True on real steps; every pattern Keras's RNN masking must handle.
MASKS = {**ku.MASKS, "all_real": np.ones((B, T), dtype=bool)}

ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear", "elu", "softsign", "softplus",
               "selu", "swish", "exponential", None]


def lecun_tanh(x):
    """LeCun et al. (1998)'s scaled tanh, a plain NumPy callable with no derivative."""
    return 1.7159 * np.tanh(x * (2.0 / 3.0))


def lecun_tanh_with_backward(x):
    """The same, carrying its derivative as `pylstm.activations` functions do."""
    return lecun_tanh(x)


lecun_tanh_with_backward.backward = \
    lambda x, y, grad_y: grad_y * (2.0 / 3.0) * (1.7159 - y * y / 1.7159)


def keras_lecun_tanh(x):
    return 1.7159 * keras.ops.tanh(x * (2.0 / 3.0))


# name -> (pylstm's callable, the equivalent Keras callable)
CALLABLES = {"callable": (lecun_tanh, keras_lecun_tanh),
             "callable_with_backward": (lecun_tanh_with_backward, keras_lecun_tanh)}


def make_twins(rng, batch=B, pylstm_kwargs=None, keras_kwargs=None, scale=0.3, **kwargs):
    """A pylstm LSTM and a Keras LSTM with the same arguments and random weights (of standard
    deviation `scale`), built for `(batch, T, D)`; `pylstm_kwargs` / `keras_kwargs` hold
    arguments given differently."""
    ours = LSTM(H, **kwargs, **(pylstm_kwargs or {}))
    theirs = keras.layers.LSTM(H, **kwargs, **(keras_kwargs or {}))
    ours.build((batch, T, D))
    theirs.build((batch, T, D))
    weights = ku.lstm_weights(rng, D, H, use_bias=kwargs.get("use_bias", True), scale=scale)
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def make_inputs(rng, batch=B, features=D):
    return (rng.normal(size=(batch, T, features)) * 0.5).astype("float32")


def make_states(rng, batch=B):
    return [(rng.normal(size=(batch, H)) * 0.5).astype("float32") for _ in range(2)]


def make_upstream(rng, return_sequences, return_state, batch=B):
    shapes = [(batch, T, H) if return_sequences else (batch, H)]
    shapes += [(batch, H)] * (2 if return_state else 0)
    return [rng.normal(size=s).astype("float32") for s in shapes]


def pylstm_call(layer, x, upstream, *, mask=None, initial_state=None):
    """pylstm's counterpart of `keras_util.keras_call`: `call(training=True)` then
    `backward(upstream)`; returns `(outputs, grads)` in the same layout."""
    layer.zero_grads()
    kwargs = {} if initial_state is None else {"initial_state": initial_state}
    outputs = ku.as_list(layer(x, training=True, mask=mask, **kwargs))
    result = layer.backward(upstream if layer.return_state else upstream[0])
    dx, dstates = result if initial_state is not None else (result, [])
    return outputs, {"inputs": dx, "initial_state": list(dstates),
                     "weights": [v.grad.copy() for v in layer.trainable_variables]}


def assert_close_grad(got, want, what):
    scale = max(float(np.abs(want).max()), 1e-3)
    np.testing.assert_allclose(got, want, rtol=RTOL_GRAD, atol=0.1 * RTOL_GRAD * scale,
                               err_msg=what)


def assert_same_as_keras(got, want):
    """pylstm's `(outputs, grads)` against Keras's, within the suite's tolerances."""
    (outputs, grads), (k_outputs, k_grads) = got, want
    assert len(outputs) == len(k_outputs)
    for k, (a, b) in enumerate(zip(outputs, k_outputs)):
        assert a.dtype == np.float32, f"output {k} has dtype {a.dtype}"
        np.testing.assert_allclose(a, b, rtol=RTOL_OUT, atol=ATOL_OUT, err_msg=f"output {k}")
    for key in ("inputs", "initial_state", "weights"):
        a, b = ku.as_list(grads[key]), ku.as_list(k_grads[key])
        assert len(a) == len(b), key
        for k, (ga, gb) in enumerate(zip(a, b)):
            assert_close_grad(ga, gb, f"gradient {key}[{k}]")


def check_against_keras(rng, mask=None, initial_state=False, pylstm_kwargs=None,
                        keras_kwargs=None, scale=0.3, **kwargs):
    """Builds twins with `kwargs`, then compares training-mode outputs and gradients, and
    inference-mode outputs, with Keras's."""
    ours, theirs = make_twins(rng, pylstm_kwargs=pylstm_kwargs, keras_kwargs=keras_kwargs,
                              scale=scale, **kwargs)
    x = make_inputs(rng)
    states = make_states(rng) if initial_state else None
    upstream = make_upstream(rng, kwargs.get("return_sequences", False),
                             kwargs.get("return_state", False))
    want = ku.keras_call(theirs, x, upstream, mask=mask, initial_state=states)
    assert_same_as_keras(pylstm_call(ours, x, upstream, mask=mask, initial_state=states), want)
    call_kwargs = {} if states is None else {"initial_state": states}
    inference = ku.as_list(ours(x, training=False, mask=mask, **call_kwargs))
    for k, (a, b) in enumerate(zip(inference, want[0])):
        np.testing.assert_allclose(a, b, rtol=RTOL_OUT, atol=ATOL_OUT,
                                   err_msg=f"inference output {k}")


# Masks, return options, bias ---------------------------------------------------------------

@pytest.mark.parametrize("initial_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
@pytest.mark.parametrize("zero_output_for_mask", [False, True], ids=["carry", "zero_output"])
@pytest.mark.parametrize("pattern", list(MASKS))
def test_mask_patterns(rng, pattern, zero_output_for_mask, go_backwards, return_sequences,
                       initial_state):
    check_against_keras(rng, mask=MASKS[pattern], initial_state=initial_state,
                        zero_output_for_mask=zero_output_for_mask, go_backwards=go_backwards,
                        return_sequences=return_sequences, return_state=True)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
@pytest.mark.parametrize("initial_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("return_state", [False, True], ids=["output", "state"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
def test_return_options(rng, return_sequences, return_state, initial_state, go_backwards):
    check_against_keras(rng, initial_state=initial_state, return_sequences=return_sequences,
                        return_state=return_state, go_backwards=go_backwards)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
def test_without_bias(rng, go_backwards):
    check_against_keras(rng, mask=MASKS["holes"], initial_state=True, use_bias=False,
                        go_backwards=go_backwards, return_sequences=True, return_state=True)


@pytest.mark.parametrize("bias_initializer", ["zeros", "ones", "random_normal"])
@pytest.mark.parametrize("unit_forget_bias", [False, True])
def test_initial_bias(unit_forget_bias, bias_initializer):
    """`unit_forget_bias` sets the forget slice to ones and keeps `bias_initializer` for the
    other slices, as Keras does ("random_normal" draws differ, so only its ones compare)."""
    ours = LSTM(H, unit_forget_bias=unit_forget_bias, bias_initializer=bias_initializer)
    theirs = keras.layers.LSTM(H, unit_forget_bias=unit_forget_bias,
                               bias_initializer=bias_initializer)
    ours.build((B, T, D))
    theirs.build((B, T, D))
    got, want = ours.get_weights()[2], theirs.get_weights()[2]
    assert got.shape == want.shape == (4 * H,)
    if bias_initializer != "random_normal":
        np.testing.assert_array_equal(got, want)
    forget = slice(H, 2 * H)
    if unit_forget_bias:
        np.testing.assert_array_equal(got[forget], want[forget])
        np.testing.assert_array_equal(got[forget], 1.0)
    else:
        assert len(np.unique(got)) == (1 if bias_initializer != "random_normal" else 4 * H)


# Activations -------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS + list(CALLABLES), ids=str)
@pytest.mark.parametrize("slot", ["activation", "recurrent_activation"])
def test_activations(rng, slot, activation):
    """Every Keras activation by name, and a callable, in either slot (weights small enough
    that "exponential" as the cell activation stays well conditioned)."""
    ours, theirs = CALLABLES.get(activation, (activation, activation))
    check_against_keras(rng, mask=MASKS["holes"], initial_state=True, scale=0.2,
                        pylstm_kwargs={slot: ours}, keras_kwargs={slot: theirs},
                        return_sequences=True, return_state=True)


# Dropout -----------------------------------------------------------------------------------

def test_dropout_in_inference_is_no_dropout(rng):
    """Inference ignores `dropout` and `recurrent_dropout`: Keras's outputs, and the same as
    a layer without dropout."""
    kwargs = dict(return_sequences=True, return_state=True)
    ours, theirs = make_twins(rng, dropout=0.5, recurrent_dropout=0.5, seed=3, **kwargs)
    plain = LSTM(H, **kwargs)
    plain.build((B, T, D))
    plain.set_weights(ours.get_weights())
    x = make_inputs(rng)
    want = [np.asarray(o) for o in theirs(x, training=False)]
    for got in (ours(x, training=False), ours(x), plain(x)):
        for k, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_allclose(a, b, rtol=RTOL_OUT, atol=ATOL_OUT, err_msg=f"output {k}")


# Stateful ----------------------------------------------------------------------------------

def test_stateful_batches_and_reset_state(rng):
    """A stateful layer starts each batch from the previous batch's final states, like Keras's,
    step by step (gradients included), and `reset_state()` starts over from zeros."""
    kwargs = dict(stateful=True, return_sequences=True, return_state=True)
    ours, theirs = make_twins(rng, **kwargs)
    batches = [make_inputs(rng) for _ in range(3)]
    masks = [None, MASKS["holes"], MASKS["masked_row"]]
    upstream = make_upstream(rng, True, True)
    runs = []
    for _ in range(2):
        run = []
        for x, mask in zip(batches, masks):
            got = pylstm_call(ours, x, upstream, mask=mask)
            assert_same_as_keras(got, ku.keras_call(theirs, x, upstream, mask=mask))
            run.append(got[0])
        runs.append(run)
        ours.reset_state()
        theirs.reset_state()
    for first, again in zip(*runs):
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)


def test_stateful_per_sample_reset_state(rng):
    """`reset_state(mask)` (a pylstm addition) zeroes the states of the samples where `mask`
    is True and keeps the others': Keras with its state variables edited the same way."""
    ours, theirs = make_twins(rng, stateful=True, return_state=True)
    x1, x2 = make_inputs(rng), make_inputs(rng)
    ours(x1)
    theirs(x1)
    reset = np.array([True, False, True])
    ours.reset_state(reset)
    for state in theirs.states:
        state.assign(np.asarray(state) * ~reset[:, None])
    got, want = ours(x2), [np.asarray(o) for o in theirs(x2)]
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=RTOL_OUT, atol=ATOL_OUT, err_msg=f"output {k}")

    fresh = LSTM(H, return_state=True)
    fresh.build((B, T, D))
    fresh.set_weights(ours.get_weights())
    from_zero = fresh(x2)[0]
    np.testing.assert_allclose(got[0][reset], from_zero[reset], rtol=RTOL_OUT, atol=ATOL_OUT)
    assert not np.allclose(got[0][~reset], from_zero[~reset])


def test_stateful_rejects_another_batch_size(rng):
    ours, theirs = make_twins(rng, stateful=True)
    x = make_inputs(rng, B - 1)
    with pytest.raises(ValueError, match="batch size"):
        theirs(x)
    with pytest.raises(ValueError, match="batch"):
        ours(x)


# Regularizers and constraints --------------------------------------------------------------

REGULARIZERS = [("L1", dict(l1=0.01)), ("L2", dict(l2=0.02)), ("L1L2", dict(l1=0.01, l2=0.02))]
REGULARIZER_SLOTS = ["kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                     "activity_regularizer"]
# By name: Keras's defaults, L1(0.01) and L2(0.01).
REGULARIZERS_BY_NAME = {"kernel_regularizer": "l2", "recurrent_regularizer": "l1",
                        "activity_regularizer": "l2"}

CONSTRAINTS = [("MaxNorm", dict(max_value=0.3, axis=0)), ("UnitNorm", dict(axis=0)),
               ("NonNeg", {}), ("MinMaxNorm", dict(min_value=0.2, max_value=0.5, rate=0.7))]
CONSTRAINT_SLOTS = ["kernel_constraint", "recurrent_constraint", "bias_constraint"]


def rotated(module, table, slots, rotation):
    """Slot `k` gets `table[(k + rotation) % len(table)]`, built from `module`: over all
    rotations every slot meets every entry."""
    return {slot: getattr(module, table[(k + rotation) % len(table)][0])(
        **table[(k + rotation) % len(table)][1]) for k, slot in enumerate(slots)}


def regularizer_kwargs(rotation):
    """(pylstm kwargs, Keras kwargs) for one rotation, or the by-name case."""
    if rotation == "by_name":
        return REGULARIZERS_BY_NAME, REGULARIZERS_BY_NAME
    return (rotated(regularizers, REGULARIZERS, REGULARIZER_SLOTS, rotation),
            rotated(keras.regularizers, REGULARIZERS, REGULARIZER_SLOTS, rotation))


@pytest.mark.parametrize("return_state", [False, True], ids=["output", "state"])
@pytest.mark.parametrize("rotation", [0, 1, 2, "by_name"])
def test_regularization_losses(rng, rotation, return_state):
    """`losses` holds the same penalties as Keras's: each weight's, and the activity
    regularizer's on every output (the states too with `return_state`), divided by the batch
    size as Keras 3 does."""
    ours_kwargs, keras_kwargs = regularizer_kwargs(rotation)
    ours, theirs = make_twins(rng, pylstm_kwargs=ours_kwargs, keras_kwargs=keras_kwargs,
                              return_sequences=True, return_state=return_state)
    x = make_inputs(rng)
    ours(x)
    theirs(x)
    want = sorted(float(loss) for loss in theirs.losses)
    assert len(want) == (3 if return_state else 1) + sum(
        k != "activity_regularizer" for k in keras_kwargs)
    np.testing.assert_allclose(sorted(ours.losses), want, rtol=1e-5)


def one_sgd_step(rng, pylstm_kwargs, keras_kwargs, learning_rate=0.5):
    """One full-batch SGD step on MSE of `Input + LSTM` in both; checks the models' `losses`
    after a call, the reported training loss (penalties included) and the updated weights."""
    ours = Sequential([Input((T, D)), LSTM(H, return_sequences=True, **pylstm_kwargs)])
    theirs = keras.Sequential([keras.Input((T, D)),
                               keras.layers.LSTM(H, return_sequences=True, **keras_kwargs)])
    initial = ku.lstm_weights(rng, D, H)
    ours.set_weights(initial)
    theirs.set_weights(initial)
    x = make_inputs(rng)
    y = (rng.normal(size=(B, T, H)) * 0.5).astype("float32")
    ours(x)
    theirs(x)
    np.testing.assert_allclose(sorted(ours.losses), sorted(float(v) for v in theirs.losses),
                               rtol=1e-5)

    ours.compile(optimizer=optimizers.SGD(learning_rate=learning_rate), loss="mse")
    got_loss = ours.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0).history["loss"]
    want_loss = ku.keras_fit(theirs, x, y, keras.optimizers.SGD(learning_rate=learning_rate),
                             "mse", epochs=1, batch_size=B)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for name, w0, got, want in zip(("kernel", "recurrent_kernel", "bias"), initial,
                                   ours.get_weights(), theirs.get_weights()):
        assert np.abs(want - w0).max() > 1e-3, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("rotation", [0, 1, 2, "by_name"])
def test_sgd_step_with_regularizers(rng, rotation):
    one_sgd_step(rng, *regularizer_kwargs(rotation))


@pytest.mark.parametrize("rotation", [0, 1, 2, 3])
def test_sgd_step_with_constraints(rng, rotation):
    one_sgd_step(rng, rotated(constraints, CONSTRAINTS, CONSTRAINT_SLOTS, rotation),
                 rotated(keras.constraints, CONSTRAINTS, CONSTRAINT_SLOTS, rotation))


# Accepted for compatibility ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(unroll=True), dict(use_cudnn=False),
                                    dict(use_cudnn="auto", unroll=True)],
                         ids=["unroll", "no_cudnn", "auto_cudnn_unroll"])
def test_unroll_and_use_cudnn_keep_results(rng, kwargs):
    check_against_keras(rng, mask=MASKS["holes"], initial_state=True, return_sequences=True,
                        return_state=True, **kwargs)


def test_invalid_use_cudnn_is_rejected_like_keras():
    with pytest.raises(ValueError, match="use_cudnn"):
        keras.layers.LSTM(H, use_cudnn="always")
    with pytest.raises(ValueError, match="use_cudnn"):
        LSTM(H, use_cudnn="always")
