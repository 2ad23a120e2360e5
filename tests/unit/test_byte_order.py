"""Arrays in the other byte order (`>f4`, `>f8` on a little-endian machine) give bitwise the
results of the same values in native order, at every public entry point; destinations
(`out=`, `new_state=`) in the other order are refused with a TypeError naming them.

The compiled kernels read raw memory as native numbers, so a non-native array that reached
them would be read as garbage (issue 12): each entry converts such arrays to a native copy.
`test_every_public_entry_point_is_swept` keeps the sweep complete as the API grows.
"""

import inspect
import sys
import types

import numpy as np
import pytest

import pylstm
from pylstm import (activations, constraints, initializers, layers, losses, metrics, models, nn,
                    ops, optimizers, regularizers, streaming)
from pylstm.nn.utils import rnn

DTYPES = ["float32", "float64"]


_OTHER_ORDER = ">" if sys.byteorder == "little" else "<"


def swapped(a):
    """`a`'s values in the non-native byte order (None, bools and bytes returned as they are)."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype.byteorder == "|":
        return a
    out = a.astype(a.dtype.newbyteorder(_OTHER_ORDER))
    assert not out.dtype.isnative and np.array_equal(out, a)
    return out


def native(a):
    return a


def _leaves(value):
    """Every array and scalar in a (nested) result, in order."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (streaming.LSTMState,)):
        yield value.h
        yield value.c
    elif isinstance(value, nn.LSTMStepState):
        for state in value.layers:
            yield from _leaves(state)
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
        yield value
    else:
        raise AssertionError(f"unexpected result type {type(value).__name__}")


def assert_bitwise_same(got, expected, check_native=True):
    """Same structure, shapes, dtypes (native order) and bits; NaN compares equal."""
    got, expected = list(_leaves(got)), list(_leaves(expected))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if isinstance(e, np.ndarray):
            assert isinstance(g, np.ndarray)
            if check_native:
                assert g.dtype.isnative, f"result of dtype {g.dtype.str} is not native"
            assert g.dtype.newbyteorder("=") == e.dtype and g.shape == e.shape
            assert np.ascontiguousarray(g, dtype=e.dtype).tobytes() == e.tobytes()
        elif isinstance(e, float):
            assert np.float64(g).tobytes() == np.float64(e).tobytes()
        else:
            assert g == e


def _rng():
    return np.random.default_rng(12)


def _normal(rng, shape, dtype, scale=0.5):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _weights(dtype, D=3, H=4, P=None):
    rng = _rng()
    P = P or H
    w = dict(kernel=_normal(rng, (D, 4 * H), dtype), recurrent_kernel=_normal(rng, (P, 4 * H), dtype),
             bias=_normal(rng, (4 * H,), dtype))
    if P != H:
        w["projection"] = _normal(rng, (H, P), dtype)
    return w


# Each sweep case runs one entry point with every array argument passed through `conv`
# (`native` or `swapped`) and returns what it produced.
CASES = {}
COVERED = set()


def case(*entry_points):
    def register(fn):
        CASES[fn.__name__] = fn
        COVERED.update(entry_points)
        return fn
    return register


@case("pylstm.ops.lstm_forward", "pylstm.ops.lstm_backward", "pylstm.ops.LSTMCache")
def ops_forward_routes(conv, dtype):
    rng = _rng()
    out = []
    # the small-call path (one step, batch 1), dense inference, the packed (fused) core
    for B, T in ((1, 1), (1, 5), (3, 4), (4, 40)):
        w = _weights(dtype)
        x = _normal(rng, (B, T, 3), dtype)
        args = [conv(x), conv(w["kernel"]), conv(w["recurrent_kernel"]), conv(w["bias"])]
        out.append(ops.lstm_forward(*args)[:3])
        out.append(ops.lstm_forward(*args, return_sequences=False)[:3])
        y, h, c, cache = ops.lstm_forward(*args, training=True)
        dy = _normal(rng, y.shape, dtype)
        out.append((y, h, c, ops.lstm_backward(cache, conv(dy), conv(h), conv(c))))
    return out


@case("pylstm.ops.lstm_forward")
def ops_forward_options(conv, dtype):
    rng = _rng()
    w = _weights(dtype, P=2)
    B, T, D, H, P = 3, 5, 3, 4, 2
    x = _normal(rng, (T, B, D), dtype)
    h0, c0 = _normal(rng, (B, P), dtype), _normal(rng, (B, H), dtype)
    mask = rng.random((T, B)) > 0.3
    din = (rng.random((4, B, D)) > 0.2).astype(dtype) * 1.25
    drec = (rng.random((B, P)) > 0.2).astype(dtype) * 1.25
    lengths = np.array([5, 2, 4], dtype=np.int64)
    common = dict(projection=conv(w["projection"]), time_major=True)
    weights = [conv(w["kernel"]), conv(w["recurrent_kernel"]), conv(w["bias"]), conv(h0),
               conv(c0)]
    out = []
    for training in (False, True):
        out.append(ops.lstm_forward(conv(x), *weights, **common, mask=mask, training=training,
                                    dropout_mask=conv(din), recurrent_dropout_mask=conv(drec),
                                    zero_output_for_mask=True)[:3])
        for side in ("right", "left"):
            y, h, c, cache = ops.lstm_forward(conv(x), *weights, **common, training=training,
                                              lengths=conv(lengths), padding_side=side,
                                              reverse=True)
            out.append((y, h, c))
            if training:
                out.append(ops.lstm_backward(cache, conv(_normal(rng, y.shape, dtype))))
    # a Python-callable activation runs the NumPy reference path
    y, h, c, cache = ops.lstm_forward(conv(x), *weights, **common,
                                      activation=lambda z: np.tanh(z), training=True)
    out.append((y, h, c, ops.lstm_backward(cache, conv(_normal(rng, y.shape, dtype)))))
    return out


