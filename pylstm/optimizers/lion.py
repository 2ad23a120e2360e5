"""`Lion`, Keras 3's `keras.optimizers.Lion`."""

import numpy as np

from pylstm.optimizers.optimizer import Optimizer


class Lion(Optimizer):
    """Lion, the sign-momentum optimizer found by program search (Chen et al., 2023), as
    `keras.optimizers.Lion`::

        w -= learning_rate * sign(beta_1 m + (1 - beta_1) g)
        m = beta_2 m + (1 - beta_2) g

    Its steps have the size of the learning rate in every coordinate: use a rate 3 to 10
    times smaller than Adam's (and a weight decay as many times larger).

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        beta_1: float in `(0, 1]`, the interpolation of the step's direction.
        beta_2: float, the momentum's decay rate.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name: see
            `Optimizer`.

    Raises:
        ValueError: for `beta_1` outside `(0, 1]` (Lion would become SignSGD), or an invalid
            common argument.

    Example:

    >>> import numpy as np
    >>> from pylstm.variable import Variable
    >>> w = Variable("w", np.array([1.0, -2.0]))
    >>> w.grad[...] = [0.5, -0.001]
    >>> Lion(learning_rate=0.1).apply([w])  # a step of the rate's size in every coordinate
    >>> w.value
    array([ 0.9, -1.9])
    """

    _update_slots = ("momentum",)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        if not 0 < beta_1 <= 1:
            raise ValueError("Argument `beta_1` must be in the (0, 1] range (otherwise the "
                             f"optimizer degenerates to SignSGD), received {beta_1!r}.")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)

    def _update(self, value, grad, slots, learning_rate):
        m = slots["momentum"]
        value -= learning_rate * np.sign(self.beta_1 * m + (1.0 - self.beta_1) * grad)
        m *= self.beta_2
        m += (1.0 - self.beta_2) * grad

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}
