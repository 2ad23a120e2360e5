"""The Adam family with Keras 3's formulas: `Adam`, `AdamW`, `Adamax`, `Nadam`."""

import math

import numpy as np

from pylstm.optimizers.optimizer import Optimizer


def adam_update(value, grad, m, v, v_hat, learning_rate, beta_1, beta_2, epsilon, t,
                square=None):
    """One Adam step in Keras's form (see `Adam`), in place on `value`, `m`, `v` and `v_hat`.

    `pylstm.optim.Adam` takes torch's step by passing `epsilon * sqrt(1 - beta_2^t)`.

    Args:
        value: float array, the weights, updated in place.
        grad: array of `value`'s shape and dtype, the gradient.
        m, v: arrays of `value`'s shape and dtype, the first and second moments (zeros
            before the first step), updated in place.
        v_hat: with AMSGrad, an array of `value`'s shape and dtype, the running maximum of
            `v`, updated in place; None without.
        learning_rate: float.
        beta_1, beta_2: floats in `[0, 1)`, the moments' decay rates.
        epsilon: float, added to `sqrt(v)`.
        t: int >= 1, the step's number (for the bias corrections).
        square: array of `value`'s shape and dtype, `g^2` as the optimizer computes it
            (`Optimizer._square`), or None for `np.square(grad)`.

    Returns:
        None.

    Example:

    >>> import numpy as np
    >>> w, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    >>> adam_update(w, np.array([0.5, -0.5]), m, v, None, learning_rate=0.1, beta_1=0.9,
    ...             beta_2=0.999, epsilon=1e-7, t=1)
    >>> np.round(w, 4), m
    (array([ 0.9, -1.9]), array([ 0.05, -0.05]))
    """
    alpha = learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    m += (grad - m) * (1 - beta_1)
    v += ((np.square(grad) if square is None else square) - v) * (1 - beta_2)
    if v_hat is not None:
        np.maximum(v_hat, v, out=v_hat)
        v = v_hat
    value -= alpha * m / (np.sqrt(v) + epsilon)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014) in Keras 3's form, with `epsilon` outside the bias correction::

        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        alpha = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        w -= alpha * m / (sqrt(v) + epsilon)      # v replaced by max(v_hat, v) with amsgrad

    where `t = iterations + 1`. This differs from `torch.optim.Adam` (which adds `epsilon` to
    the bias-corrected `sqrt(v_hat)`; see `pylstm.optim.Adam`) by an effective epsilon of
    `epsilon * sqrt(1 - beta_2^t)`.

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        beta_1, beta_2: floats in `[0, 1)`, the moments' decay rates.
        epsilon: float, Kingma & Ba's "epsilon hat".
        amsgrad: bool, the AMSGrad variant (Reddi et al., 2018).
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name: see
            `Optimizer`.

    Raises:
        ValueError: for an invalid common argument (see `Optimizer`).

    Example:

    >>> import numpy as np
    >>> from pylstm.layers import Dense, Input, LSTM
    >>> from pylstm.models import Sequential
    >>> model = Sequential([Input((5, 2)), LSTM(4), Dense(1)])
    >>> model.compile(optimizer=Adam(learning_rate=1e-3, clipnorm=1.0), loss="mse")
    >>> x, y = np.ones((8, 5, 2), dtype="float32"), np.ones((8, 1), dtype="float32")
    >>> _ = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    >>> model.optimizer.iterations
    1
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)
        self._update_slots = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _update(self, value, grad, slots, learning_rate):
        adam_update(value, grad, slots["m"], slots["v"], slots.get("v_hat"), learning_rate,
                    self.beta_1, self.beta_2, self.epsilon, self.iterations + 1,
                    self._square(grad))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as
    `keras.optimizers.AdamW`: `Adam`'s step after `w -= w * weight_decay * learning_rate`
    (the decay Keras applies in every optimizer, on by default here). Exempt variables with
    `exclude_from_weight_decay`.

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        weight_decay: float, the decay per unit of learning rate.
        beta_1, beta_2, epsilon, amsgrad: see `Adam`.
        clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency,
        loss_scale_factor, gradient_accumulation_steps, name: see `Optimizer`.

    Raises:
        ValueError: if `weight_decay` is None, or for an invalid common argument.

    Example:

    >>> import numpy as np
    >>> from pylstm.variable import Variable
    >>> kernel, bias = Variable("kernel", np.ones(2)), Variable("bias", np.ones(2))
    >>> optimizer = AdamW(learning_rate=0.1, weight_decay=0.5)
    >>> optimizer.exclude_from_weight_decay(var_names=["bias"])
    >>> optimizer.apply([kernel, bias])  # zero gradients: only the decay moves the weights
    >>> kernel.value, bias.value
    (array([0.95, 0.95]), array([1., 1.]))
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float, received None.")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)


class Adamax(Optimizer):
    """Adamax, Adam's infinity-norm variant (Kingma & Ba, 2014, section 7), as
    `keras.optimizers.Adamax`::

        m = beta_1 m + (1 - beta_1) g;  u = max(beta_2 u, |g|)
        w -= learning_rate * m / ((1 - beta_1^t) (u + epsilon))

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        beta_1: float, the first moment's decay rate.
        beta_2: float, the decay of the weighted infinity norm.
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
    >>> Adamax(learning_rate=0.1).apply([w])  # the first step is learning_rate * sign(g)
    >>> np.round(w.value, 4)
    array([ 0.9, -1.9])
    """

    _update_slots = ("momentum", "norm")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def _update(self, value, grad, slots, learning_rate):
        t = self.iterations + 1
        m, u = slots["momentum"], slots["norm"]
        m += (grad - m) * (1 - self.beta_1)
        np.maximum(self.beta_2 * u, self._abs(grad), out=u)
        value -= learning_rate * m / ((1 - self.beta_1**t) * (u + self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat, 2016), as `keras.optimizers.Nadam`, with the
    momentum schedule `mu_t = beta_1 (1 - 0.5 * 0.96^t)` and its running product
    `prod_t = mu_1 ... mu_t` (`_u_product`, the one scalar Keras keeps besides the slots)::

        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        m_hat = mu_{t+1} m / (1 - prod_t mu_{t+1}) + (1 - mu_t) g / (1 - prod_t)
        w -= learning_rate * m_hat / (sqrt(v / (1 - beta_2^t)) + epsilon)

    Args:
        learning_rate: float, schedule or callable (see `Optimizer`).
        beta_1, beta_2: floats, the moments' decay rates.
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
    >>> Nadam(learning_rate=0.1).apply([w])
    >>> np.round(w.value, 4)
    array([ 0.8937, -1.8937])
    """

    _update_slots = ("momentum", "velocity")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self._u_product = 1.0
        self._u_product_step = 0

    def _mu(self, t):
        return self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def _prepare_update(self):
        t = self.iterations + 1
        if self._u_product_step != t - 1:  # iterations restored from a saved state
            self._u_product = math.prod(self._mu(s) for s in range(1, t))
        self._u_product *= self._mu(t)
        self._u_product_step = t

    def _update(self, value, grad, slots, learning_rate):
        t = self.iterations + 1
        mu_t, mu_next = self._mu(t), self._mu(t + 1)
        m, v = slots["momentum"], slots["velocity"]
        m += (grad - m) * (1 - self.beta_1)
        v += (self._square(grad) - v) * (1 - self.beta_2)
        m_hat = (mu_next / (1 - self._u_product * mu_next)) * m + (
            (1 - mu_t) / (1 - self._u_product)) * grad
        v_hat = v / (1 - self.beta_2**t)
        value -= learning_rate * m_hat / (np.sqrt(v_hat) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