@case("pylstm.ops.lstm_forward_packed")
def ops_forward_packed(conv, dtype):
    rng = _rng()
    w = _weights(dtype)
    batch_sizes = np.array([3, 3, 2, 1], dtype=np.int64)
    data = _normal(rng, (int(batch_sizes.sum()), 3), dtype)
    out = []
    for training in (False, True):
        y, h, c, cache = ops.lstm_forward_packed(
            conv(data), conv(batch_sizes), conv(w["kernel"]), conv(w["recurrent_kernel"]),
            conv(w["bias"]), conv(_normal(rng, (3, 4), dtype)), conv(_normal(rng, (3, 4), dtype)),
            training=training)
        out.append((y, h, c))
        if training:
            out.append(ops.lstm_backward(cache, conv(_normal(rng, y.shape, dtype)),
                                         conv(_normal(rng, h.shape, dtype))))
    return out


@case("pylstm.streaming.LSTMStepper", "pylstm.streaming.LSTMStepper.step",
      "pylstm.streaming.lstm_step", "pylstm.streaming.LSTMState",
      "pylstm.streaming.LSTMState.from_dict")
def streaming_steps(conv, dtype):
    rng = _rng()
    out = []
    for P in (4, 2):
        w = _weights(dtype, P=P)
        stepper = streaming.LSTMStepper(conv(w["kernel"]), conv(w["recurrent_kernel"]),
                                        conv(w["bias"]), projection=conv(w.get("projection")))
        state = streaming.LSTMState(conv(_normal(rng, (2, P), dtype)),
                                    conv(_normal(rng, (2, 4), dtype)))
        for _ in range(3):
            y, state = stepper.step(conv(_normal(rng, (2, 3), dtype)), state)
            out.append((y, state))
        out.append(streaming.lstm_step(conv(_normal(rng, (2, 3), dtype)), state,
                                       conv(w["kernel"]), conv(w["recurrent_kernel"]),
                                       conv(w["bias"]), projection=conv(w.get("projection"))))
    saved = {"h": conv(_normal(rng, (2, 4), dtype)), "c": conv(_normal(rng, (2, 4), dtype))}
    out.append(streaming.LSTMState.from_dict(saved))
    # a Python-callable activation steps through pylstm.ops
    w = _weights(dtype)
    stepper = streaming.LSTMStepper(conv(w["kernel"]), conv(w["recurrent_kernel"]),
                                    activation=lambda z: np.tanh(z))
    out.append(stepper.step(conv(_normal(rng, (2, 3), dtype)), stepper.initial_state(2)))
    return out


def _built(layer, shape, dtype, conv):
    """`layer` built for `shape` with weights drawn from one seed, set through `conv`."""
    layer.build(shape)
    rng = _rng()
    layer.set_weights([conv(_normal(rng, w.shape, dtype)) for w in layer.get_weights()])
    return layer


@case("pylstm.layers.LSTM", "pylstm.layers.LSTM.call", "pylstm.layers.LSTM.step",
      "pylstm.layers.LSTM.set_weights", "pylstm.layers.LSTM.initial_state",
      "pylstm.layers.LSTM.backward", "pylstm.layers.Layer", "pylstm.layers.Variable")
def layers_lstm(conv, dtype):
    rng = _rng()
    out = []
    for kwargs in ({}, {"proj_size": 2, "return_state": True}, {"go_backwards": True}):
        lstm = _built(layers.LSTM(4, dtype=dtype, **kwargs), (None, 5, 3), dtype, conv)
        P = kwargs.get("proj_size", 4)
        x = _normal(rng, (2, 5, 3), dtype)
        state = [conv(_normal(rng, (2, P), dtype)), conv(_normal(rng, (2, 4), dtype))]
        y = lstm(conv(x), training=True, initial_state=state)
        grad = [conv(_normal(rng, a.shape, dtype)) for a in y] if isinstance(y, list) else \
            conv(_normal(rng, y.shape, dtype))
        out.append((y, lstm.backward(grad), [v.grad for v in lstm.variables]))
        out.append(lstm(conv(x), lengths=conv(np.array([5, 3], dtype=np.int64))))
        out.append(lstm(conv(x), mask=np.array([[True] * 5, [True] * 3 + [False] * 2])))
        if not kwargs.get("go_backwards"):
            s = lstm.initial_state(2)
            for t in range(3):
                out.append(lstm.step(conv(x[:, t]), s))
    return out


@case("pylstm.layers.LSTMCell", "pylstm.layers.RNN", "pylstm.layers.StackedRNNCells")
def layers_cells(conv, dtype):
    rng = _rng()
    out = []
    cell = _built(layers.LSTMCell(4, dtype=dtype), (None, 3), dtype, conv)
    states = [conv(_normal(rng, (2, 4), dtype)), conv(_normal(rng, (2, 4), dtype))]
    h, new = cell(conv(_normal(rng, (2, 3), dtype)), states, training=True)
    grads = (conv(_normal(rng, (2, 4), dtype)), [None, conv(_normal(rng, (2, 4), dtype))])
    out.append((h, new, cell.backward(grads)))
    stack = layers.StackedRNNCells([layers.LSTMCell(4, dtype=dtype),
                                    layers.LSTMCell(2, dtype=dtype)], dtype=dtype)
    stack = _built(stack, (None, 3), dtype, conv)
    out.append(stack(conv(_normal(rng, (2, 3), dtype))))
    for wrapped in (layers.LSTMCell(4, dtype=dtype), stack):
        rnn_layer = _built(layers.RNN(wrapped, return_sequences=True, dtype=dtype),
                           (None, 5, 3), dtype, conv)
        y = rnn_layer(conv(_normal(rng, (2, 5, 3), dtype)), training=True)
        out.append((y, rnn_layer.backward(conv(_normal(rng, y.shape, dtype)))))
    return out


