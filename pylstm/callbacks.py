"""Training callbacks (Keras 3's `keras.callbacks`): the hook protocol and the callbacks.

Design:
    `fit`, `evaluate` and `predict` call each `Callback`'s hooks with `logs` dicts of floats.
    `EarlyStopping`, `ModelCheckpoint` and `ReduceLROnPlateau` watch one logged value through
    `_MonitorCallback` (Keras's `MonitorCallback`), which compares values in float32 as Keras's
    `ops.less` / `ops.greater` do, so that they stop, save or reduce at Keras's epochs. The
    learning rate is read as the float32 value Keras's optimizer variable holds. Messages
    (`verbose=1`) go to stdout, worded as Keras words them.
"""

import csv
import inspect
import os
import re
import warnings

import numpy as np


class Callback:
    """Base class of callbacks: `fit`, `evaluate` and `predict` call these hooks.

    Subclass it and override the hooks you need; every hook is a no-op here, as in Keras 3.
    `logs` is a dict of floats: at an epoch's end the epoch's mean `"loss"`, each metric and
    the `"val_*"` values; at a batch's end the running means so far (`predict` gives
    `{"outputs": ...}`). Setting `self.model.stop_training = True` makes `fit` stop after
    the current batch, as in Keras.

    Attributes:
        params: dict of the run's parameters (`"epochs"`, `"steps"`, `"verbose"`), set by
            `set_params`; `None` before.
        model: the model being trained, set by `set_model`; `None` before. Read-only, as in
            Keras 3: use `set_model` to change it.

    Example:

    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models
    >>> class LossLog(callbacks.Callback):
    ...     def on_train_begin(self, logs=None):
    ...         self.losses = []
    ...     def on_train_batch_end(self, batch, logs=None):
    ...         self.losses.append(logs["loss"])
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> log = LossLog()
    >>> _ = model.fit(np.ones((8, 2)), np.zeros((8, 1)), batch_size=4, epochs=2, verbose=0,
    ...               callbacks=[log])
    >>> len(log.losses)  # 2 batches in each of 2 epochs
    4
    """

    def __init__(self):
        self.params = None
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    def on_batch_begin(self, batch, logs=None):
        """Keras's alias of `on_train_batch_begin`, which calls it."""

    def on_batch_end(self, batch, logs=None):
        """Keras's alias of `on_train_batch_end`, which calls it."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of training epoch `epoch` (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of epoch `epoch` with its `loss`, metrics and `val_*` values."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before training batch `batch` (0-based within its epoch)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after training batch `batch` with the epoch's running loss and metrics."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Called before each batch of `evaluate`, and of the validation in `fit`."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after each batch of `evaluate` and of the validation in `fit`."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before each batch of `predict`."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after each batch of `predict`; `logs["outputs"]` holds the batch's outputs."""

    def on_train_begin(self, logs=None):
        """Called once when `fit` starts."""

    def on_train_end(self, logs=None):
        """Called once when `fit` ends, with the last epoch's logs."""

    def on_test_begin(self, logs=None):
        """Called when `evaluate` starts, and when each validation in `fit` starts."""

    def on_test_end(self, logs=None):
        """Called when `evaluate` (or a validation in `fit`) ends, with its results."""

    def on_predict_begin(self, logs=None):
        """Called once when `predict` starts."""

    def on_predict_end(self, logs=None):
        """Called once when `predict` ends."""



# The hooks `LambdaCallback` can replace: every `on_*` method of `Callback`.
_HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_"))


