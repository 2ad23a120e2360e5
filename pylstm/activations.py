"""Elementwise activations with hand-written derivatives (Keras 3's `keras.activations`).

Each built-in activation is a NumPy function `f(x) -> y` carrying a `backward(x, y, grad_y)
-> grad_x` attribute; derivatives are taken from the cached output `y` where that is cheaper
(sigmoid' = y(1-y), tanh' = 1-y^2). At a kink the derivative is the one TensorFlow's gradients
use (relu'(0) = 0, elu'(0) = 1, selu'(0) = scale). All functions keep the shape and dtype of `x`.

Every one of them except `softmax` is also compiled into the LSTM core (`pylstm._core`), so an
LSTM given any of these names, or these functions, runs with no Python call per step; other
callables run on the NumPy path of `pylstm.ops.lstm_forward`.
"""

import numpy as np
from scipy import special

# SELU's constants (Klambauer et al. 2017; the values Keras and TensorFlow use): the one Python
# definition, which pylstm._reference imports; the compiled core's are in pylstm/_gates.h, and
# a test checks that the two agree.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

_ACTIVATIONS = {}


def _register(backward):
    def wrap(forward):
        forward.backward = backward
        _ACTIVATIONS[forward.__name__] = forward
        return forward

    return wrap


@_register(lambda x, y, grad_y: grad_y)
def linear(x):
    """Identity, `f(x) = x` (what `activation=None` means)."""
    return x


@_register(lambda x, y, grad_y: grad_y * (x > 0))
def relu(x):
    """`max(x, 0)`."""
    return np.maximum(x, 0)


@_register(lambda x, y, grad_y: grad_y * y * (1 - y))
def sigmoid(x):
    """`1 / (1 + exp(-x))`."""
    return special.expit(x)


@_register(lambda x, y, grad_y: grad_y * (1 - y * y))
def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(x)


@_register(lambda x, y, grad_y: y * (grad_y - np.sum(grad_y * y, axis=-1, keepdims=True)))
def softmax(x):
    """`exp(x) / sum(exp(x))` over the last axis (Keras's default `axis=-1`).

    Its backward is the Jacobian-vector product `y * (g - sum(g * y, axis=-1))`.
    """
    return special.softmax(x, axis=-1)


@_register(lambda x, y, grad_y: grad_y * ((x > -3) & (x < 3)) / 6)
def hard_sigmoid(x):
    """Keras 3's piecewise-linear sigmoid: `relu6(x + 3) / 6`."""
    return np.clip(x + 3, 0, 6) / 6


@_register(lambda x, y, grad_y: grad_y * np.where(x > 0, 1, y + 1))
def elu(x):
    """`x` for `x > 0`, else `exp(x) - 1` (alpha 1, Clevert et al., 2016)."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


@_register(lambda x, y, grad_y: grad_y * np.where(x < 0, y + _SELU_SCALE * _SELU_ALPHA, _SELU_SCALE))
def selu(x):
    """`scale * elu(x, alpha)`, with Klambauer et al.'s (2017) `scale` and `alpha`."""
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


@_register(lambda x, y, grad_y: grad_y * special.expit(x))
def softplus(x):
    """`log(1 + exp(x))`, computed without overflow."""
    return np.logaddexp(0, x)


@_register(lambda x, y, grad_y: grad_y / np.square(1 + np.abs(x)))
def softsign(x):
    """`x / (1 + |x|)`."""
    return x / (1 + np.abs(x))


def _swish_backward(x, y, grad_y):
    s = special.expit(x)
    return grad_y * s * (1 + x * (1 - s))


@_register(_swish_backward)
def swish(x):
    """`x * sigmoid(x)` (also called SiLU)."""
    return x * special.expit(x)


silu = swish
_ACTIVATIONS["silu"] = silu


@_register(lambda x, y, grad_y: grad_y * y)
def exponential(x):
    """`exp(x)`."""
    return np.exp(x)


@_register(lambda x, y, grad_y: grad_y * ((x > -2.5) & (x < 2.5)) * 0.2)
def legacy_hard_sigmoid(x):
    """Keras 2's piecewise-linear sigmoid, `clip(0.2 * x + 0.5, 0, 1)`.

    Keras 3 redefined `"hard_sigmoid"` as `relu6(x + 3) / 6`; models saved by Keras 2 with
    `"hard_sigmoid"` mean this one.
    """
    return np.clip(0.2 * x + 0.5, 0, 1)


class _Custom:
    """A user's `(forward, backward)` pair, callable like the built-ins."""

    def __init__(self, forward, backward):
        self.forward = forward
        self.backward = backward
        self.__name__ = getattr(forward, "__name__", type(forward).__name__)

    def __call__(self, x):
        return self.forward(x)


def get(identifier):
    """Returns an activation: a callable `f(x) -> y` with `f.backward(x, y, grad_y) -> grad_x`.

    Args:
        identifier: None (linear), a name such as `"relu"`, a built-in activation function,
            a callable with a `backward` attribute, or a pair `(forward, backward)` of callables.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a callable
            without a `backward` (pylstm has no autodiff).
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        try:
            return _ACTIVATIONS[identifier]
        except KeyError:
            raise ValueError(
                f"Unknown activation {identifier!r}. Valid names: {', '.join(sorted(_ACTIVATIONS))}."
            ) from None
    if isinstance(identifier, tuple) and len(identifier) == 2 and all(map(callable, identifier)):
        return _Custom(*identifier)
    if callable(identifier) and callable(getattr(identifier, "backward", None)):
        return identifier
    raise ValueError(
        "Could not interpret activation identifier: expected None, a name, a callable with a "
        f"`backward(x, y, grad_y)` attribute or a (forward, backward) pair, received {identifier!r}."
    )


def serialize(activation):
    """Returns the activation's name: `"relu"` for `relu`, the forward's `__name__` for others."""
    return get(activation).__name__


def deserialize(name):
    """Inverse of `serialize` for built-in activations; see `get`."""
    return get(name)


__all__ = sorted(_ACTIVATIONS) + ["get", "serialize", "deserialize"]