@case("pylstm.layers.Bidirectional", "pylstm.layers.TimeDistributed", "pylstm.layers.Dense",
      "pylstm.layers.Embedding", "pylstm.layers.Masking", "pylstm.layers.Dropout",
      "pylstm.layers.Activation", "pylstm.layers.Flatten", "pylstm.layers.InputLayer",
      "pylstm.layers.Input", "pylstm.Input")
def layers_others(conv, dtype):
    rng = _rng()
    out = []
    x = _normal(rng, (2, 5, 3), dtype)
    bi = _built(layers.Bidirectional(layers.LSTM(4, return_sequences=True, dtype=dtype)),
                (None, 5, 3), dtype, conv)
    y = bi(conv(x), training=True,
           initial_state=[conv(_normal(rng, (2, 4), dtype)) for _ in range(4)])
    out.append((y, bi.backward(conv(_normal(rng, y.shape, dtype)))))
    td = _built(layers.TimeDistributed(layers.Dense(2, dtype=dtype)), (None, 5, 3), dtype, conv)
    y = td(conv(x), training=True)
    out.append((y, td.backward(conv(_normal(rng, y.shape, dtype)))))
    dense = _built(layers.Dense(2, activation="tanh", dtype=dtype), (None, 3), dtype, conv)
    y = dense(conv(x[:, 0]), training=True)
    out.append((y, dense.backward(conv(_normal(rng, y.shape, dtype)))))
    emb = _built(layers.Embedding(7, 3, dtype=dtype), (None, 5), dtype, conv)
    ids = np.array([[1, 2, 0, 6, 3], [4, 5, 0, 0, 1]], dtype=np.int64)
    for idx in (ids, ids.astype(dtype)):
        y = emb(conv(idx), training=True)
        out.append((y, emb.backward(conv(_normal(rng, y.shape, dtype))), emb.compute_mask(conv(idx))))
    masked = x.copy()
    masked[0, 3:] = 0
    masking = layers.Masking(0.0, dtype=dtype)
    out.append((masking(conv(masked)), masking.compute_mask(conv(masked))))
    for layer in (layers.Dropout(0.5, seed=3, dtype=dtype), layers.Activation("relu", dtype=dtype),
                  layers.Flatten(dtype=dtype), layers.InputLayer(shape=(5, 3), dtype=dtype)):
        y = layer(conv(x), training=True)
        # an identity's backward returns its argument as given (no kernel reads it)
        out.append((y, np.asarray(layer.backward(conv(_normal(rng, y.shape, dtype))), dtype)))
    return out


@case("pylstm.layers.Conv1D", "pylstm.layers.MaxPooling1D", "pylstm.layers.AveragePooling1D",
      "pylstm.layers.BatchNormalization", "pylstm.layers.LayerNormalization",
      "pylstm.layers.SpatialDropout1D")
def layers_conv_norm(conv, dtype):
    rng = _rng()
    out = []
    x = _normal(rng, (2, 6, 3), dtype)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    for layer in (layers.Conv1D(2, 3, padding="causal", dilation_rate=2, activation="tanh",
                                dtype=dtype),
                  layers.MaxPooling1D(2, padding="same", dtype=dtype),
                  layers.AveragePooling1D(3, strides=1, padding="same", dtype=dtype),
                  layers.BatchNormalization(dtype=dtype), layers.LayerNormalization(dtype=dtype),
                  layers.SpatialDropout1D(0.5, seed=3, dtype=dtype)):
        layer = _built(layer, (None, 6, 3), dtype, conv)
        y = layer(conv(x), training=True, mask=mask)
        out.append((y, layer.backward(conv(_normal(rng, y.shape, dtype))), layer.get_weights()))
    return out


@case("pylstm.layers.Attention", "pylstm.layers.AdditiveAttention")
def layers_attention(conv, dtype):
    rng = _rng()
    out = []
    q, v = _normal(rng, (2, 4, 3), dtype), _normal(rng, (2, 5, 3), dtype)
    mask = [np.array([[True] * 4, [True] * 3 + [False]]),
            np.array([[True] * 5, [True] * 2 + [False] * 3])]
    for layer in (layers.Attention(use_scale=True, score_mode="concat", dtype=dtype),
                  layers.AdditiveAttention(dtype=dtype)):
        layer = _built(layer, [(None, 4, 3), (None, 5, 3), (None, 5, 3)], dtype, conv)
        y = layer([conv(q), conv(v), conv(v)], training=True, mask=mask, use_causal_mask=True,
                  return_attention_scores=True)
        out.append((y, layer.backward([conv(_normal(rng, a.shape, dtype)) for a in y]),
                    layer.compute_mask([conv(q), conv(v)], mask), layer.get_weights()))
    return out


@case("pylstm.layers.Concatenate", "pylstm.layers.Add", "pylstm.layers.Subtract",
      "pylstm.layers.Multiply", "pylstm.layers.Average", "pylstm.layers.Maximum",
      "pylstm.layers.Minimum", "pylstm.layers.Dot", "pylstm.layers.concatenate",
      "pylstm.layers.add", "pylstm.layers.subtract", "pylstm.layers.multiply",
      "pylstm.layers.average", "pylstm.layers.maximum", "pylstm.layers.minimum",
      "pylstm.layers.dot", "pylstm.layers.RepeatVector", "pylstm.layers.Reshape",
      "pylstm.layers.Permute", "pylstm.layers.GlobalAveragePooling1D",
      "pylstm.layers.GlobalMaxPooling1D")