class History(Callback):
    """Records each epoch's logs; `fit` returns it and sets it as `model.history` (Keras 3).

    Attributes:
        history: dict `name -> list of float`, one entry per epoch, e.g. `"loss"`, `"mae"`,
            `"val_loss"`, `"val_mae"`.
        epoch: list of the epoch indices run (0-based, starting at `initial_epoch`).

    Example:

    >>> import numpy as np
    >>> from pylstm import layers, models
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> history = model.fit(np.ones((10, 2)), np.zeros((10, 1)), epochs=3, validation_split=0.2,
    ...                     verbose=0)
    >>> history is model.history, history.epoch, sorted(history.history)
    (True, [0, 1, 2], ['loss', 'val_loss'])
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)
        if self.model is not None:
            self.model.history = self


# Logged names of Keras's metrics and losses by the direction that is better (Keras's metric
# `_direction`); the key is the name without its "val_" and output prefixes.
_GREATER_IS_BETTER = frozenset({
    "accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "precision", "recall",
    "auc", "r2_score", "f1_score", "fbeta_score", "cosine_similarity", "true_positives",
    "true_negatives", "precision_at_recall", "recall_at_precision",
    "sensitivity_at_specificity", "specificity_at_sensitivity", "iou", "mean_iou",
})
_LESS_IS_BETTER = frozenset({
    "mse", "mean_squared_error", "mae", "mean_absolute_error", "mape",
    "mean_absolute_percentage_error", "msle", "mean_squared_logarithmic_error",
    "root_mean_squared_error", "logcosh", "log_cosh", "log_cosh_error", "huber",
    "kl_divergence", "kld", "kullback_leibler_divergence", "poisson", "hinge", "squared_hinge",
    "categorical_hinge", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "false_positives", "false_negatives",
})


def _compiled_metrics(metrics):
    """`(name, fn)` of every compiled metric in a model's `_metrics` (a list, lists in a list,
    or a dict of `(name, fn)` pairs, as `Trainer.compile` stores them)."""
    if metrics is None:
        return []
    if hasattr(metrics, "fn"):
        return [(metrics.name, metrics.fn)]
    items = metrics.values() if isinstance(metrics, dict) else metrics
    return [pair for item in items for pair in _compiled_metrics(item)]


def _direction(model, monitor):
    """`"up"` or `"down"`, the better direction of the logged quantity `monitor`, or None.

    As Keras's `mode="auto"`: a loss goes down; a metric goes its `_direction`. The
    `"val_"` prefix, an output-name prefix (`"<output>_mae"`) and a repeat number (`"mae_1"`)
    are left out to find the metric.
    """
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "down"
    for output in getattr(model, "output_names", None) or ():
        if name.startswith(f"{output}_"):
            name = name[len(output) + 1:]
            break
    candidates = [name, re.sub(r"_\d+$", "", name)]
    for metric_name, fn in _compiled_metrics(getattr(model, "_metrics", None)):
        if metric_name in candidates and getattr(fn, "_direction", None) in ("up", "down"):
            return fn._direction
    for candidate in candidates:
        if candidate in _GREATER_IS_BETTER:
            return "up"
        if candidate in _LESS_IS_BETTER:
            return "down"
    return None


class _MonitorCallback(Callback):
    """Watches the logged quantity `monitor` for improvements (Keras's `MonitorCallback`).

    Args:
        monitor: str, the `logs` key watched, e.g. `"val_loss"`.
        mode: `"min"` (lower is better), `"max"` (higher is better) or `"auto"` (from the
            name, as Keras: losses and error metrics down, accuracies and scores up). An
            unknown mode warns and falls back to `"auto"`, as in Keras.
        baseline: float or None, the initial best value.
        min_delta: float, the least change (in absolute value) that counts as an improvement.

    Raises:
        ValueError: at the first epoch's end, when `mode="auto"` cannot tell the direction of
            `monitor`.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto "
                          "mode.", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self):
        direction = {"min": "down", "max": "up"}.get(self.mode) or _direction(self.model,
                                                                               self.monitor)
        if direction is None:
            raise ValueError(
                f"{type(self).__name__} callback received monitor={self.monitor}, but pylstm "
                "isn't able to automatically determine whether that metric should be maximized "
                "or minimized. Pass `mode='max'` in order to monitor based on the highest "
                "metric value, or pass `mode='min'` in order to use the lowest value."
            )
        self.monitor_op = np.less if direction == "down" else np.greater
        if direction == "down":
            self.min_delta = -self.min_delta

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        # float32, as Keras's ops compare these Python floats (a huge value becomes inf).
        with np.errstate(over="ignore"):
            return bool(self.monitor_op(np.float32(monitor_value - self.min_delta),
                                        np.float32(reference_value)))


def _print(message):
    print(message, flush=True)


