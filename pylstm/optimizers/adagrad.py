"""Per-coordinate rates from accumulated squares, with Keras 3's formulas: `Adagrad`,
`Adadelta`."""

import numpy as np

from pylstm.optimizers.optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011), as `keras.optimizers.Adagrad`::

        accumulator += g^2      # starts at initial_accumulator_value
        w -= learning_rate * g / sqrt(accumulator + epsilon)

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        initial_accumulator_value: float >= 0, the accumulators' starting value.
        epsilon: float.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name: see
            `Optimizer`.

    Raises:
        ValueError: for an invalid common argument (see `Optimizer`).

    Example:

    >>> import numpy as np
    >>> from pylstm.variable import Variable
    >>> w = Variable("w", np.array([1.0, -2.0]))
    >>> w.grad[...] = [0.5, -0.5]
    >>> Adagrad(learning_rate=0.1).apply([w])  # accumulator 0.1 + 0.25
    >>> np.round(w.value, 4)
    array([ 0.9155, -1.9155])
    """

    _update_slots = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _initial_slot(self, name, value):
        if name == "accumulator":
            return np.full_like(value, self.initial_accumulator_value)
        return super()._initial_slot(name, value)

    def _update(self, value, grad, slots, learning_rate):
        accumulator = slots["accumulator"]
        accumulator += self._square(grad)
        value -= learning_rate * grad / np.sqrt(accumulator + self.epsilon)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012), as `keras.optimizers.Adadelta` (which keeps a learning rate,
    1.0 in the paper)::

        E[g^2] = rho E[g^2] + (1 - rho) g^2
        delta = -sqrt(E[dx^2] + epsilon) / sqrt(E[g^2] + epsilon) * g
        E[dx^2] = rho E[dx^2] + (1 - rho) delta^2
        w += learning_rate * delta

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        rho: float, the decay rate of both averages.
        epsilon: float.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name: see
            `Optimizer`.

    Raises:
        ValueError: for an invalid common argument (see `Optimizer`).

    Example:

    >>> import numpy as np
    >>> from pylstm.variable import Variable
    >>> w = Variable("w", np.array([1.0, -2.0]))
    >>> w.grad[...] = [0.5, -0.5]
    >>> Adadelta(learning_rate=1.0).apply([w])  # the paper's rate of 1
    >>> np.round(w.value, 4)
    array([ 0.9986, -1.9986])
    """

    _update_slots = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def _update(self, value, grad, slots, learning_rate):
        rho, eps = self.rho, self.epsilon
        grad_sq, delta_sq = slots["accumulated_grad"], slots["accumulated_delta_var"]
        grad_sq *= rho
        grad_sq += (1 - rho) * self._square(grad)
        rms_delta, rms_grad = np.sqrt(delta_sq + eps), np.sqrt(grad_sq + eps)
        delta = -rms_delta * grad / rms_grad
        delta_sq *= rho
        delta_sq += (1 - rho) * self._square(delta, rms_delta / rms_grad)
        value += learning_rate * delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}
