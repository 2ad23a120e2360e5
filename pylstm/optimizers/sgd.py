"""`SGD`, Keras 3's `keras.optimizers.SGD`."""

from pylstm.optimizers.optimizer import Optimizer


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as Keras 3 writes it::

        velocity = momentum * velocity - learning_rate * g
        w += velocity                                         # momentum
        w += momentum * velocity - learning_rate * g          # nesterov

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        momentum: float in `[0, 1]`.
        nesterov: bool.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name: see
            `Optimizer`.

    Raises:
        ValueError: for `momentum` outside `[0, 1]`, or an invalid common argument.

    Example:

    >>> from pylstm.layers import Dense, Input, LSTM
    >>> from pylstm.models import Sequential
    >>> model = Sequential([Input((5, 2)), LSTM(4), Dense(1)])
    >>> model.compile(optimizer=SGD(learning_rate=0.01, momentum=0.9, nesterov=True), loss="mse")
    >>> model.optimizer.get_config()["momentum"]
    0.9
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"Argument `momentum` must be in [0, 1], received {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._update_slots = ("momentum",) if self.momentum else ()

    def _update(self, value, grad, slots, learning_rate):
        if not self.momentum:
            value -= learning_rate * grad
            return
        m = slots["momentum"]
        m *= self.momentum
        m -= learning_rate * grad
        value += self.momentum * m - learning_rate * grad if self.nesterov else m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