class EarlyStopping(_MonitorCallback):
    """Stops training when a monitored quantity has stopped improving (Keras 3's
    `keras.callbacks.EarlyStopping`).

    At each epoch's end from `start_from_epoch` on, the monitored value improves when it beats
    the best so far by more than `min_delta`; after `patience` epochs without an improvement
    (and never at epoch 0) it sets `model.stop_training`. With a `baseline`, the wait is
    only reset by values that also beat the baseline.

    Args:
        monitor: str, the `logs` key watched. Defaults to `"val_loss"`.
        min_delta: float, the least change that counts as an improvement. Defaults to 0.
        patience: int, epochs without improvement before stopping. Defaults to 0.
        verbose: 0 (silent) or 1 (prints when it stops and when it restores weights).
        mode: `"auto"`, `"min"` or `"max"`; see `_MonitorCallback`.
        baseline: float or None; training stops after `patience` epochs that do not beat it.
        restore_best_weights: bool; at the end of training, set the model's weights to those
            of the best epoch (also when training was not stopped early, as Keras).
        start_from_epoch: int, epochs of warm-up that are not monitored.

    Attributes:
        stopped_epoch: int, the epoch at which training was stopped (0 when it was not).
        best: the best monitored value; best_epoch: int, its epoch.
        best_weights: list of `np.ndarray`, the best epoch's weights (with
            `restore_best_weights`).

    Raises:
        ValueError: at the first epoch's end, as `_MonitorCallback`.

    Example:

    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models
    >>> model = models.Sequential([layers.Input((20,)), layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> history = model.fit(np.zeros((5, 20)), np.zeros((5, 1)), epochs=10,
    ...                     batch_size=1, verbose=0,
    ...                     callbacks=[callbacks.EarlyStopping(monitor="loss", patience=3)])
    >>> len(history.history["loss"])  # the loss stays 0: no improvement after epoch 0
    4
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        # Keras starts each `fit` afresh, so that one instance serves several runs.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print("Restoring model weights from the end of the best epoch: "
                       f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        """The monitored value in `logs`, or None (with a warning) when it is missing."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}", stacklevel=3)
        return value


class ModelCheckpoint(_MonitorCallback):
    """Saves the model or its weights during training (Keras 3's
    `keras.callbacks.ModelCheckpoint`).

    The file name is `filepath.format(epoch=<1-based epoch>, **logs)` (and `batch=<1-based
    batch>` when saving every `save_freq` batches), so `"ckpt-{epoch:02d}-{val_loss:.2f}.keras"`
    names each file after its epoch and validation loss. Each file is written through
    `model.save` / `model.save_weights`, atomically (a temporary file, then a rename), and its
    folder is created when missing, as Keras does.

    Formats: with `save_weights_only=True` the path must end in `.weights.h5` (Keras 3's
    weights file, which `load_weights` and Keras read), as Keras requires. Otherwise a path
    ending in `.keras` gets the Keras 3 format (and `.h5` the legacy one, as `model.save`
    writes it); where Keras refuses any other path, pylstm writes its own format there, as
    `model.save` does. Keras's formats need h5py, as `model.save` does.

    Args:
        filepath: str or path-like, the file name pattern.
        monitor: str, the `logs` key watched with `save_best_only`. Defaults to `"val_loss"`.
        verbose: 0 (silent) or 1 (prints each decision and save).
        save_best_only: bool; save only when the monitored value improves on the best so far
            (with no value in the logs, it warns and saves, as Keras).
        save_weights_only: bool; save only the weights (`model.save_weights`).
        mode: `"auto"`, `"min"` or `"max"`; see `_MonitorCallback`.
        save_freq: `"epoch"` (at each epoch's end) or an int > 0 (every `save_freq` training
            batches, counted across epochs).
        initial_value_threshold: float or None, the best value to beat first. The best value
            carries over to later `fit` calls, as in Keras.

    Raises:
        ValueError: for a `save_freq` that is neither `"epoch"` nor a positive int, or a
            `filepath` not ending in `.weights.h5` with `save_weights_only=True`.
        KeyError: at a save, when `filepath` names a key that the logs lack.
        OSError: at a save, when the formatted path is an existing folder.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> from pylstm.models import Sequential
    >>> folder = tempfile.mkdtemp()
    >>> model = Sequential([Input((5, 2)), LSTM(4), Dense(1)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> x, y = np.ones((8, 5, 2), dtype="float32"), np.ones((8, 1), dtype="float32")
    >>> checkpoint = ModelCheckpoint(os.path.join(folder, "epoch{epoch:02d}.pylstm"))
    >>> _ = model.fit(x, y, epochs=2, callbacks=[checkpoint], verbose=0)
    >>> sorted(os.listdir(folder))
    ['epoch01.pylstm', 'epoch02.pylstm']
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if save_freq != "epoch" and not (isinstance(save_freq, int)
                                         and not isinstance(save_freq, bool) and save_freq > 0):
            raise ValueError(f"Unrecognized save_freq: {save_freq!r}. Expected save_freq are "
                             "'epoch' or positive integer values.")
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the "
                             "filepath provided must end in `.weights.h5` (Keras weights "
                             f"format). Received: filepath={self.filepath}")
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            seen = batch + 1  # a new epoch: batches count from 0 again
        else:
            seen = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += seen
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save_model(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
            return True
        if self.monitor_op is None:  # saving every `save_freq` batches, before an epoch's end
            self._set_monitor_op()
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                       f"{current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, logs, filepath):
            return
        folder = os.path.dirname(filepath)
        if folder:
            os.makedirs(folder, exist_ok=True)
        try:
            if self.save_weights_only:
                self.model.save_weights(filepath)
            else:
                self.model.save(filepath)
        except IsADirectoryError:
            raise OSError("Please specify a non-directory filepath for ModelCheckpoint. "
                          f"Filepath used is an existing directory: {filepath}") from None
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch, batch, logs):
        logs = logs or {}
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: {e}") from None


def _learning_rate(optimizer):
    """The optimizer's learning rate now (a schedule's current value), as the float32 value
    Keras's rate variable holds."""
    if not hasattr(optimizer, "learning_rate"):
        raise ValueError('Optimizer must have a "learning_rate" attribute.')
    return float(np.float32(optimizer.learning_rate))


