"""Compile, fit, evaluate and predict for models of any number of inputs and outputs (Keras 3's
`Trainer`), shared by `Sequential` and the functional `Model`.

Design:
    `Trainer` sees a model only through a flat interface, inputs and outputs in order:
    `input_names` and `output_names` (lists of str: the keys of `x`, `y`, `loss`, `metrics` and
    `loss_weights` dicts, and the prefixes of the per-output log names), `_input_dtypes` (the
    numpy dtype each input is cast to: integer inputs for token ids stay integers), `dtype` (the
    targets' dtype; or `_output_dtypes`, one per output), `_ensure_built_flat(shapes)`,
    `_forward_flat(xs, training) -> (ys, masks)`, `_backward_flat(grads)` (one gradient or None
    per output; the model adds the activity regularizers' gradients and puts weight gradients in
    `Variable.grad`), `weights`, `trainable_variables` and `losses` (the penalties).

    One training step zeroes every `Variable.grad`, runs the forward pass, evaluates each
    output's loss and its gradient d loss / d y_pred (the output's mask, when it has one, is the
    loss's sample weight, as Keras), scales both by the output's loss weight, sends the gradients
    back, adds each weight regularizer's `gradient(value)` to its variable's `grad`, and lets the
    optimizer update the trainable variables. The logged `loss` is the weighted sum plus every
    penalty; with several losses each output's unweighted loss is logged as `<output>_loss`, and
    its metrics as `<output>_<metric>`, as Keras 3 names them.
"""

import collections
import math
import sys
import time

import numpy as np

from pylstm import losses as losses_module
from pylstm import metrics as metrics_module
from pylstm import optimizers, utils
from pylstm.callbacks import History

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None

# One output as training sees it: its loss (None: no loss), weight, the log name of its loss
# (None when not logged apart) and its metrics as `(log name, fn)` pairs.
_Target = collections.namedtuple("_Target", ["name", "loss", "weight", "loss_log", "metrics"])
# A compiled metric: the name it was given (a callable's `__name__`) and its function.
_Metric = collections.namedtuple("_Metric", ["name", "fn"])