def layers_merge_reshape_pool(conv, dtype):
    rng = _rng()
    out = []
    a, b = _normal(rng, (2, 6, 3), dtype), _normal(rng, (2, 1, 3), dtype)
    mask = [np.array([[True] * 6, [True] * 4 + [False] * 2]), np.ones((2, 1), bool)]
    for layer in (layers.Concatenate(axis=1, dtype=dtype), layers.Add(dtype=dtype),
                  layers.Subtract(dtype=dtype), layers.Multiply(dtype=dtype),
                  layers.Average(dtype=dtype), layers.Maximum(dtype=dtype),
                  layers.Minimum(dtype=dtype), layers.Dot(axes=2, normalize=True, dtype=dtype)):
        y = layer([conv(a), conv(b)], training=True, mask=mask)
        out.append((y, layer.backward(conv(_normal(rng, y.shape, dtype))),
                    layer.compute_mask([conv(a), conv(b)], mask)))
    out.append(layers.concatenate([conv(a), conv(b)], axis=1, dtype=dtype))
    for function in (layers.add, layers.subtract, layers.multiply, layers.average,
                     layers.maximum, layers.minimum, layers.dot):
        out.append(function([conv(a), conv(b)], dtype=dtype))
    for layer, x in ((layers.RepeatVector(3, dtype=dtype), a[:, 0]),
                     (layers.Reshape((-1, 2), dtype=dtype), a),
                     (layers.Permute((2, 1), dtype=dtype), a),
                     (layers.GlobalAveragePooling1D(dtype=dtype), a),
                     (layers.GlobalMaxPooling1D(keepdims=True, dtype=dtype), a)):
        y = layer(conv(x), training=True, mask=mask[0])
        out.append((y, layer.backward(conv(_normal(rng, y.shape, dtype)))))
    return out


@case("pylstm.models.Sequential", "pylstm.Sequential", "pylstm.models.Sequential.predict",
      "pylstm.models.Sequential.fit", "pylstm.models.Sequential.evaluate",
      "pylstm.models.Sequential.train_on_batch", "pylstm.models.Sequential.set_weights",
      "pylstm.models.Sequential.test_on_batch", "pylstm.models.Sequential.predict_on_batch")
def sequential(conv, dtype):
    rng = _rng()
    model = models.Sequential([layers.Input(shape=(5, 3), dtype=dtype),
                               layers.LSTM(4, seed=1, dtype=dtype), layers.Dense(2, dtype=dtype)])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.set_weights([conv(_normal(rng, w.shape, dtype)) for w in model.get_weights()])
    x, y = _normal(rng, (6, 5, 3), dtype), _normal(rng, (6, 2), dtype)
    w = np.abs(_normal(rng, (6,), dtype))
    history = model.fit(conv(x), conv(y), batch_size=4, epochs=2, verbose=0, shuffle=False,
                        sample_weight=conv(w), validation_data=(conv(x), conv(y), conv(w)))
    return [history.history, model.evaluate(conv(x), conv(y), verbose=0),
            model.evaluate(conv(x), conv(y), sample_weight=conv(w), verbose=0),
            model.predict(conv(x), verbose=0), model(conv(x)),
            model.train_on_batch(conv(x), conv(y), sample_weight=conv(w)),
            model.test_on_batch(conv(x), conv(y), sample_weight=conv(w)),
            model.predict_on_batch(conv(x)), model.get_weights()]


@case("pylstm.models.Model", "pylstm.models.Functional", "pylstm.Model")
def functional(conv, dtype):
    rng = _rng()
    source = layers.Input(shape=(5, 3), dtype=dtype)
    target = layers.Input(shape=(4, 2), dtype=dtype)
    _, h, c = layers.LSTM(4, return_state=True, seed=1, dtype=dtype)(source)
    decoded = layers.LSTM(4, seed=2, dtype=dtype)(target, initial_state=[h, c])
    model = models.Model([source, target], layers.Dense(2, dtype=dtype)(decoded))
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    model.set_weights([conv(_normal(rng, w.shape, dtype)) for w in model.get_weights()])
    xs = [_normal(rng, (6, 5, 3), dtype), _normal(rng, (6, 4, 2), dtype)]
    y = _normal(rng, (6, 2), dtype)
    history = model.fit([conv(x) for x in xs], conv(y), batch_size=4, epochs=2, verbose=0,
                        shuffle=False)
    out = model([conv(x) for x in xs], training=True)
    d_inputs = model.backward(conv(_normal(rng, out.shape, dtype)))
    return [history.history, model.predict([conv(x) for x in xs]), out, d_inputs,
            model.get_weights()]


@case("pylstm.nn.LSTM", "pylstm.nn.LSTM.forward", "pylstm.nn.LSTM.backward",
      "pylstm.nn.LSTM.load_state_dict", "pylstm.nn.LSTM.as_layer", "pylstm.nn.LSTMLayer")
def nn_lstm(conv, dtype):
    rng = _rng()
    out = []
    for kwargs in ({}, {"num_layers": 2, "bidirectional": True, "batch_first": True},
                   {"proj_size": 2}):
        lstm = nn.LSTM(3, 4, dtype=dtype, seed=0, **kwargs)
        lstm.load_state_dict({k: conv(_normal(rng, v.shape, dtype))
                              for k, v in lstm.state_dict().items()})
        x = _normal(rng, (2, 5, 3) if lstm.batch_first else (5, 2, 3), dtype)
        L = lstm.num_layers * lstm.num_directions
        hx = (conv(_normal(rng, (L, 2, lstm.output_size), dtype)),
              conv(_normal(rng, (L, 2, 4), dtype)))
        y, (h, c) = lstm.train()(conv(x), hx)
        grads = lstm.backward(conv(_normal(rng, y.shape, dtype)), conv(_normal(rng, h.shape, dtype)),
                              conv(_normal(rng, c.shape, dtype)), return_hx_grad=True)
        out.append((y, h, c, grads, [p.grad for p in lstm.parameters()]))
        out.append(lstm.eval()(conv(x[0] if lstm.batch_first else x[:, 0])))
        out.append(lstm(conv(x), lengths=conv(np.array([5, 2], dtype=np.int64))))
        packed = rnn.pack_padded_sequence(conv(x), conv(np.array([3, 5], dtype=np.int64)),
                                          batch_first=lstm.batch_first, enforce_sorted=False)
        packed = rnn.PackedSequence(*[conv(f) for f in packed])
        out.append(lstm(packed, hx))
    layer = _built(nn.LSTM(3, 4, dtype=dtype, seed=0).as_layer(return_sequences=False),
                   (None, 5, 3), dtype, conv)
    y = layer(conv(_normal(rng, (2, 5, 3), dtype)), training=True)
    out.append((y, layer.backward(conv(_normal(rng, y.shape, dtype)))))
    return out