def _set_learning_rate(optimizer, value, caller):
    """Sets a float learning rate; refused, as in Keras, when the optimizer follows a
    schedule."""
    if any(callable(getattr(optimizer, name, None)) for name in ("learning_rate",
                                                                   "_learning_rate")):
        raise TypeError(
            f"{caller} cannot set the learning rate of an optimizer created with a "
            "`LearningRateSchedule` (or a callable) as its `learning_rate`: the schedule sets "
            "the rate at each step, so, as in Keras, it is not settable. Create the optimizer "
            f"with a float `learning_rate` to use {caller}."
        )
    optimizer.learning_rate = value


class ReduceLROnPlateau(_MonitorCallback):
    """Reduces the learning rate when a monitored quantity has stopped improving (Keras 3's
    `keras.callbacks.ReduceLROnPlateau`).

    At each epoch's end, after `patience` epochs without an improvement of more than
    `min_delta`, the optimizer's rate becomes `max(rate * factor, min_lr)` (unless it is
    already at `min_lr`), then `cooldown` epochs pass before the wait counts again. Each
    epoch's logs get the rate as `"learning_rate"`.

    Args:
        monitor: str, the `logs` key watched. Defaults to `"val_loss"`.
        factor: float < 1, the rate's multiplier. Defaults to 0.1.
        patience: int, epochs without improvement before a reduction. Defaults to 10.
        verbose: 0 (silent) or 1 (prints each reduction).
        mode: `"auto"`, `"min"` or `"max"`; see `_MonitorCallback`.
        min_delta: float, the least change that counts as an improvement. Defaults to 1e-4.
        cooldown: int, epochs after a reduction during which the wait stays 0.
        min_lr: float, the lowest rate.

    Raises:
        ValueError: for `factor >= 1`; at the first epoch's end, as `_MonitorCallback`.
        TypeError: at a reduction, when the optimizer's rate is a schedule (Keras refuses to
            set it too).

    Example:

    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models, optimizers
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile(optimizers.SGD(learning_rate=0.1), loss="mse")
    >>> reduce_lr = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
    >>> history = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=5, callbacks=[reduce_lr],
    ...                     verbose=0)  # the loss stays 0: halved after epochs 2 and 4
    >>> [round(lr, 4) for lr in history.history["learning_rate"]]
    [0.1, 0.1, 0.1, 0.05, 0.05]
    >>> round(model.optimizer.learning_rate, 4)
    0.025
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received "
                             f"factor={factor}")
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = _learning_rate(optimizer)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=3)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(optimizer, epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self, optimizer, epoch):
        old_lr = _learning_rate(optimizer)
        if not old_lr > np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        _set_learning_rate(optimizer, new_lr, "ReduceLROnPlateau")
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
        return True


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch's start from `schedule` (Keras 3's
    `keras.callbacks.LearningRateScheduler`).

    Args:
        schedule: callable `(epoch, lr) -> float` (epoch 0-based, `lr` the current rate) or
            `(epoch) -> float`.
        verbose: 0 (silent) or 1 (prints each rate set).

    Each epoch's logs get the rate as `"learning_rate"`.

    Raises:
        ValueError: at an epoch's start, when `schedule` returns something other than a
            float (`float`, `np.float32`, `np.float64`), as in Keras.
        TypeError: at an epoch's start, when the optimizer's rate is a schedule (Keras
            refuses to set it too).

    Example:

    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models, optimizers
    >>> def scheduler(epoch, lr):
    ...     return lr if epoch < 1 else lr * 0.5
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile(optimizers.SGD(learning_rate=0.1), loss="mse")
    >>> history = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=3, verbose=0,
    ...                     callbacks=[callbacks.LearningRateScheduler(scheduler)])
    >>> [round(lr, 4) for lr in history.history["learning_rate"]]
    [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"Argument `schedule` must be a callable (epoch, lr) -> float, "
                            f"received {schedule!r}.")
        self.schedule = schedule
        self.verbose = verbose

    def _takes_rate(self):
        try:
            inspect.signature(self.schedule).bind(0, 0.0)
        except TypeError:
            return False
        except ValueError:  # no signature (some builtins): Keras's two-argument call
            return True
        return True

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        rate = _learning_rate(optimizer)
        rate = self.schedule(epoch, rate) if self._takes_rate() else self.schedule(epoch)
        if not isinstance(rate, (float, np.float32, np.float64)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: "
                             f"{rate}")
        _set_learning_rate(optimizer, rate, "LearningRateScheduler")
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                   f"{rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model.optimizer)


class CSVLogger(Callback):
    """Streams each epoch's logs to a CSV file (Keras 3's `keras.callbacks.CSVLogger`).

    The header is `epoch` (0-based, as Keras writes it) and the first epoch's log keys,
    sorted; when they hold no `val_` key, `val_<key>` columns are added (written `NA`
    until validation values appear), as Keras does. Each row is flushed as it is written.
    It pickles and copies before or after `fit`, not during it (its file is open then).

    Args:
        filename: str or path-like, e.g. `"run/log.csv"`.
        separator: str, the field delimiter. Defaults to `","`.
        append: bool; append to an existing file (its header is written only when the file
            is empty) instead of overwriting it.

    Raises:
        OSError: at training's start, if the file cannot be opened for writing (e.g. its
            folder does not exist).

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> _ = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=2, verbose=0,
    ...               callbacks=[callbacks.CSVLogger(path)])
    >>> open(path).read().splitlines()
    ['epoch,loss,val_loss', '0,0.0,NA', '1,0.0,NA']
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def __getstate__(self):
        """The logger for `pickle` and `copy.deepcopy` between trainings (its file closed:
        `fit` opens it again).

        Raises:
            TypeError: during training, while its file is open (a file does not travel).
        """
        if self.csv_file is not None and not self.csv_file.closed:
            raise TypeError(f"CSVLogger cannot be pickled or copied while it writes "
                            f"'{self.filename}' (during `fit`); do it before or after training.")
        return dict(self.__dict__, csv_file=None, writer=None)

    def on_train_begin(self, logs=None):
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.append_header = not f.readline()
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self.writer is None:
            dialect = type("_Dialect", (csv.excel,), {"delimiter": self.sep})
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys],
                                         dialect=dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, _csv_value(logs.get(k, "NA"))) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(value):
    """A log value as Keras's CSVLogger writes it: a 1-D iterable as `"[a, b]"`."""
    if isinstance(value, str) or not np.iterable(value):
        return value
    return f'"[{", ".join(map(str, value))}]"'