class Trainer:
    """`compile`, `fit`, `evaluate`, `predict` and `train_on_batch` over the flat model interface
    described in this module's docstring (Keras 3's `keras.src.trainers.trainer.Trainer`)."""

    optimizer = None
    loss = None
    loss_weights = None
    history = None
    stop_training = False
    _metrics = ()

    # Compile -------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Configures training.

        Args:
            optimizer: a name (`"sgd"`, `"adam"`, `"rmsprop"`), a config dict or an `Optimizer`.
            loss: a loss for every output: a name (`"mse"`,
                `"sparse_categorical_crossentropy"`, ...), a config dict or a `Loss`; or a
                list of them (None for an output without a loss) in output order; or a dict
                by output name naming every output.
            metrics: optional list of metric names (`"mae"`, `"accuracy"`, ...) or callables
                `(y_true, y_pred) -> per-sample values`, logged under the given name (a
                callable's `__name__`). With several outputs, as in Keras 3: a list with one
                entry per output (a metric, a list of metrics, or None), or a dict by output
                name; the logs name them `<output>_<metric>`.
            loss_weights: optional float (every output), list in output order, or dict by
                output name naming every output: the total loss is the sum of each output's
                loss times its weight (default 1).

        Raises:
            ValueError: for an unknown optimizer, loss or metric.
            TypeError: `metrics` not a list or dict of names or callables, `loss_weights`
                not a number, list or dict of numbers.
        """
        self.optimizer = optimizers.get(optimizer)
        if isinstance(loss, dict) and "class_name" not in loss:  # not one loss's config
            self.loss = {k: losses_module.get(v) for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            self.loss = [losses_module.get(v) for v in loss]
        else:
            self.loss = losses_module.get(loss)
        self._metrics = _resolve_metrics(metrics)
        _check_loss_weights(loss_weights)
        self.loss_weights = loss_weights

    def _check_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(
                "You must call `compile()` with a `loss` before training or evaluating the model."
            )

    def _targets(self):
        """The compiled loss, weight and metrics of each output, in output order."""
        names = list(self.output_names)
        n = len(names)
        per_loss = _per_output(self.loss, names, "loss")
        if all(loss is None for loss in per_loss):
            raise ValueError(f"`compile()` received no loss for any of the outputs {names}.")
        weights = [1.0] * n if self.loss_weights is None else _per_output(
            self.loss_weights, names, "loss_weights")
        if n == 1:
            per_metrics = [_flatten_metrics(self._metrics)]
        else:
            per_metrics = [[] if m is None else _flatten_metrics(m) for m in _per_output(
                self._metrics or None, names, "metrics", required=False)]
        several_losses = sum(loss is not None for loss in per_loss) > 1
        seen = collections.Counter()
        targets = []
        for name, loss, weight, metrics in zip(names, per_loss, weights, per_metrics):
            logged = []
            for metric_name, fn in metrics:
                key = f"{name}_{metric_name}" if n > 1 else metric_name
                # Keras 3 numbers a repeated metric name: "mae", "mae_1", ...
                logged.append((key if not seen[key] else f"{key}_{seen[key]}", fn))
                seen[key] += 1
            loss_log = f"{name}_loss" if several_losses and loss is not None else None
            targets.append(_Target(name, loss, float(weight), loss_log, logged))
        return targets

    # Losses and one step -------------------------------------------------------------

    def compute_loss(self, y, y_pred, mask=None):
        """The weighted sum of each output's loss (masked timesteps left out, as Keras) plus
        every penalty in `losses` (weight regularizers and the last call's activity
        regularizers).

        Args:
            y: the targets: an array for one output, else a list in output order or a dict by
                output name.
            y_pred: the predictions, structured as `y`.
            mask: None, or each output's `(B, T)` bool mask: an array for one output, else a
                list in output order (None for an output without a mask).

        Returns:
            float.
        """
        names = list(self.output_names)
        ys = _flatten_structure(y, names, "y")
        preds = _flatten_structure(y_pred, names, "y_pred")
        masks = [mask] if len(names) == 1 and not isinstance(mask, (list, tuple)) else (
            [None] * len(names) if mask is None else list(mask))
        total = 0.0
        for target, yt, yp, m in zip(self._targets(), ys, preds, masks):
            if target.loss is not None:
                total += target.weight * target.loss(yt, yp, sample_weight=m)
        return total + sum(self.losses)

    def _add_regularizer_gradients(self):
        for var in self.trainable_variables:
            regularizer = var.regularizer
            if regularizer is None:
                continue
            gradient = getattr(regularizer, "gradient", None)
            if gradient is None:
                raise TypeError(
                    f"The regularizer of variable '{var.name}' has no `gradient(value)` "
                    "method; pylstm has no autodiff, so regularizers must provide one."
                )
            var.grad += gradient(var.value)

    def _train_step(self, targets, xs, ys):
        """One optimization step on validated arrays; returns `(losses, predictions, masks)`:
        the batch's `loss` and logged output losses (floats), and the forward pass's lists."""
        for var in self.weights:
            var.grad[...] = 0
        preds, masks = self._forward_flat(xs, training=True)
        total, grads, logs = 0.0, [], {}
        for target, yt, yp, mask in zip(targets, ys, preds, masks):
            if target.loss is None:
                grads.append(None)
                continue
            value, grad = target.loss.value_and_gradient(yt, yp, sample_weight=mask)
            total += target.weight * value
            grads.append(grad if target.weight == 1.0 else grad * target.weight)
            if target.loss_log:
                logs[target.loss_log] = value
        self._backward_flat(grads)
        logs["loss"] = total + sum(self.losses)  # the penalties of the weights before the update
        self._add_regularizer_gradients()
        self.optimizer.apply(self.trainable_variables)
        return logs, preds, masks

    def train_on_batch(self, x, y):
        """Runs one optimization step on one batch.

        Args:
            x: the inputs: an array `(B, ...)` for one input, else a list in input order or a
                dict by input name.
            y: the targets, structured as `x` over the outputs.

        Returns:
            `(loss, y_pred)`: the batch loss (float, weighted and with penalties) and the
            predictions, structured as `predict` returns them.

        Raises:
            RuntimeError, TypeError, ValueError: as in `fit`.
        """
        self._check_compiled()
        xs, ys = self._validate_xy(x, y, "x", "y")
        self._ensure_built_flat([a.shape for a in xs])
        logs, preds, _ = self._train_step(self._targets(), xs, ys)
        return logs["loss"], self._pack_outputs(preds)

    # Fit, evaluate, predict ----------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Trains the model for `epochs - initial_epoch` epochs of mini-batch updates.

        Args:
            x: the inputs, each a numeric array `(N, ...)` cast to its input's dtype: an array
                for one input, else a list in input order or a dict by input name.
            y: the targets, each a numeric array `(N, ...)`: an array for one output, else a
                list in output order or a dict by output name.
            batch_size: int, samples per update (the last batch may be smaller).
            epochs: int, index of the last epoch (as in Keras, not a count when
                `initial_epoch > 0`).
            verbose: `"auto"` or 1 (a progress bar, `tqdm` when installed, else one line per
                epoch), 2 (one line per epoch), 0 (silent).
            callbacks: optional list of `pylstm.callbacks.Callback`.
            validation_split: float in `[0, 1)`; the *last* fraction of the samples (taken
                before shuffling, as in Keras) is held out for validation.
            validation_data: optional `(x_val, y_val)`, structured as `x` and `y`; overrides
                `validation_split`.
            shuffle: bool, reshuffle the training samples each epoch (from `pylstm.utils`'s
                generator, so `set_random_seed` makes training reproducible).
            initial_epoch: int, the epoch to start from.

        Returns:
            A `History` whose `.history` holds per-epoch `"loss"`, each metric, and with
            validation data `"val_loss"` and `"val_<metric>"`; with several outputs also
            `"<output>_loss"` and `"<output>_<metric>"`, as Keras 3.

        Raises:
            RuntimeError: if the model is not compiled.
            TypeError: for non-numeric `x` or `y`.
            ValueError: for empty, non-finite or mismatched data, missing or unknown names in
                a dict, or a bad `validation_split`.
        """
        self._check_compiled()
        xs, ys = self._validate_xy(x, y, "x", "y")
        n = len(xs[0])
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("Argument `validation_data` must be a tuple (x_val, y_val).")
            val = self._validate_xy(*validation_data, "validation_data[0]", "validation_data[1]")
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(
                    f"Argument `validation_split` must be in [0, 1), received {validation_split}."
                )
            split = int(math.ceil(n * (1.0 - validation_split)))
            if split in (0, n):
                raise ValueError(
                    f"validation_split={validation_split} leaves no samples for training or "
                    f"validation out of {n}."
                )
            val = ([a[split:] for a in xs], [a[split:] for a in ys])
            xs, ys, n = [a[:split] for a in xs], [a[:split] for a in ys], split
        else:
            val = None
        self._ensure_built_flat([a.shape for a in xs])
        targets = self._targets()
        verbose = _verbosity(verbose)
        history = History()
        callbacks = [history] + list(callbacks or [])
        _check_positive_int(batch_size, "batch_size")
        _check_positive_int(epochs, "epochs")
        steps = math.ceil(n / batch_size)
        for cb in callbacks:
            cb.set_model(self)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
            cb.on_train_begin()
        self.stop_training = False
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            order = utils.default_generator().permutation(n) if shuffle else None
            progress = _Progress(verbose, steps, f"Epoch {epoch + 1}/{epochs}")
            means = _RunningMeans(_log_names(targets))
            for start in range(0, n, batch_size):
                idx = slice(start, start + batch_size) if order is None else \
                    order[start:start + batch_size]
                xb, yb = [a[idx] for a in xs], [a[idx] for a in ys]
                means.add(targets, yb, *self._train_step(targets, xb, yb))
                progress.update(means.result())
            logs = means.result()
            if val is not None:
                val_logs = self._evaluate_arrays(targets, *val, batch_size, _Progress(0, 0, ""))
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            progress.close(logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        self.history = history
        return history

    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", return_dict=False):
        """Returns the loss (weighted, penalties included) and metrics over `(x, y)`, in
        inference mode.

        Args:
            x: the inputs, as in `fit`.
            y: the targets, as in `fit`.
            batch_size: int.
            verbose: as in `fit`.
            return_dict: bool.

        Returns:
            The loss (float) when nothing else is logged, else a list: `[loss, *metrics]`, or
            with several outputs' losses `[loss, *output losses, *metrics]` (Keras 3's order);
            with `return_dict=True` a dict of the same values under their `fit` log names.

        Raises:
            RuntimeError, TypeError, ValueError: as in `fit`.
        """
        self._check_compiled()
        xs, ys = self._validate_xy(x, y, "x", "y")
        self._ensure_built_flat([a.shape for a in xs])
        targets = self._targets()
        verbose = _verbosity(verbose)
        _check_positive_int(batch_size, "batch_size")
        progress = _Progress(verbose, math.ceil(len(xs[0]) / batch_size), "Evaluate")
        logs = self._evaluate_arrays(targets, xs, ys, batch_size, progress)
        progress.close(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_arrays(self, targets, xs, ys, batch_size, progress):
        n = len(xs[0])
        means = _RunningMeans(_log_names(targets))
        for start in range(0, n, batch_size):
            xb = [a[start:start + batch_size] for a in xs]
            yb = [a[start:start + batch_size] for a in ys]
            preds, masks = self._forward_flat(xb, training=False)
            logs = {"loss": 0.0}
            for target, yt, yp, mask in zip(targets, yb, preds, masks):
                if target.loss is not None:
                    value = target.loss(yt, yp, sample_weight=mask)
                    logs["loss"] += target.weight * value
                    if target.loss_log:
                        logs[target.loss_log] = value
            means.add(targets, yb, logs, preds, masks)
            progress.update(means.result())
        logs = means.result()
        logs["loss"] += sum(self.losses)
        return logs

    def predict(self, x, batch_size=32, verbose=0):
        """Returns the outputs for `x`, computed batch by batch in inference mode.

        Args:
            x: the inputs, as in `fit`.
            batch_size: int.
            verbose: as in `fit` (default silent).

        Returns:
            `np.ndarray` `(N, ...)` in the model's dtype for one output, else the outputs
            structured as the model's outputs (a list in output order by default), as Keras 3.

        Raises:
            TypeError, ValueError: for non-numeric, empty, non-finite or mismatched `x`.
        """
        labelled = self._validate_inputs(x, "x")
        _check_same_samples(labelled)
        xs = [a for _, a in labelled]
        self._ensure_built_flat([a.shape for a in xs])
        _check_positive_int(batch_size, "batch_size")
        n = len(xs[0])
        progress = _Progress(_verbosity(verbose), math.ceil(n / batch_size), "Predict")
        batches = []
        for start in range(0, n, batch_size):
            batches.append(self._forward_flat([a[start:start + batch_size] for a in xs],
                                              training=False)[0])
            progress.update({})
        progress.close({})
        return self._pack_outputs([np.concatenate(out, axis=0) for out in zip(*batches)])

    def _pack_outputs(self, ys):
        """The outputs as `predict` returns them: one array, or a list in output order."""
        return ys[0] if len(ys) == 1 else list(ys)

    # Validation ----------------------------------------------------------------------

    @property
    def _output_dtypes(self):
        """The dtype each output's targets are cast to: the model's."""
        return [np.dtype(self.dtype)] * len(self.output_names)

    def _validate_inputs(self, x, argument):
        """`x` flattened to input order and validated: a list of `(label, array)`."""
        return [(label, _validate_array(value, label, dtype)) for (label, value), dtype in zip(
            _flatten_named(x, list(self.input_names), argument, "input"), self._input_dtypes)]

    def _validate_xy(self, x, y, x_name, y_name):
        xs = self._validate_inputs(x, x_name)
        ys = [(label, _validate_array(value, label, dtype)) for (label, value), dtype in zip(
            _flatten_named(y, list(self.output_names), y_name, "output"), self._output_dtypes)]
        _check_same_samples(xs + ys)
        return [a for _, a in xs], [a for _, a in ys]


# Argument structure ----------------------------------------------------------------------


def _per_output(value, names, argument, required=True):
    """A compile argument given once for all outputs, as a list in output order or as a dict by
    output name, as one entry per output (None for names a dict leaves out when not
    `required`)."""
    if isinstance(value, dict):
        _check_keys(value, names, argument, "output", required)
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"Argument `{argument}` must have one entry per output "
                             f"({len(names)}: {names}), received {len(value)}.")
        return list(value)
    return [value] * len(names)


def _check_keys(value, names, argument, kind, required=True):
    unknown = [k for k in value if k not in names]
    missing = [n for n in names if n not in value] if required else []
    if unknown or missing:
        problems = ([f"unknown keys {unknown}"] if unknown else []) + (
            [f"missing keys {missing}"] if missing else [])
        raise ValueError(f"Argument `{argument}` is a dict with {' and '.join(problems)}; the "
                         f"model's {kind} names are {names}.")


def _flatten_named(value, names, argument, kind):
    """`x` or `y` as `(label, value)` pairs in input or output order; the label names the value
    in errors (`x`, `x[1]`, `x['tokens']`)."""
    if isinstance(value, dict):
        _check_keys(value, names, argument, kind)
        return [(f"{argument}['{name}']", value[name]) for name in names]
    if len(names) == 1:
        # A one-element list holding an array is a list of inputs; a nested list of numbers is
        # the data itself.
        if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(
                value[0], np.ndarray):
            return [(argument, value[0])]
        return [(argument, value)]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"Argument `{argument}` must be a list (in {kind} order) or a dict "
                         f"keyed by {kind} name for a model with {len(names)} {kind}s {names}, "
                         f"received {type(value).__name__}.")
    if len(value) != len(names):
        raise ValueError(f"Argument `{argument}` must hold {len(names)} arrays, one per {kind} "
                         f"{names}, received {len(value)}.")
    return [(f"{argument}[{i}]", v) for i, v in enumerate(value)]


def _flatten_structure(value, names, argument):
    """Arrays given as an array, a list in output order or a dict by output name, as a list."""
    if isinstance(value, dict):
        _check_keys(value, names, argument, "output")
        return [value[name] for name in names]
    if len(names) == 1 and not isinstance(value, (list, tuple)):
        return [value]
    if len(value) != len(names):
        raise ValueError(f"Argument `{argument}` must hold {len(names)} arrays, one per output "
                         f"{names}, received {len(value)}.")
    return list(value)


def _resolve_metrics(metrics):
    """`compile`'s `metrics` with each name or callable replaced by a `_Metric`, the structure
    kept (a list, lists in a list, or a dict)."""
    if metrics is None:
        return []
    if not isinstance(metrics, (list, tuple, dict)):
        raise TypeError(f"Argument `metrics` must be a list of metric names or callables, "
                        f"received {type(metrics).__name__}.")

    def resolve(m, nested):
        if m is None and nested:
            return None
        if isinstance(m, (list, tuple)) and nested:
            return [resolve(item, False) for item in m]
        if not (isinstance(m, str) or callable(m)):
            raise TypeError(f"Argument `metrics` must hold metric names or callables, "
                            f"received {m!r}.")
        return _Metric(m if isinstance(m, str) else m.__name__, metrics_module.get(m))

    if isinstance(metrics, dict):
        return {k: resolve(v, True) for k, v in metrics.items()}
    return [resolve(m, True) for m in metrics]


def _flatten_metrics(metrics):
    """Every `_Metric` in a resolved metrics structure, in order."""
    if isinstance(metrics, _Metric):
        return [metrics]
    items = metrics.values() if isinstance(metrics, dict) else metrics
    return [pair for item in items if item is not None for pair in _flatten_metrics(item)]


def _check_loss_weights(loss_weights):
    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    values = (loss_weights.values() if isinstance(loss_weights, dict) else loss_weights
              if isinstance(loss_weights, (list, tuple)) else [loss_weights])
    if loss_weights is not None and not all(number(v) for v in values):
        raise TypeError(f"Argument `loss_weights` must be a float, or a list or dict of floats "
                        f"(one per output), received {loss_weights!r:.200}.")


# Logs ------------------------------------------------------------------------------------


def _log_names(targets):
    """The log names in Keras 3's order: the loss, each output's loss, then the metrics."""
    return (["loss"] + [t.loss_log for t in targets if t.loss_log]
            + [name for t in targets for name, _ in t.metrics])


class _RunningMeans:
    """The epoch's means of the logs, as Keras's `Mean` metrics accumulate them: the losses
    weighted by batch size; each metric over every value it returns, an output's mask (when
    the values have its shape) weighting them, so that masked timesteps count for nothing."""

    def __init__(self, names):
        self.sums = dict.fromkeys(names, 0.0)
        self.weights = dict.fromkeys(names, 0.0)

    def add(self, targets, ys, losses, preds, masks):
        """Adds one batch: `losses` the batch's loss values (floats) by log name, `ys`, `preds`
        and `masks` its targets, predictions and output masks in output order."""
        n = len(preds[0])
        for name, value in losses.items():
            self.sums[name] += value * n
            self.weights[name] += n
        for target, yt, yp, mask in zip(targets, ys, preds, masks):
            for name, fn in target.metrics:
                values = np.asarray(fn(yt, yp), dtype=np.float64)
                if mask is not None and values.shape == mask.shape:
                    self.sums[name] += float(np.sum(values * mask))
                    self.weights[name] += float(np.sum(mask))
                else:
                    self.sums[name] += float(np.mean(values)) * n
                    self.weights[name] += n

    def result(self):
        return {name: total / self.weights[name] if self.weights[name] else 0.0
                for name, total in self.sums.items()}


# Validation ------------------------------------------------------------------------------


def _validate_array(a, name, dtype):
    """`a` as a numeric array of at least one sample, cast to `dtype` (an integer input takes
    integer values only), without NaN or inf."""
    if a is None:
        raise ValueError(f"Argument `{name}` is required.")
    try:
        arr = np.asarray(a)
    except ValueError as e:
        raise ValueError(f"Argument `{name}` could not be converted to an array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Argument `{name}` must be a numeric array, received dtype {arr.dtype}."
        )
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(
            f"Argument `{name}` must hold at least one sample, received shape {arr.shape}."
        )
    if dtype.kind in "iu":
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Argument `{name}` contains NaN or infinite values.")
            if np.any(arr != np.round(arr)):
                raise ValueError(f"Argument `{name}` feeds an input of dtype {dtype} and must "
                                 f"hold integers, received non-integer values.")
        return arr.astype(dtype, copy=False)
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below
        arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"Argument `{name}` contains NaN or infinite values (after casting to {dtype})."
        )
    return arr