@case("pylstm.nn.LSTM.step", "pylstm.nn.LSTM.initial_state", "pylstm.nn.LSTMStepState",
      "pylstm.nn.LSTMStepState.from_dict")
def nn_lstm_step(conv, dtype):
    rng = _rng()
    lstm = nn.LSTM(3, 4, num_layers=2, dtype=dtype, seed=0).eval()
    lstm.load_state_dict({k: conv(_normal(rng, v.shape, dtype))
                          for k, v in lstm.state_dict().items()})
    out = []
    state = nn.LSTMStepState.from_dict({"h": conv(_normal(rng, (2, 2, 4), dtype)),
                                        "c": conv(_normal(rng, (2, 2, 4), dtype))})
    for _ in range(3):
        y, state = lstm.step(conv(_normal(rng, (2, 3), dtype)), state)
        out.append((y, state))
    hx = (conv(_normal(rng, (2, 4), dtype)), conv(_normal(rng, (2, 4), dtype)))
    out.append(lstm.step(conv(_normal(rng, (3,), dtype)), hx))
    return out


@case("pylstm.nn.LSTMCell", "pylstm.nn.LSTMCell.backward")
def nn_cell(conv, dtype):
    rng = _rng()
    cell = nn.LSTMCell(3, 4, dtype=dtype, seed=0)
    cell.load_state_dict({k: conv(_normal(rng, v.shape, dtype))
                          for k, v in cell.state_dict().items()})
    x = _normal(rng, (2, 3), dtype)
    hx = (conv(_normal(rng, (2, 4), dtype)), conv(_normal(rng, (2, 4), dtype)))
    out = [cell.eval()(conv(x), hx), cell.eval()(conv(x[0]))]
    h, c = cell.train()(conv(x), hx)
    out.append((h, c, cell.backward(conv(_normal(rng, h.shape, dtype)),
                                    conv(_normal(rng, c.shape, dtype)))))
    return out


@case("pylstm.nn.utils.rnn.pack_padded_sequence", "pylstm.nn.utils.rnn.pad_packed_sequence",
      "pylstm.nn.utils.rnn.PackedSequence", "pylstm.nn.utils.rnn.pad_sequence",
      "pylstm.nn.utils.rnn.pack_sequence")
def packed_sequences(conv, dtype):
    rng = _rng()
    x = _normal(rng, (4, 3, 2), dtype)
    out = []
    for sort in (True, False):
        lengths = np.array([4, 3, 1] if sort else [1, 4, 3], dtype=np.int64)
        packed = rnn.pack_padded_sequence(conv(x), conv(lengths), enforce_sorted=sort)
        out.append(tuple(packed))
        fields = rnn.PackedSequence(*[conv(f) for f in packed])
        out.append(rnn.pad_packed_sequence(fields, batch_first=True, total_length=5))
    seqs = [conv(_normal(rng, (n, 2), dtype)) for n in (3, 1, 2)]
    out.append(rnn.pad_sequence(seqs, batch_first=True, padding_side="left"))
    out.append(tuple(rnn.pack_sequence(seqs, enforce_sorted=False)))
    return out


@case("pylstm.losses.Loss", "pylstm.losses.MeanSquaredError", "pylstm.losses.MeanAbsoluteError",
      "pylstm.losses.BinaryCrossentropy", "pylstm.losses.CategoricalCrossentropy",
      "pylstm.losses.SparseCategoricalCrossentropy", "pylstm.losses.get")
def loss_functions(conv, dtype):
    rng = _rng()
    pred = rng.random((3, 4, 5)).astype(dtype) * 0.9 + 0.05
    onehot = np.eye(5, dtype=dtype)[rng.integers(0, 5, (3, 4))]
    weight = rng.random((3, 4)).astype(dtype)
    out = []
    for loss, target in ((losses.MeanSquaredError(), onehot), (losses.MeanAbsoluteError(), onehot),
                         (losses.BinaryCrossentropy(), onehot),
                         (losses.BinaryCrossentropy(from_logits=True), onehot),
                         (losses.CategoricalCrossentropy(), onehot),
                         (losses.CategoricalCrossentropy(from_logits=True), onehot),
                         (losses.SparseCategoricalCrossentropy(), onehot.argmax(-1)),
                         (losses.get("mse"), onehot)):
        out.append((loss(conv(target), conv(pred)),
                    loss.value_and_gradient(conv(target), conv(pred), conv(weight)),
                    loss.gradient(conv(target), conv(pred))))
    return out


@case("pylstm.losses.Huber", "pylstm.losses.LogCosh", "pylstm.losses.MeanAbsolutePercentageError",
      "pylstm.losses.MeanSquaredLogarithmicError", "pylstm.losses.KLDivergence",
      "pylstm.losses.Poisson", "pylstm.losses.CosineSimilarity", "pylstm.losses.Hinge",
      "pylstm.losses.SquaredHinge", "pylstm.losses.CategoricalHinge")