class TerminateOnNaN(Callback):
    """Stops training when a batch's loss is NaN or infinite (Keras 3's
    `keras.callbacks.TerminateOnNaN`).

    Args:
        raise_error: bool; False sets `model.stop_training` (the other callbacks' end hooks
            still run), True raises at once.

    Raises:
        RuntimeError: with `raise_error=True`, at the first NaN or infinite loss.

    Example:

    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> model.set_weights([np.full((2, 1), np.nan), np.zeros(1)])  # as after a divergence
    >>> history = model.fit(np.ones((8, 2)), np.zeros((8, 1)), batch_size=4, epochs=5,
    ...                     verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    Batch 0: Invalid loss, terminating training
    >>> history.history
    {'loss': [nan]}
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        _print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback made of functions given for some of its hooks (Keras 3's
    `keras.callbacks.LambdaCallback`).

    Each function takes the hook's arguments: `(epoch, logs)` for `on_epoch_*`, `(logs)` for
    `on_{train,test,predict}_{begin,end}`, `(batch, logs)` for the batch hooks.

    Args:
        on_epoch_begin, on_epoch_end, on_train_begin, on_train_end, on_train_batch_begin,
        on_train_batch_end: callables or None.
        **kwargs: any other hook of `Callback` by name, e.g. `on_test_end=fn`.

    Raises:
        TypeError: for a keyword that is not a hook, or a hook that is not callable.

    Example:

    >>> import numpy as np
    >>> from pylstm import callbacks, layers, models
    >>> seen = []
    >>> callback = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    >>> model = models.Sequential([layers.Input((2,)), layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> _ = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=2, callbacks=[callback],
    ...               verbose=0)
    >>> seen
    [0, 1]
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        hooks = dict(kwargs, on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name, function in hooks.items():
            if name not in _HOOKS:
                raise TypeError(f"LambdaCallback received an unknown hook `{name}`; expected "
                                f"one of {', '.join(_HOOKS)}.")
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"Argument `{name}` must be a callable, received {function!r}.")
            setattr(self, name, function)
