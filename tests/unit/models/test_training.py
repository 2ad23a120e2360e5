"""`pylstm.models._training.Trainer` with several inputs and outputs, on a small model that
implements the flat training interface by hand (two inputs, two Dense heads), so that the
plumbing is tested apart from the functional graph: inputs and targets as lists, tuples and
dicts, per-output losses, loss weights and metrics with Keras 3's log names, masks as sample
weights, integer inputs, and the errors that name what is wrong.

Legend: N samples, T timesteps, D1/D2 input features, K1/K2 output units.
"""

import numpy as np
import pytest

from pylstm import losses, optimizers
from pylstm.layers import Dense
from pylstm.models._training import Trainer

N, T, D1, D2, K1, K2 = 12, 4, 3, 2, 1, 3


class TwoHeads(Trainer):
    """`out1 = Dense(K1)(a)` and `out2 = Dense(K2, softmax)(b)`; with `sequences`, `a` is
    `(N, T, D1)` and `out1` `(N, T, K1)` masked where `a[..., 0] == 0`; `b` may be integer."""

    input_names = ["a", "b"]
    output_names = ["out1", "out2"]

    def __init__(self, sequences=False, b_dtype="float64"):
        self.dtype = "float64"
        self.head1 = Dense(K1, dtype="float64", kernel_initializer="glorot_uniform")
        self.head2 = Dense(K2, activation="softmax", dtype="float64")
        self.sequences = sequences
        self._input_dtypes = [np.dtype("float64"), np.dtype(b_dtype)]
        self.built = False

    def _ensure_built_flat(self, shapes):
        if not self.built:
            self.head1.build(shapes[0])
            self.head2.build(shapes[1])
            rng = np.random.default_rng(1)
            for v in self.weights:
                v.value[...] = rng.normal(size=v.value.shape)
            self.built = True

    def _forward_flat(self, xs, training):
        mask = (xs[0][..., 0] != 0) if self.sequences else None
        return ([self.head1(xs[0], training=training),
                 self.head2(xs[1].astype("float64"), training=training)], [mask, None])

    def _backward_flat(self, grads):
        for head, grad in zip((self.head1, self.head2), grads):
            if grad is not None:
                head.backward_with_penalties(grad)

    @property
    def weights(self):
        return self.head1.weights + self.head2.weights

    @property
    def trainable_variables(self):
        return self.head1.trainable_variables + self.head2.trainable_variables

    @property
    def losses(self):
        return self.head1.losses + self.head2.losses

    def get_weights(self):
        return [v.value.copy() for v in self.weights]


def data(sequences=False, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(N, T, D1) if sequences else (N, D1))
    if sequences:
        a[::3, T - 2:] = 0  # padding, masked in out1
    b = rng.normal(size=(N, D2))
    y1 = rng.normal(size=(N, T, K1) if sequences else (N, K1))
    y2 = rng.integers(0, K2, size=(N,))
    return a, b, y1, y2


def compiled(loss=("mse", "sparse_categorical_crossentropy"), lr=0.1, **kwargs):
    model = TwoHeads(**kwargs.pop("model", {}))
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss=list(loss), **kwargs)
    return model


def test_log_names_as_keras_3():
    # Keras 3.15 on the same two-output model: fit's history keys and evaluate's order.
    a, b, y1, y2 = data()
    model = compiled(metrics=["mae", "accuracy"], loss_weights=[0.5, 2.0])
    history = model.fit([a, b], [y1, y2], epochs=1, batch_size=5, validation_split=0.25,
                        verbose=0)
    names = ["loss", "out1_loss", "out2_loss", "out1_mae", "out2_accuracy"]
    assert list(history.history) == names + [f"val_{n}" for n in names]
    result = model.evaluate([a, b], [y1, y2], verbose=0, return_dict=True)
    assert list(result) == names
    assert model.evaluate([a, b], [y1, y2], verbose=0) == list(result.values())


def test_metric_names_per_output_and_repeated():
    a, b, y1, y2 = data()
    model = compiled(metrics={"out2": ["accuracy", "accuracy"]})
    assert list(model.evaluate([a, b], [y1, y2], verbose=0, return_dict=True)) == [
        "loss", "out1_loss", "out2_loss", "out2_accuracy", "out2_accuracy_1"]
    model = compiled(metrics=[["mae", "mse"], None])
    assert list(model.evaluate([a, b], [y1, y2], verbose=0, return_dict=True)) == [
        "loss", "out1_loss", "out2_loss", "out1_mae", "out1_mse"]