def keras_losses(conv, dtype):
    rng = _rng()
    pred = rng.random((3, 4, 5)).astype(dtype) * 0.9 + 0.05
    target = np.eye(5, dtype=dtype)[rng.integers(0, 5, (3, 4))]
    weight = rng.random((3, 4)).astype(dtype)
    mask = rng.random((3, 4)) > 0.3
    return [(loss(conv(target), conv(pred)),
             loss.value_and_gradient(conv(target), conv(pred), conv(weight), conv(mask)))
            for loss in (losses.Huber(0.3), losses.LogCosh(), losses.MeanAbsolutePercentageError(),
                         losses.MeanSquaredLogarithmicError(), losses.KLDivergence(),
                         losses.Poisson(), losses.CosineSimilarity(), losses.Hinge(),
                         losses.SquaredHinge(), losses.CategoricalHinge())]


@case(*(f"pylstm.metrics.{name}" for name in (
    "Metric", "Mean", "MeanMetricWrapper", "MeanSquaredError", "MeanAbsoluteError",
    "RootMeanSquaredError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError",
    "LogCoshError", "CosineSimilarity", "R2Score", "Precision", "Recall", "AUC", "Accuracy",
    "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "KLDivergence", "Poisson",
    "Hinge", "SquaredHinge", "CategoricalHinge", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "equal_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy")))
def metric_objects(conv, dtype):
    rng = _rng()
    pred = rng.random((6, 3)).astype(dtype)
    onehot = np.eye(3, dtype=dtype)[rng.integers(0, 3, 6)]
    weight = rng.random(6).astype(dtype)
    out = []
    for metric, target in (
            (metrics.Mean(), None), (metrics.MeanMetricWrapper(metrics.mean_squared_error), onehot),
            (metrics.RootMeanSquaredError(), onehot), (metrics.R2Score(), onehot),
            (metrics.Precision(thresholds=[0.3, 0.6]), onehot), (metrics.Recall(top_k=2), onehot),
            (metrics.AUC(), onehot), (metrics.AUC(curve="PR", multi_label=True), onehot),
            (metrics.Accuracy(), onehot), (metrics.TopKCategoricalAccuracy(k=2), onehot),
            (metrics.SparseTopKCategoricalAccuracy(k=2), onehot.argmax(-1)),
            (metrics.SparseCategoricalCrossentropy(), onehot.argmax(-1)),
            *((cls(), onehot) for cls in (
                metrics.MeanSquaredError, metrics.MeanAbsoluteError,
                metrics.MeanAbsolutePercentageError, metrics.MeanSquaredLogarithmicError,
                metrics.LogCoshError, metrics.CosineSimilarity, metrics.BinaryAccuracy,
                metrics.CategoricalAccuracy, metrics.SparseCategoricalAccuracy,
                metrics.KLDivergence, metrics.Poisson, metrics.Hinge, metrics.SquaredHinge,
                metrics.CategoricalHinge, metrics.BinaryCrossentropy,
                metrics.CategoricalCrossentropy))):
        if target is None:
            metric.update_state(conv(pred), sample_weight=conv(weight))
        else:
            metric.update_state(conv(target), conv(pred), sample_weight=conv(weight))
            metric.update_state(conv(target), conv(pred))
        out.append(metric.result())
    out.append([fn(conv(onehot), conv(pred)) for fn in (
        metrics.equal_accuracy, metrics.top_k_categorical_accuracy)])
    out.append(metrics.sparse_top_k_categorical_accuracy(conv(onehot.argmax(-1)), conv(pred), 2))
    return out


@case("pylstm.metrics.accuracy", "pylstm.metrics.binary_accuracy",
      "pylstm.metrics.categorical_accuracy", "pylstm.metrics.sparse_categorical_accuracy",
      "pylstm.metrics.mean_absolute_error", "pylstm.metrics.mean_squared_error",
      "pylstm.metrics.get")
def metric_functions(conv, dtype):
    rng = _rng()
    pred = rng.random((6, 3)).astype(dtype)
    onehot = np.eye(3, dtype=dtype)[rng.integers(0, 3, 6)]
    return [metrics.get(name)(conv(target), conv(pred)) for name, target in (
        ("accuracy", onehot), ("binary_accuracy", onehot), ("categorical_accuracy", onehot),
        ("sparse_categorical_accuracy", onehot.argmax(-1)), ("mean_absolute_error", onehot),
        ("mean_squared_error", onehot))]


@case("pylstm.optimizers.Optimizer", "pylstm.optimizers.SGD", "pylstm.optimizers.Adam",
      "pylstm.optimizers.RMSprop", "pylstm.optimizers.get", "pylstm.optimizers.AdamW",
      "pylstm.optimizers.Adamax", "pylstm.optimizers.Nadam", "pylstm.optimizers.Adagrad",
      "pylstm.optimizers.Adadelta", "pylstm.optimizers.Lion")
def optimizer_steps(conv, dtype):
    rng = _rng()
    out = []
    for opt in (optimizers.SGD(0.1, momentum=0.9, nesterov=True), optimizers.Adam(0.01),
                optimizers.RMSprop(0.01, clipnorm=1.0), optimizers.get("sgd"),
                optimizers.AdamW(0.01, use_ema=True), optimizers.Adamax(0.01),
                optimizers.Nadam(0.01, gradient_accumulation_steps=2),
                optimizers.Adagrad(0.01), optimizers.Adadelta(1.0), optimizers.Lion(0.01)):
        var = layers.Variable("w", conv(_normal(rng, (3, 4), dtype)))
        for _ in range(3):
            var.grad = conv(_normal(rng, (3, 4), dtype))
            opt.apply([var])
        out.append(np.asarray(var.value, dtype=dtype))
    return out


@case("pylstm.optim.Optimizer", "pylstm.optim.SGD", "pylstm.optim.Adam", "pylstm.optim.AdamW",
      "pylstm.optim.RMSprop")
