"""Optimizers with Keras 3's update formulas (`keras.optimizers`), in NumPy.

`optimizer.apply(variables)` reads each trainable `Variable.grad`, clips it (Keras's
`clipnorm` per variable, `global_clipnorm` over all, or `clipvalue` elementwise; at most one),
updates `Variable.value` in place, applies `Variable.constraint`, and increments `iterations`.
Slot arrays (momentums, velocities) are created on a variable's first update, in its dtype.
"""

import math

import numpy as np

from pylstm._serialization import Configurable, Registry


class Optimizer(Configurable):
    """Base class: subclasses implement `_update(value, grad, slots)` and `_slot_names`.

    Args:
        learning_rate: float > 0.
        clipnorm: float or None; each gradient is rescaled to an L2 norm of at most `clipnorm`.
        clipvalue: float or None; each gradient entry is clipped to `[-clipvalue, clipvalue]`.
        global_clipnorm: float or None; all gradients are rescaled together so that their
            joint L2 norm is at most `global_clipnorm`.

    Raises:
        ValueError: for a non-positive learning rate or more than one clipping argument.
    """

    _slot_names = ()

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None):
        if not learning_rate > 0:
            raise ValueError(f"Argument `learning_rate` must be > 0, received {learning_rate!r}.")
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set, received "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}."
            )
        self.learning_rate = float(learning_rate)
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.iterations = 0
        self._slots = {}

    def apply(self, variables):
        """Takes one optimization step on the trainable `variables`, in place.

        Args:
            variables: list of `pylstm.layers.layer.Variable`; frozen ones are skipped.
        """
        variables = [v for v in variables if v.trainable]
        grads = self._clip([v.grad for v in variables])
        for var, grad in zip(variables, grads):
            slots = self._slots.get(var)
            if slots is None:
                slots = self._slots[var] = {k: np.zeros_like(var.value) for k in self._slot_names}
            self._update(var.value, grad.astype(var.dtype, copy=False), slots)
            if var.constraint is not None:
                constrained = np.asarray(var.constraint(var.value))
                if constrained.shape != var.value.shape:
                    raise ValueError(f"The constraint of variable '{var.name}' returned shape "
                                     f"{constrained.shape}; expected {var.value.shape}.")
                var.value[...] = constrained
        self.iterations += 1

    def _clip(self, grads):
        if self.clipnorm is not None and self.clipnorm > 0:
            return [g * (self.clipnorm / max(np.linalg.norm(g), self.clipnorm)) for g in grads]
        if self.global_clipnorm is not None and self.global_clipnorm > 0:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            scale = self.global_clipnorm / max(norm, self.global_clipnorm)
            return [g * scale for g in grads]
        if self.clipvalue is not None and self.clipvalue > 0:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _update(self, value, grad, slots):
        raise NotImplementedError

    def get_config(self):
        return {"learning_rate": self.learning_rate, **_clip_config(self)}


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as Keras 3 writes it::

        velocity = momentum * velocity - learning_rate * g
        w += velocity                                         # momentum
        w += momentum * velocity - learning_rate * g          # nesterov

    Args:
        learning_rate: float.
        momentum: float in `[0, 1]`.
        nesterov: bool.
        clipnorm, clipvalue, global_clipnorm: see `Optimizer`.

    Raises:
        ValueError: for `momentum` outside `[0, 1]`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"Argument `momentum` must be in [0, 1], received {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum else ()

    def _update(self, value, grad, slots):
        lr = self.learning_rate
        if not self.momentum:
            value -= lr * grad
            return
        m = slots["momentum"]
        m *= self.momentum
        m -= lr * grad
        value += self.momentum * m - lr * grad if self.nesterov else m

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov, **_clip_config(self)}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014) in Keras 3's form, with `epsilon` outside the bias correction::

        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        alpha = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        w -= alpha * m / (sqrt(v) + epsilon)      # v replaced by max(v_hat, v) with amsgrad

    This differs from `torch.optim.Adam` (which adds `epsilon` to the bias-corrected
    `sqrt(v_hat)`) by an effective epsilon of `epsilon * sqrt(1 - beta_2^t)`.

    Args:
        learning_rate: float.
        beta_1, beta_2: floats in `[0, 1)`, the moments' decay rates.
        epsilon: float, Kingma & Ba's "epsilon hat".
        amsgrad: bool, the AMSGrad variant (Reddi et al., 2018).
        clipnorm, clipvalue, global_clipnorm: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)
        self._slot_names = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _update(self, value, grad, slots):
        t = self.iterations + 1
        alpha = self.learning_rate * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        m, v = slots["m"], slots["v"]
        m += (grad - m) * (1 - self.beta_1)
        v += (np.square(grad) - v) * (1 - self.beta_2)
        if self.amsgrad:
            np.maximum(slots["v_hat"], v, out=slots["v_hat"])
            v = slots["v_hat"]
        value -= alpha * m / (np.sqrt(v) + self.epsilon)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": self.amsgrad,
                **_clip_config(self)}


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012) in Keras 3's form::

        v = rho v + (1 - rho) g^2
        a = rho a + (1 - rho) g                    # centered only
        increment = learning_rate * g / sqrt(v - a^2 + epsilon)   # (v + epsilon) if not centered
        mom = momentum * mom + increment;  w -= mom               # w -= increment if momentum 0

    Note `epsilon` sits inside the square root, unlike `torch.optim.RMSprop`.

    Args:
        learning_rate: float.
        rho: float, decay of the mean square.
        momentum: float >= 0.
        epsilon: float.
        centered: bool, normalise by the estimated variance instead of the second moment.
        clipnorm, clipvalue, global_clipnorm: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        self._slot_names = ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + (
            ("average_gradient",) if self.centered else ())

    def _update(self, value, grad, slots):
        rho = self.rho
        velocity = slots["velocity"]
        velocity *= rho
        velocity += (1 - rho) * np.square(grad)
        if self.centered:
            avg = slots["average_gradient"]
            avg *= rho
            avg += (1 - rho) * grad
            denominator = velocity - np.square(avg) + self.epsilon
        else:
            denominator = velocity + self.epsilon
        increment = self.learning_rate * grad / np.sqrt(denominator)
        if self.momentum > 0:
            mom = slots["momentum"]
            mom *= self.momentum
            mom += increment
            value -= mom
        else:
            value -= increment

    def get_config(self):
        return {"learning_rate": self.learning_rate, "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered, **_clip_config(self)}


def _clip_config(optimizer):
    return {"clipnorm": optimizer.clipnorm, "clipvalue": optimizer.clipvalue,
            "global_clipnorm": optimizer.global_clipnorm}


_REGISTRY = Registry("optimizer", [SGD, Adam, RMSprop])


def get(identifier):
    """Returns an optimizer.

    Args:
        identifier: a name (`"sgd"`, `"adam"`, `"rmsprop"`, or the class name), a dict
            `{"class_name": ..., "config": ...}`, or an `Optimizer` (returned as is).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or another type.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, (str, dict)):
        return _REGISTRY.get(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}.")


# `{"class_name": str, "config": dict}` and back, JSON-serializable (Keras's protocol).
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "get", "serialize", "deserialize"]