def test_total_loss_is_the_weighted_sum_and_outputs_unweighted():
    a, b, y1, y2 = data()
    model = compiled(loss_weights={"out1": 0.5, "out2": 2.0})
    model._ensure_built_flat([a.shape, b.shape])
    p1, p2 = model.predict({"a": a, "b": b})
    l1 = losses.get("mse")(y1, p1)
    l2 = losses.get("sparse_categorical_crossentropy")(y2, p2)
    loss, out1, out2 = model.evaluate([a, b], [y1, y2], batch_size=N, verbose=0)
    assert (out1, out2) == pytest.approx((l1, l2), rel=1e-12)
    assert loss == pytest.approx(0.5 * l1 + 2.0 * l2, rel=1e-12)
    assert model.compute_loss([y1, y2], [p1, p2]) == pytest.approx(loss, rel=1e-12)


def test_step_follows_the_gradient_of_the_weighted_loss():
    """One SGD step moves each weight by `-lr` times the central difference of the weighted
    total loss (float64)."""
    a, b, y1, y2 = data(seed=2)
    lr = 1e-3
    model = compiled(loss_weights=[0.3, 1.7], lr=lr)
    model._ensure_built_flat([a.shape, b.shape])
    before = model.get_weights()
    p1, p2 = model.predict_on_batch([a, b])

    def total():
        return model.compute_loss([y1, y2], model.predict_on_batch([a, b]))

    expected = []
    for v in model.weights:
        grad = np.zeros_like(v.value)
        for i in np.ndindex(v.value.shape):
            saved = v.value[i]
            v.value[i] = saved + 1e-6
            up = total()
            v.value[i] = saved - 1e-6
            down = total()
            v.value[i] = saved
            grad[i] = (up - down) / 2e-6
        expected.append(grad)
    total_before = total()
    loss, loss1, loss2 = model.train_on_batch([a, b], [y1, y2])
    assert loss == pytest.approx(total_before, rel=1e-12)
    assert [loss1, loss2] == pytest.approx(
        [model.loss[0](y1, p1), model.loss[1](y2, p2)], rel=1e-12)
    for w0, w1, g in zip(before, model.get_weights(), expected):
        np.testing.assert_allclose((w0 - w1) / lr, g, rtol=1e-5, atol=1e-8)


def test_output_without_a_loss_is_not_trained():
    a, b, y1, y2 = data()
    model = compiled(loss=["mse", None])
    model._ensure_built_flat([a.shape, b.shape])
    before = model.get_weights()
    history = model.fit([a, b], [y1, y2], epochs=2, verbose=0)
    assert list(history.history) == ["loss"]  # Keras logs outputs' losses only for several
    after = model.get_weights()
    assert not np.allclose(before[0], after[0])
    np.testing.assert_array_equal(before[2], after[2])
    np.testing.assert_array_equal(before[3], after[3])


@pytest.mark.parametrize("form", ["list", "tuple", "dict"])
def test_inputs_and_targets_as_lists_tuples_or_dicts(form):
    a, b, y1, y2 = data()
    pack = {"list": lambda u, v, names: [u, v], "tuple": lambda u, v, names: (u, v),
            "dict": lambda u, v, names: dict(zip(names, (u, v)))}[form]
    results = []
    for x, y in (([a, b], [y1, y2]), (pack(a, b, ["a", "b"]), pack(y1, y2, ["out1", "out2"]))):
        model = compiled(metrics=["mae", "accuracy"])
        history = model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0,
                            validation_data=(x, y))
        results.append((history.history, model.predict(x), model.get_weights()))
    assert results[0][0] == results[1][0]
    for u, v in zip(results[0][1] + results[0][2], results[1][1] + results[1][2]):
        np.testing.assert_array_equal(u, v)


