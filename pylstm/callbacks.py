"""Training callbacks (Keras 3's `keras.callbacks`): the hook protocol and the callbacks."""


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


class History(Callback):
    """Records each epoch's logs; `fit` returns it (and sets it as `model.history`).

    Attributes:
        history: dict `name -> list of float`, one entry per epoch, e.g. `"loss"`, `"mae"`,
            `"val_loss"`, `"val_mae"`.
        epoch: list of the epoch indices run (0-based, starting at `initial_epoch`).
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
