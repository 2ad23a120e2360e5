"""`RMSprop`, Keras 3's `keras.optimizers.RMSprop`."""

import numpy as np

from pylstm.optimizers.optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012) in Keras 3's form::

        v = rho v + (1 - rho) g^2
        a = rho a + (1 - rho) g                    # centered only
        increment = learning_rate * g / sqrt(v - a^2 + epsilon)   # (v + epsilon) if not centered
        mom = momentum * mom + increment;  w -= mom               # w -= increment if momentum 0

    Note `epsilon` sits inside the square root, unlike `torch.optim.RMSprop` (see
    `pylstm.optim.RMSprop`).

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        rho: float, decay of the mean square.
        momentum: float >= 0.
        epsilon: float.
        centered: bool, normalise by the estimated variance instead of the second moment.
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
    >>> RMSprop(learning_rate=0.1).apply([w])  # v = 0.1 g^2: a step of 0.1 / sqrt(0.1)
    >>> np.round(w.value, 4)
    array([ 0.6838, -1.6838])
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        self._update_slots = ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + (
            ("average_gradient",) if self.centered else ())

    def _update(self, value, grad, slots, learning_rate):
        rho = self.rho
        velocity = slots["velocity"]
        velocity *= rho
        velocity += (1 - rho) * self._square(grad)
        if self.centered:
            avg = slots["average_gradient"]
            avg *= rho
            avg += (1 - rho) * grad
            denominator = velocity - np.square(avg) + self.epsilon
        else:
            denominator = velocity + self.epsilon
        increment = learning_rate * grad / np.sqrt(denominator)
        if self.momentum > 0:
            mom = slots["momentum"]
            mom *= self.momentum
            mom += increment
            value -= mom
        else:
            value -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}
