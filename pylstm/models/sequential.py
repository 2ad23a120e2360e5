"""A linear stack of layers trained by explicit backpropagation (Keras 3's `keras.Sequential`).

Design:
    One training step zeroes every `Variable.grad`, runs each layer's `call(training=True)`,
    evaluates the loss and its gradient d loss / d y_pred, sends that gradient through each
    layer's `backward` in reverse order (layers add their weight gradients into
    `Variable.grad`), adds each regularizer's penalty to the loss and its `gradient(value)` to the
    variable's `grad`, then lets the optimizer update the trainable variables. Nothing here
    knows what a layer computes: the `Layer` protocol in `pylstm.layers.layer` is the contract.
"""

import math
import sys
import time

import numpy as np

from pylstm import losses, optimizers, utils
from pylstm import metrics as metrics_module
from pylstm.callbacks import History
from pylstm.layers import InputLayer, Layer, deserialize, serialize
from pylstm.models import _formats
from pylstm.variable import assign_weights

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None


class Sequential:
    """A stack of layers, each taking the previous one's output.

    Args:
        layers: optional list of `Layer`s (an `InputLayer`, from `pylstm.layers.Input`, may
            come first to declare the input shape).
        name: str or None.

    Example:

    >>> import numpy as np
    >>> from pylstm.layers import Dense, Input
    >>> model = Sequential([Input((3,)), Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.ones((8, 3), dtype="float32"); y = np.zeros((8, 1), dtype="float32")
    >>> history = model.fit(x, y, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['loss']
    >>> model.predict(x).shape
    (8, 1)
    """

    _count = 0

    def __init__(self, layers=None, name=None):
        if name is None:
            name = "sequential" if Sequential._count == 0 else f"sequential_{Sequential._count}"
            Sequential._count += 1
        self.name = name
        self._input_layer = None
        self._layers = []
        self.built = False
        self._build_input_shape = None
        self._output_shapes = []
        self.optimizer = None
        self.loss = None
        self._metrics = []
        self.history = None
        self.stop_training = False
        for layer in layers or []:
            self.add(layer)

    # Structure -----------------------------------------------------------------------

    def add(self, layer):
        """Appends `layer`, and builds the model if its input shape is known.

        Raises:
            TypeError: if `layer` is not a `Layer`.
            ValueError: for an `InputLayer` that is not first.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, received {layer!r}.")
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._layers:
                raise ValueError("An InputLayer can only be the first layer of a Sequential model.")
            self._input_layer = layer
        else:
            self._layers.append(layer)
        self.built = False
        shape = self._declared_input_shape()
        if shape is not None and self._layers:
            self.build(shape)

    def pop(self):
        """Removes and returns the last layer."""
        layer = self._layers.pop()
        self.built = False
        return layer

    @property
    def layers(self):
        """The layers, without the `InputLayer` (as in Keras)."""
        return list(self._layers)

    @property
    def dtype(self):
        first = self._input_layer or (self._layers[0] if self._layers else None)
        return first.dtype if first is not None else "float32"

    def _declared_input_shape(self):
        if self._input_layer is not None:
            return self._input_layer.batch_shape
        if self._layers and self._layers[0]._input_shape_arg is not None:
            return (None,) + self._layers[0]._input_shape_arg
        return self._build_input_shape

    def build(self, input_shape):
        """Builds every layer for inputs of `input_shape` (batch axis included, may be None).

        Raises:
            ValueError: if the model has no layers, or a layer rejects the shape.
        """
        if not self._layers:
            raise ValueError(f"Sequential model '{self.name}' has no layers to build.")
        shape = tuple(input_shape)
        self._output_shapes = []
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
            self._output_shapes.append(shape)
        self._build_input_shape = tuple(input_shape)
        self.built = True

    def _ensure_built(self, x_shape):
        if not self.built:
            self.build(self._declared_input_shape() or (None,) + tuple(x_shape[1:]))

    # Weights -------------------------------------------------------------------------

    @property
    def weights(self):
        """All `Variable`s, layer by layer, each layer's in Keras's order."""
        return [v for layer in self._layers for v in layer.weights]

    @property
    def trainable_variables(self):
        return [v for layer in self._layers for v in layer.trainable_variables]

    def get_weights(self):
        """Returns copies of all weights as a list of `np.ndarray`."""
        return [v.value.copy() for v in self.weights]

    def set_weights(self, weights):
        """Sets all weights from a list in `get_weights()` order.

        Raises:
            ValueError: if the count or a shape does not match.
        """
        assign_weights(self.weights, weights, f"Model '{self.name}'")

    def count_params(self):
        return sum(layer.count_params() for layer in self._layers)

    def summary(self, print_fn=None):
        """Prints a Keras-like table: layer name (type), output shape, parameter count.

        Args:
            print_fn: callable taking one line (str); defaults to `print`.

        Raises:
            ValueError: if the model is not built yet.
        """
        if not self.built:
            raise ValueError(
                "This model has not yet been built. Build the model first by calling `build()` "
                "or by calling the model on a batch of data."
            )
        print_fn = print_fn or print
        widths = (33, 26, 12)
        rule = "_" * sum(widths)
        lines = [f'Model: "{self.name}"', rule,
                 _row(("Layer (type)", "Output Shape", "Param #"), widths), "=" * sum(widths)]
        for i, (layer, shape) in enumerate(zip(self._layers, self._output_shapes)):
            lines.append(_row((f"{layer.name} ({type(layer).__name__})", str(shape),
                               f"{layer.count_params():,}"), widths))
            lines.append("=" * sum(widths) if i == len(self._layers) - 1 else "")
        total = self.count_params()
        trainable = sum(v.value.size for v in self.trainable_variables)
        nbytes = sum(v.value.nbytes for v in self.weights)
        lines += [f"Total params: {total:,} ({_format_bytes(nbytes)})",
                  f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", rule]
        for line in lines:
            print_fn(line)

    # Compile and train ---------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Configures training.

        Args:
            optimizer: a name (`"sgd"`, `"adam"`, `"rmsprop"`), a config dict or an `Optimizer`.
            loss: a name (`"mse"`, `"sparse_categorical_crossentropy"`, ...), a config dict or
                a `Loss`.
            metrics: optional list of metric names (`"mae"`, `"accuracy"`, ...) or callables
                `(y_true, y_pred) -> per-sample values`; logged under the given name (a
                callable's `__name__`).

        Raises:
            ValueError: for an unknown optimizer, loss or metric.
            TypeError: `metrics` not a list of names or callables.
        """
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"Argument `metrics` must be a list of metric names or callables, "
                            f"received {type(metrics).__name__}.")
        for m in metrics or []:
            if not (isinstance(m, str) or callable(m)):
                raise TypeError(f"Argument `metrics` must hold metric names or callables, "
                                f"received {m!r}.")
        self._metrics = [(m if isinstance(m, str) else m.__name__, metrics_module.get(m))
                         for m in metrics or []]

    def _check_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(
                "You must call `compile()` with a `loss` before training or evaluating the model."
            )

    def compute_loss(self, y, y_pred, mask=None):
        """The loss on `(y, y_pred)` (masked timesteps left out, as Keras) plus every penalty in
        `losses` (weight regularizers and the last call's activity regularizers)."""
        return self.loss(y, y_pred, sample_weight=mask) + sum(self.losses)

    @property
    def losses(self):
        """The penalties (floats) of all layers: weight regularizers, and the activity
        regularizers of the last call (Keras 3's `Model.losses`)."""
        return [penalty for layer in self._layers for penalty in layer.losses]

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

    def train_on_batch(self, x, y):
        """Runs one optimization step on arrays already validated and cast.

        Returns:
            `(loss, y_pred)`: the batch loss (float, penalties included) and the predictions.
        """
        for layer in self._layers:
            layer.zero_grads()
        y_pred, mask = self._forward(x, training=True)
        loss, grad = self.loss.value_and_gradient(y, y_pred, sample_weight=mask)
        for layer in reversed(self._layers):
            grad = layer.backward_with_penalties(grad)
        loss += sum(self.losses)
        self._add_regularizer_gradients()
        self.optimizer.apply(self.trainable_variables)
        return loss, y_pred

    def reset_states(self, mask=None):
        """Resets the states of every stateful layer (Keras's `reset_states`).

        Args:
            mask: None (all samples) or a `(B,)` bool array: reset only those samples.
        """
        for layer in self._layers:
            layer.reset_state(mask)

    reset_state = reset_states

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Trains the model for `epochs - initial_epoch` epochs of mini-batch updates.

        Args:
            x: numeric array `(N, ...)` of inputs, cast to the model's dtype.
            y: numeric array `(N, ...)` of targets.
            batch_size: int, samples per update (the last batch may be smaller).
            epochs: int, index of the last epoch (as in Keras, not a count when
                `initial_epoch > 0`).
            verbose: `"auto"` or 1 (a progress bar, `tqdm` when installed, else one line per
                epoch), 2 (one line per epoch), 0 (silent).
            callbacks: optional list of `pylstm.callbacks.Callback`.
            validation_split: float in `[0, 1)`; the *last* fraction of the samples (taken
                before shuffling, as in Keras) is held out for validation.
            validation_data: optional `(x_val, y_val)`; overrides `validation_split`.
            shuffle: bool, reshuffle the training samples each epoch (from `pylstm.utils`'s
                generator, so `set_random_seed` makes training reproducible).
            initial_epoch: int, the epoch to start from.

        Returns:
            A `History` whose `.history` holds per-epoch `"loss"`, each metric, and with
            validation data `"val_loss"` and `"val_<metric>"`.

        Raises:
            RuntimeError: if the model is not compiled.
            TypeError: for non-numeric `x` or `y`.
            ValueError: for empty, non-finite or mismatched data, or a bad `validation_split`.
        """
        self._check_compiled()
        x, y = self._validate_xy(x, y, "x", "y")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("Argument `validation_data` must be a tuple (x_val, y_val).")
            val = self._validate_xy(*validation_data, "validation_data[0]", "validation_data[1]")
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(
                    f"Argument `validation_split` must be in [0, 1), received {validation_split}."
                )
            split = int(math.ceil(len(x) * (1.0 - validation_split)))
            if split in (0, len(x)):
                raise ValueError(
                    f"validation_split={validation_split} leaves no samples for training or "
                    f"validation out of {len(x)}."
                )
            x, y, val = x[:split], y[:split], (x[split:], y[split:])
        else:
            val = None
        self._ensure_built(x.shape)
        verbose = _verbosity(verbose)
        history = History()
        callbacks = [history] + list(callbacks or [])
        _check_positive_int(batch_size, "batch_size")
        _check_positive_int(epochs, "epochs")
        steps = math.ceil(len(x) / batch_size)
        for cb in callbacks:
            cb.set_model(self)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
            cb.on_train_begin()
        self.stop_training = False
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            order = utils.default_generator().permutation(len(x)) if shuffle else None
            progress = _Progress(verbose, steps, f"Epoch {epoch + 1}/{epochs}")
            sums = dict.fromkeys(["loss"] + [name for name, _ in self._metrics], 0.0)
            seen = 0
            for start in range(0, len(x), batch_size):
                idx = slice(start, start + batch_size) if order is None else \
                    order[start:start + batch_size]
                xb, yb = x[idx], y[idx]
                loss, y_pred = self.train_on_batch(xb, yb)
                sums["loss"] += loss * len(xb)
                for name, fn in self._metrics:
                    sums[name] += float(np.mean(fn(yb, y_pred))) * len(xb)
                seen += len(xb)
                progress.update({k: v / seen for k, v in sums.items()})
            logs = {k: v / seen for k, v in sums.items()}
            if val is not None:
                val_logs = self._evaluate_arrays(*val, batch_size, _Progress(0, 0, ""))
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
        """Returns the loss (penalties included) and metrics over `(x, y)`, in inference mode.

        Args:
            x: numeric array `(N, ...)`.
            y: numeric array `(N, ...)`.
            batch_size: int.
            verbose: as in `fit`.
            return_dict: bool.

        Returns:
            The loss (float) when no metrics were compiled, else `[loss, *metrics]`; a dict
            `{"loss": ..., name: ...}` with `return_dict=True`.

        Raises:
            RuntimeError, TypeError, ValueError: as in `fit`.
        """
        self._check_compiled()
        x, y = self._validate_xy(x, y, "x", "y")
        self._ensure_built(x.shape)
        verbose = _verbosity(verbose)
        _check_positive_int(batch_size, "batch_size")
        progress = _Progress(verbose, math.ceil(len(x) / batch_size), "Evaluate")
        logs = self._evaluate_arrays(x, y, batch_size, progress)
        progress.close(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_arrays(self, x, y, batch_size, progress):
        sums = dict.fromkeys(["loss"] + [name for name, _ in self._metrics], 0.0)
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            y_pred, mask = self._forward(xb, training=False)
            sums["loss"] += self.loss(yb, y_pred, sample_weight=mask) * len(xb)
            for name, fn in self._metrics:
                sums[name] += float(np.mean(fn(yb, y_pred))) * len(xb)
            progress.update({k: v / min(len(x), start + batch_size) for k, v in sums.items()})
        logs = {k: v / len(x) for k, v in sums.items()}
        logs["loss"] += sum(self.losses)
        return logs

    def predict(self, x, batch_size=32, verbose=0):
        """Returns the outputs for `x`, computed batch by batch in inference mode.

        Args:
            x: numeric array `(N, ...)`.
            batch_size: int.
            verbose: as in `fit` (default silent).

        Returns:
            `np.ndarray` `(N, ...)` in the model's dtype.

        Raises:
            TypeError, ValueError: for non-numeric, empty or non-finite `x`.
        """
        x = self._validate_array(x, "x")
        self._ensure_built(x.shape)
        _check_positive_int(batch_size, "batch_size")
        progress = _Progress(_verbosity(verbose), math.ceil(len(x) / batch_size), "Predict")
        outputs = []
        for start in range(0, len(x), batch_size):
            outputs.append(self._forward(x[start:start + batch_size], training=False)[0])
            progress.update({})
        progress.close({})
        return np.concatenate(outputs, axis=0)

    def __call__(self, x, training=False):
        """Runs the layers on `x` (cast to the model's dtype); builds the model if needed."""
        x = np.asarray(x, dtype=self.dtype)
        self._ensure_built(x.shape)
        return self._forward(x, training=training)[0]

    def _forward(self, x, training):
        """Runs the layers, passing each layer's output mask to the next (Keras's mask
        propagation); returns `(outputs, output mask or None)`."""
        mask = None
        for layer in self._layers:
            y = layer(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = y
        return x, mask

    # Validation ----------------------------------------------------------------------

    def _validate_array(self, a, name):
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
        with np.errstate(over="ignore"):  # an overflow to inf is reported just below
            arr = arr.astype(self.dtype, copy=False)
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"Argument `{name}` contains NaN or infinite values (after casting to {self.dtype})."
            )
        return arr

    def _validate_xy(self, x, y, x_name, y_name):
        x = self._validate_array(x, x_name)
        y = self._validate_array(y, y_name)
        if len(x) != len(y):
            raise ValueError(
                f"Arguments `{x_name}` and `{y_name}` must have the same number of samples, "
                f"received {len(x)} and {len(y)}."
            )
        return x, y

    # Config and saving ---------------------------------------------------------------

    def get_config(self):
        """Returns `{"name", "layers": [{"class_name", "config"}, ...], "build_input_shape"}`."""
        layers = ([self._input_layer] if self._input_layer is not None else []) + self._layers
        return {
            "name": self.name,
            "layers": [serialize(layer) for layer in layers],
            "build_input_shape": list(self._build_input_shape) if self.built else None,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuilds the (uncompiled) model from `get_config()`'s output.

        Raises:
            ValueError: for an unknown layer class, or a config whose fields do not have the
                types `get_config()` gives (a dict with a list of layer configs, a str or
                None name, a list of ints and None as `build_input_shape`).
        """
        if not isinstance(config, dict):
            raise ValueError(f"Sequential config must be a dict, received "
                             f"{type(config).__name__}.")
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"Sequential config's `layers` must be a list of layer configs, "
                             f"received {type(layers).__name__}.")
        name = config.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"Sequential config's `name` must be a str, received "
                             f"{type(name).__name__}.")
        shape = config.get("build_input_shape")
        if shape is not None and not (isinstance(shape, (list, tuple)) and all(
                d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape)):
            raise ValueError(f"Sequential config's `build_input_shape` must be a list of ints "
                             f"and None, received {shape!r}.")
        model = cls([deserialize(c) for c in layers], name=name)
        if shape is not None and not model.built:
            model.build(tuple(shape))
        return model

    def save(self, path):
        """Saves the model to one file: the Keras 3 format for a path ending in
        `.keras`, else pylstm's own; see `pylstm.models.save_model`."""
        _formats.find("save_model", path)(self, path)

    def save_weights(self, path):
        """Writes the weights (and optimizer state) as a Keras 3 `.weights.h5` file (h5py
        needed); see `pylstm.models.save_keras_weights`."""
        _formats.find("save_weights", path)(self, path)

    def load_weights(self, path):
        """Loads Keras weights (`.weights.h5`, `.keras` or legacy `.h5`) into this model (pyfive
        needed); see `pylstm.models.load_keras_weights`."""
        _formats.find("load_weights", path)(self, path)


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


def _row(cells, widths):
    return "".join(f" {cell:<{w - 1}}" for cell, w in zip(cells, widths)).rstrip()


def _format_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024


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
