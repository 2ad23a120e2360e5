"""Training callbacks (Keras 3's `keras.callbacks`): the hook protocol and `History`."""


class Callback:
    """Base class: `Sequential.fit` calls these hooks; override the ones you need.

    `logs` is a dict of the epoch's mean `"loss"`, metrics and `"val_*"` values (floats).
    Setting `self.model.stop_training = True` ends training after the current epoch.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass


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