def _check_same_samples(labelled):
    counts = [len(a) for _, a in labelled]
    if len(set(counts)) > 1:
        labels = [f"`{label}`" for label, _ in labelled]
        raise ValueError(
            f"Arguments {', '.join(labels[:-1])} and {labels[-1]} must have the same number of "
            f"samples, received {', '.join(map(str, counts[:-1]))} and {counts[-1]}."
        )


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Argument `{name}` must be a positive int, received {value!r}.")


def _verbosity(verbose):
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    try:
        return int(verbose)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"Argument `verbose` must be 'auto' or an int (0 silent, 1 progress "
                         f"bar, 2 one line per epoch), received {verbose!r:.100}.") from e


# Progress --------------------------------------------------------------------------------


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class _Progress:
    """A `tqdm` bar per epoch (verbose 1, when tqdm is installed), else one line at the end."""

    def __init__(self, verbose, steps, description):
        self.verbose = verbose
        self.description = description
        self.start = time.perf_counter()
        self.bar = None
        if verbose == 1 and tqdm is not None:
            self.bar = tqdm(total=steps, desc=description, unit="step", file=sys.stdout,
                            leave=True, dynamic_ncols=True)

    def update(self, logs):
        if self.bar is not None:
            self.bar.set_postfix_str(_format_logs(logs), refresh=False)
            self.bar.update(1)

    def close(self, logs):
        if self.bar is not None:
            self.bar.set_postfix_str(_format_logs(logs), refresh=False)
            self.bar.close()
        elif self.verbose:
            elapsed = time.perf_counter() - self.start
            print(" - ".join(filter(None, [self.description, f"{elapsed:.1f}s", _format_logs(logs)])))
