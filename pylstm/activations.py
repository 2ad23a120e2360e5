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
    """Identity, `f(x) = x`: what `activation=None` means (Keras 3's `linear`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import linear
    >>> linear(np.array([-1.0, 0.0, 2.0]))
    array([-1.,  0.,  2.])
    """
    return x


@_register(lambda x, y, grad_y: grad_y * (x > 0))
def relu(x):
    """Rectified linear unit, `max(x, 0)` (Keras 3's `relu` with its default arguments).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import relu
    >>> relu(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    return np.maximum(x, 0)


@_register(lambda x, y, grad_y: grad_y * y * (1 - y))
def sigmoid(x):
    """Logistic sigmoid, `1 / (1 + exp(-x))` (Keras 3's `sigmoid`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import sigmoid
    >>> np.round(sigmoid(np.array([-1.0, 0.0, 2.0])), 4)
    array([0.2689, 0.5   , 0.8808])
    >>> sigmoid.backward(np.zeros(1), sigmoid(np.zeros(1)), np.ones(1))  # y (1 - y)
    array([0.25])
    """
    return special.expit(x)


@_register(lambda x, y, grad_y: grad_y * (1 - y * y))
def tanh(x):
    """Hyperbolic tangent, `(exp(x) - exp(-x)) / (exp(x) + exp(-x))` (Keras 3's `tanh`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import tanh
    >>> np.round(tanh(np.array([-1.0, 0.0, 2.0])), 4)
    array([-0.7616,  0.    ,  0.964 ])
    """
    return np.tanh(x)


@_register(lambda x, y, grad_y: y * (grad_y - np.sum(grad_y * y, axis=-1, keepdims=True)))
def softmax(x):
    """Softmax, `exp(x) / sum(exp(x))` over the last axis (Keras 3's `softmax` with its
    default `axis=-1`).

    Its backward is the Jacobian-vector product `y * (g - sum(g * y, axis=-1))`.

    Args:
        x: floating-point `np.ndarray` of any shape, the classes on the last axis.

    Returns:
        `np.ndarray` of `x`'s shape and dtype; each row along the last axis sums to 1.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import softmax
    >>> np.round(softmax(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])), 4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    """
    return special.softmax(x, axis=-1)


@_register(lambda x, y, grad_y: grad_y * ((x > -3) & (x < 3)) / 6)
def hard_sigmoid(x):
    """Keras 3's piecewise-linear sigmoid, `relu6(x + 3) / 6`.

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import hard_sigmoid
    >>> np.round(hard_sigmoid(np.array([-4.0, 0.0, 2.0])), 4)
    array([0.    , 0.5   , 0.8333])
    """
    return np.clip(x + 3, 0, 6) / 6


@_register(lambda x, y, grad_y: grad_y * np.where(x > 0, 1, y + 1))
def elu(x):
    """Exponential linear unit: `x` for `x > 0`, else `exp(x) - 1` (Keras 3's `elu` with
    `alpha=1`; Clevert et al., 2016).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import elu
    >>> np.round(elu(np.array([-1.0, 0.0, 2.0])), 4)
    array([-0.6321,  0.    ,  2.    ])
    """
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


@_register(lambda x, y, grad_y: grad_y * np.where(x < 0, y + _SELU_SCALE * _SELU_ALPHA, _SELU_SCALE))
def selu(x):
    """Scaled exponential linear unit, `scale * elu(x, alpha)`, with Klambauer et al.'s (2017)
    `scale` and `alpha` (Keras 3's `selu`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import selu
    >>> np.round(selu(np.array([-1.0, 0.0, 2.0])), 4)
    array([-1.1113,  0.    ,  2.1014])
    """
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


@_register(lambda x, y, grad_y: grad_y * special.expit(x))
def softplus(x):
    """Softplus, `log(1 + exp(x))`, computed without overflow (Keras 3's `softplus`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import softplus
    >>> np.round(softplus(np.array([-1.0, 0.0, 1000.0])), 4)
    array([3.133e-01, 6.931e-01, 1.000e+03])
    """
    return np.logaddexp(0, x)


@_register(lambda x, y, grad_y: grad_y / np.square(1 + np.abs(x)))
def softsign(x):
    """Softsign, `x / (1 + |x|)` (Keras 3's `softsign`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import softsign
    >>> np.round(softsign(np.array([-1.0, 0.0, 2.0])), 4)
    array([-0.5   ,  0.    ,  0.6667])
    """
    return x / (1 + np.abs(x))


def _swish_backward(x, y, grad_y):
    s = special.expit(x)
    return grad_y * s * (1 + x * (1 - s))


@_register(_swish_backward)
def swish(x):
    """Swish, `x * sigmoid(x)` (Keras 3's `silu` and `swish`; `silu` is this function).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import swish
    >>> np.round(swish(np.array([-1.0, 0.0, 2.0])), 4)
    array([-0.2689,  0.    ,  1.7616])
    """
    return x * special.expit(x)


silu = swish
_ACTIVATIONS["silu"] = silu


@_register(lambda x, y, grad_y: grad_y * y)
def exponential(x):
    """Exponential, `exp(x)` (Keras 3's `exponential`).

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import exponential
    >>> np.round(exponential(np.array([-1.0, 0.0, 2.0])), 4)
    array([0.3679, 1.    , 7.3891])
    """
    return np.exp(x)


@_register(lambda x, y, grad_y: grad_y * ((x > -2.5) & (x < 2.5)) * 0.2)
def legacy_hard_sigmoid(x):
    """Keras 2's piecewise-linear sigmoid, `clip(0.2 * x + 0.5, 0, 1)`.

    Keras 3 redefined `"hard_sigmoid"` as `relu6(x + 3) / 6`; models saved by Keras 2 with
    `"hard_sigmoid"` mean this one.

    Args:
        x: floating-point `np.ndarray` of any shape.

    Returns:
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import hard_sigmoid, legacy_hard_sigmoid
    >>> x = np.array([-1.0, 0.0, 2.0])
    >>> np.round(legacy_hard_sigmoid(x), 4), np.round(hard_sigmoid(x), 4)
    (array([0.3, 0.5, 0.9]), array([0.3333, 0.5   , 0.8333]))
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

    Returns:
        The activation: a built-in function, `identifier` itself, or the pair wrapped in one
        callable; each maps an `np.ndarray` to one of the same shape.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a callable
            without a `backward` (pylstm has no autodiff).

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import get, tanh
    >>> get("tanh") is tanh, get(None).__name__
    (True, 'linear')
    >>> cube = get((lambda x: x ** 3, lambda x, y, grad_y: grad_y * 3 * x ** 2))
    >>> cube(np.array([2.0])), cube.backward(np.array([2.0]), None, np.array([1.0]))
    (array([8.]), array([12.]))
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
    """Returns the activation's name: `"relu"` for `relu`, the forward's `__name__` for others.

    Args:
        activation: any identifier `get` accepts.

    Returns:
        str, the name that a layer's `get_config()` stores (`"swish"` for `silu`, the same
        function).

    Raises:
        ValueError: for an identifier `get` refuses.

    Example:

    >>> from pylstm.activations import serialize, silu, tanh
    >>> serialize(tanh), serialize(silu), serialize(None)
    ('tanh', 'swish', 'linear')
    """
    return get(activation).__name__


def deserialize(name):
    """Returns the built-in activation named `name`: the inverse of `serialize`.

    Args:
        name: str, a built-in activation's name such as `"relu"`, or any identifier `get`
            accepts.

    Returns:
        The activation function, as `get(name)`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).

    Example:

    >>> import numpy as np
    >>> from pylstm.activations import deserialize, serialize, softsign
    >>> deserialize(serialize(softsign)) is softsign
    True
    >>> deserialize("relu")(np.array([-1.0, 3.0]))
    array([0., 3.])
    """
    return get(name)


__all__ = sorted(_ACTIVATIONS) + ["get", "serialize", "deserialize"]