def optim_steps(conv, dtype):
    rng = _rng()
    out = []
    for make in (lambda p: pylstm.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                 lambda p: pylstm.optim.Adam(p, amsgrad=True), pylstm.optim.AdamW,
                 lambda p: pylstm.optim.RMSprop(p, centered=True, momentum=0.5)):
        var = layers.Variable("w", conv(_normal(rng, (3, 4), dtype)))
        opt = make([var])
        for _ in range(3):
            var.grad = conv(_normal(rng, (3, 4), dtype))
            opt.step()
        out.append(np.asarray(var.value, dtype=dtype))
    return out


@case("pylstm.activations.elu", "pylstm.activations.exponential",
      "pylstm.activations.hard_sigmoid", "pylstm.activations.legacy_hard_sigmoid",
      "pylstm.activations.linear", "pylstm.activations.relu", "pylstm.activations.selu",
      "pylstm.activations.sigmoid", "pylstm.activations.silu", "pylstm.activations.softmax",
      "pylstm.activations.softplus", "pylstm.activations.softsign", "pylstm.activations.swish",
      "pylstm.activations.tanh", "pylstm.activations.get")
def activation_functions(conv, dtype):
    rng = _rng()
    x, g = _normal(rng, (3, 5), dtype, 2.0), _normal(rng, (3, 5), dtype)
    out = []
    for name in ("elu", "exponential", "hard_sigmoid", "legacy_hard_sigmoid", "linear", "relu",
                 "selu", "sigmoid", "silu", "softmax", "softplus", "softsign", "swish", "tanh"):
        fn = activations.get(name)
        y = fn(conv(x))
        out.append((y, fn.backward(conv(x), conv(np.asarray(y, dtype=dtype)), conv(g))))
    return out


@case("pylstm.regularizers.Regularizer", "pylstm.regularizers.L1", "pylstm.regularizers.L2",
      "pylstm.regularizers.L1L2", "pylstm.regularizers.OrthogonalRegularizer",
      "pylstm.regularizers.l1", "pylstm.regularizers.l2", "pylstm.regularizers.l1_l2",
      "pylstm.regularizers.orthogonal_regularizer", "pylstm.regularizers.get",
      "pylstm.constraints.Constraint", "pylstm.constraints.MaxNorm",
      "pylstm.constraints.MinMaxNorm", "pylstm.constraints.NonNeg", "pylstm.constraints.UnitNorm",
      "pylstm.constraints.max_norm", "pylstm.constraints.min_max_norm",
      "pylstm.constraints.non_neg", "pylstm.constraints.unit_norm", "pylstm.constraints.get")
def regularizers_and_constraints(conv, dtype):
    rng = _rng()
    w = _normal(rng, (4, 6), dtype)
    out = []
    for reg in (regularizers.L1(0.1), regularizers.L2(0.1), regularizers.L1L2(0.1, 0.2),
                regularizers.OrthogonalRegularizer(0.1), regularizers.get("l2")):
        out.append((reg(conv(w)), reg.gradient(conv(w))))
    for con in (constraints.MaxNorm(0.5), constraints.MinMaxNorm(0.1, 0.5), constraints.NonNeg(),
                constraints.UnitNorm(), constraints.get("non_neg")):
        out.append(np.asarray(con(conv(w)), dtype=dtype))
    return out


@case("pylstm.utils.pad_sequences", "pylstm.utils.to_categorical",
      "pylstm.utils.timeseries_dataset_from_array", "pylstm.utils.TimeseriesDataset")