def test_dict_keys_and_sample_counts_are_checked():
    a, b, y1, y2 = data()
    model = compiled()
    with pytest.raises(ValueError, match=r"`x` is a dict with missing keys \['b'\]; the "
                                         r"model's input names are \['a', 'b'\]"):
        model.fit({"a": a}, [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"`y` is a dict with unknown keys \['out3'\]"):
        model.fit([a, b], {"out1": y1, "out2": y2, "out3": y2}, verbose=0)
    with pytest.raises(ValueError, match=r"`x\[0\]`, `x\[1\]`, `y\[0\]` and `y\[1\]` must have "
                                         r"the same number of samples, received 12, 11, 12 "
                                         r"and 12"):
        model.fit([a, b[:-1]], [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"`x` must hold 2 arrays, one per input"):
        model.predict([a])
    with pytest.raises(ValueError, match=r"`x` must be a list \(in input order\) or a dict"):
        model.predict(a)
    with pytest.raises(ValueError, match=r"`x\['b'\]` contains NaN"):
        model.evaluate({"a": a, "b": b * np.nan}, [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data\[1\]\[1\]` must hold at least one"):
        model.fit([a, b], [y1, y2], validation_data=([a, b], [y1, y2[:0]]), verbose=0)


def test_compile_arguments_are_checked():
    a, b, y1, y2 = data()
    model = TwoHeads()
    with pytest.raises(ValueError, match=r"`loss` is a dict with missing keys \['out2'\]"):
        model.compile("sgd", loss={"out1": "mse"})
        model.fit([a, b], [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"`loss` must have one entry per output \(2: "):
        model.compile("sgd", loss=["mse"])
        model.fit([a, b], [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"received no loss for any of the outputs"):
        model.compile("sgd", loss=[None, None])
        model.fit([a, b], [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"`metrics` must have one entry per output"):
        model.compile("sgd", loss="mse", metrics=["mae"])  # Keras 3 refuses it too
        model.evaluate([a, b], [y1, y2], verbose=0)
    with pytest.raises(ValueError, match=r"`loss_weights` is a dict with unknown keys \['x'\]"):
        model.compile("sgd", loss="mse", loss_weights={"x": 1.0, "out1": 1.0, "out2": 1.0})
        model.evaluate([a, b], [y1, y2], verbose=0)
    with pytest.raises(TypeError, match=r"`loss_weights` must be a float, or a list or dict"):
        model.compile("sgd", loss="mse", loss_weights=["1", 2])
    with pytest.raises(TypeError, match=r"`metrics` must hold metric names or callables"):
        model.compile("sgd", loss="mse", metrics=[[3], None])
    with pytest.raises(ValueError, match=r"Unknown loss"):
        model.compile("sgd", loss={"out1": "mse", "out2": "nope"})


def test_one_loss_and_weight_for_every_output():
    a, b, y1, y2 = data()
    y2 = np.eye(K2)[y2]
    model = TwoHeads()
    model.compile(optimizers.SGD(0.1), loss="mse", loss_weights=0.5)
    loss, out1, out2 = model.evaluate([a, b], [y1, y2], batch_size=N, verbose=0)
    assert loss == pytest.approx(0.5 * (out1 + out2), rel=1e-12)


def test_output_masks_weight_their_loss_and_metrics():
    a, b, y1, y2 = data(sequences=True)
    model = compiled(model={"sequences": True}, metrics=[["mae"], None])
    model._ensure_built_flat([a.shape, b.shape])
    p1 = model.predict([a, b])[0]
    mask = a[..., 0] != 0
    assert not mask.all()
    _, out1, _, mae = model.evaluate([a, b], [y1, y2], batch_size=5, verbose=0)
    # Each batch's loss is its own masked mean (Keras's apply_mask); a metric, as Keras's Mean,
    # averages over every unmasked value of the whole epoch.
    batch_losses = [losses.get("mse")(y1[s:s + 5], p1[s:s + 5], sample_weight=mask[s:s + 5])
                    for s in range(0, N, 5)]
    assert out1 == pytest.approx(np.average(batch_losses, weights=[5, 5, 2]), rel=1e-12)
    assert mae == pytest.approx(np.abs(y1 - p1)[..., 0][mask].mean(), rel=1e-12)
    assert mae != pytest.approx(np.abs(y1 - p1).mean(), rel=1e-3)


def test_integer_inputs_stay_integers():
    a, b, y1, y2 = data()
    ids = np.arange(N * D2).reshape(N, D2) % 5
    model = compiled(model={"b_dtype": "int64"})
    seen = []
    forward = model._forward_flat
    model._forward_flat = lambda xs, training: seen.append(xs[1].dtype) or forward(xs, training)
    model.fit([a, ids.astype("int32")], [y1, y2], verbose=0)
    model.predict([a, ids.astype("float32")])
    assert set(seen) == {np.dtype("int64")}
    with pytest.raises(ValueError, match=r"`x\[1\]` feeds an input of dtype int64 and must hold "
                                         r"integers"):
        model.predict([a, ids + 0.5])


def test_single_output_predict_is_an_array_and_several_a_list():
    a, b, _, _ = data()
    model = compiled()
    out = model.predict({"b": b, "a": a})
    assert isinstance(out, list) and [o.shape for o in out] == [(N, K1), (N, K2)]


def test_sequential_takes_dicts_by_its_input_and_output_names():
    from pylstm.layers import Input
    from pylstm.models import Sequential

    a, _, y1, _ = data()
    model = Sequential([Input((D1,), name="features"), Dense(K1, name="head")])
    model.compile(optimizers.SGD(0.1), loss={"head": "mse"}, metrics={"head": ["mae"]})
    history = model.fit({"features": a}, {"head": y1}, epochs=1, verbose=0)
    assert list(history.history) == ["loss", "mae"]  # one output: no prefixes, as before
    assert isinstance(model.predict([a]), np.ndarray)
    with pytest.raises(ValueError, match=r"`x` is a dict with unknown keys \['a'\]"):
        model.predict({"a": a})