def utils_arrays(conv, dtype):
    rng = _rng()
    sequences = [conv(_normal(rng, (n, 2), dtype)) for n in (3, 1, 5)]
    ids = conv(np.array([[2], [0], [1], [2]], dtype=np.int64))
    series, targets = conv(_normal(rng, (20, 2), dtype)), conv(_normal(rng, (20,), dtype))
    utils = pylstm.utils
    return [utils.pad_sequences(sequences, maxlen=4, dtype=dtype),
            utils.pad_sequences(sequences, dtype=dtype, padding="post", truncating="post"),
            utils.to_categorical(ids), utils.to_categorical(ids[:, 0], num_classes=5),
            list(utils.timeseries_dataset_from_array(series, targets, 4, sampling_rate=2,
                                                     batch_size=3)),
            list(utils.timeseries_dataset_from_array(series, None, 3, batch_size=None,
                                                     shuffle=True, seed=1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_non_native_inputs_give_the_native_results(name, dtype):
    expected = CASES[name](native, dtype)
    got = CASES[name](swapped, dtype)
    # Plain NumPy functions may return their input's order (as NumPy does): same values.
    assert_bitwise_same(got, expected, check_native=name not in NUMPY_ONLY)


# Cases whose entry points are plain NumPy code (no compiled kernel reads their arrays).
NUMPY_ONLY = {"activation_functions", "regularizers_and_constraints", "metric_functions",
              "optimizer_steps", "loss_functions", "keras_losses", "metric_objects"}


def test_big_endian_weights_on_the_small_call_path():
    """The audit's case: one step of a batch of one (`_core.forward_small`) gave garbage."""
    w = _weights("float32", D=3, H=2)
    x = np.array([[[0.5, -1.0, 0.25]]], dtype="float32")
    expected = ops.lstm_forward(x, w["kernel"], w["recurrent_kernel"])[0]
    for order in (">", "<"):
        got = ops.lstm_forward(x.astype(order + "f4"), w["kernel"].astype(order + "f4"),
                               w["recurrent_kernel"].astype(order + "f4"))[0]
        assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


def _stepper_and_state(dtype):
    w = _weights(dtype)
    stepper = streaming.LSTMStepper(w["kernel"], w["recurrent_kernel"], w["bias"])
    return stepper, stepper.initial_state(2), np.ones((2, 3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_native_destinations_are_refused(dtype):
    stepper, state, x = _stepper_and_state(dtype)
    out_be = swapped(np.zeros((2, 4), dtype))
    with pytest.raises(TypeError, match="`out`.*byte order"):
        stepper.step(x, state, out=out_be)
    with pytest.raises(TypeError, match="`out`.*byte order"):
        streaming.lstm_step(x, state, *(_weights(dtype)[k] for k in ("kernel", "recurrent_kernel")),
                            out=out_be)
    lstm = layers.LSTM(4, dtype=dtype)
    lstm.build((None, None, 3))
    with pytest.raises(TypeError, match="`out`.*byte order"):
        lstm.step(x, lstm.initial_state(2), out=out_be)
    module = nn.LSTM(3, 4, dtype=dtype).eval()
    with pytest.raises(TypeError, match="`out`.*byte order"):
        module.step(x, out=out_be)
    assert not out_be.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_states_given_in_non_native_order_are_copied(dtype):
    """A state is written in place by steps: one made from non-native arrays holds native
    copies (the caller's arrays are never written in their order's misreading)."""
    h, c = swapped(np.ones((2, 4), dtype)), swapped(np.ones((2, 4), dtype))
    state = streaming.LSTMState(h, c)
    assert state.h.dtype.isnative and state.c.dtype.isnative
    assert state.h is not h and np.array_equal(state.h, h)
    stepper, _, x = _stepper_and_state(dtype)
    stepper.step(x, state, new_state=state)
    assert np.array_equal(h, np.ones((2, 4))) and np.array_equal(c, np.ones((2, 4)))


# Public names that take no array (or only file paths, configs and sizes), so that byte order
# cannot reach them; each is listed with the reason.
NO_ARRAYS = {
    "pylstm.callbacks.*": "hooks called with logs dicts of floats; files by path",
    "pylstm.datasets.*": "loaders of embedded data; take names and sizes",
    "pylstm.initializers.*": "take shapes and dtypes, produce native arrays",
    "pylstm.activations.serialize": "config", "pylstm.activations.deserialize": "config",
    "pylstm.constraints.serialize": "config", "pylstm.constraints.deserialize": "config",
    "pylstm.regularizers.serialize": "config", "pylstm.regularizers.deserialize": "config",
    "pylstm.losses.serialize": "config", "pylstm.losses.deserialize": "config",
    "pylstm.metrics.serialize": "config", "pylstm.metrics.deserialize": "config",
    "pylstm.metrics.made_from_name": "a name and a metric's config",
    "pylstm.metrics.clone": "copies a metric's native state",
    "pylstm.optimizers.serialize": "config", "pylstm.optimizers.deserialize": "config",
    "pylstm.layers.serialize": "config", "pylstm.layers.deserialize": "config",
    "pylstm.layers.KerasTensor": "symbolic: a shape and a dtype, no data",
    "pylstm.models.load_model": "file (tests/files/test_hostile_files.py and the loaders' tests)",
    "pylstm.models.save_model": "saves a model's native weights",
    "pylstm.models.load_keras": "file", "pylstm.models.load_keras_weights": "file",
    "pylstm.models.model_from_json": "a JSON string",
    "pylstm.models.save_keras": "saves a model's native weights",
    "pylstm.models.save_keras_weights": "saves a model's native weights",
    "pylstm.models.save_legacy_h5": "saves a model's native weights",
    "pylstm.nn.IncompatibleKeys": "a named tuple of key lists",
    "pylstm.nn.save_state_dict_file": "files/test_byte_order_files.py (needs safetensors, torch)",
    "pylstm.nn.load_state_dict_file": "files/test_byte_order_files.py (needs safetensors, torch)",
    "pylstm.ops.BlasThreads": "thread settings", "pylstm.ops.get_num_threads": "thread settings",
    "pylstm.ops.set_num_threads": "thread settings",
    "pylstm.ops.explain": "shapes and options (lengths and batch sizes: integers)",
    "pylstm.utils.*": ("random generators from seeds; PyDataset, a base class (the array "
                       "utilities are swept: utils_arrays)"),
    "pylstm.get_num_threads": "thread settings", "pylstm.set_num_threads": "thread settings",
    "pylstm.get_memory_pool_limit": "memory settings",
    "pylstm.set_memory_pool_limit": "memory settings", "pylstm.memory_pool_idle": "memory",
    "pylstm.show_config": "prints the configuration",
    "pylstm.__version__": "a string",
}


def _public_names():
    """`module.name` of every public function and class of pylstm's public modules."""
    modules = [pylstm] + [getattr(pylstm, n) for n in pylstm.__all__
                          if isinstance(getattr(pylstm, n), types.ModuleType)]
    modules += [nn.utils, rnn]
    names = set()
    for module in modules:
        listed = getattr(module, "__all__", None) or [n for n in dir(module)
                                                      if not n.startswith("_")]
        for name in listed:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                continue
            home = getattr(value, "__module__", module.__name__) or ""
            if not (inspect.isclass(value) or callable(value) or name == "__version__"):
                continue
            if not home.startswith("pylstm"):
                continue     # NumPy, functools and the like, imported for internal use
            if module is ops and name in ("as_float_array", "check_array", "check_weight",
                                          "check_finite"):
                continue     # pylstm._validation's helpers, imported for internal use
            if module is streaming and name.startswith("check_"):
                continue
            names.add(f"{module.__name__}.{name}")
    return names


def test_every_public_entry_point_is_swept():
    exempt = {n for n in NO_ARRAYS if not n.endswith(".*")}
    exempt_modules = tuple(n[:-1] for n in NO_ARRAYS if n.endswith(".*"))
    missing = sorted(n for n in _public_names()
                     if n not in COVERED and n not in exempt and not n.startswith(exempt_modules))
    assert not missing, f"public entry points not swept with non-native arrays: {missing}"
