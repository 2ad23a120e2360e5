"""Optimizers with Keras 3's names, arguments and update formulas (`keras.optimizers`), in
NumPy, and the learning-rate schedules (`pylstm.optimizers.schedules`).

`optimizer.apply(variables)` reads each trainable `Variable.grad` and updates
`Variable.value` in place; see `pylstm.optimizers.optimizer` for what every optimizer does
around its formula (gradient accumulation, clipping, decoupled weight decay, the moving
average of the weights, constraints). PyTorch's optimizers, with torch's formulas and
defaults, are in `pylstm.optim`.

Example:

>>> import numpy as np
>>> from pylstm import optimizers
>>> from pylstm.variable import Variable
>>> w = Variable("w", np.array([1.0, -2.0]))
>>> w.grad[...] = [0.5, 0.5]
>>> optimizer = optimizers.get("sgd")  # learning_rate 0.01
>>> optimizer.apply([w])
>>> w.value
array([ 0.995, -2.005])
"""

from pylstm._serialization import Registry
from pylstm.optimizers import schedules
from pylstm.optimizers.adagrad import Adadelta, Adagrad
from pylstm.optimizers.adam import Adam, Adamax, AdamW, Nadam
from pylstm.optimizers.lion import Lion
from pylstm.optimizers.optimizer import Optimizer
from pylstm.optimizers.rmsprop import RMSprop
from pylstm.optimizers.sgd import SGD

_REGISTRY = Registry("optimizer", [SGD, Adam, AdamW, Adamax, Nadam, RMSprop, Adagrad, Adadelta,
                                   Lion],
                     aliases={"adamw": AdamW})  # Keras's lower-case class name


def get(identifier):
    """Returns an optimizer.

    Args:
        identifier: a name (`"sgd"`, `"adam"`, `"adamw"`, `"adamax"`, `"nadam"`,
            `"rmsprop"`, `"adagrad"`, `"adadelta"`, `"lion"`, or the class name), a dict
            `{"class_name": ..., "config": ...}`, or an `Optimizer` (returned as is).

    Returns:
        A new `Optimizer` with the class's defaults (for a name), one built from the config
        (for a dict), or `identifier` itself.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or another type.

    Example:

    >>> from pylstm import optimizers
    >>> type(optimizers.get("adamw")).__name__
    'AdamW'
    >>> optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.1}}).learning_rate
    0.1
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, (str, dict)):
        return _REGISTRY.get(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}.")


def serialize(optimizer):
    """Returns an optimizer's class name and config, as `keras.optimizers.serialize`.

    Args:
        optimizer: an `Optimizer`.

    Returns:
        dict `{"class_name": str, "config": dict}` (Keras's protocol), JSON-serializable
        unless the learning rate is a plain callable (a schedule is serialized in turn).

    Raises:
        TypeError: if `optimizer` is not an `Optimizer`.

    Example:

    >>> from pylstm import optimizers
    >>> config = optimizers.serialize(optimizers.SGD(learning_rate=0.1, momentum=0.9))
    >>> config["class_name"], config["config"]["learning_rate"], config["config"]["momentum"]
    ('SGD', 0.1, 0.9)
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"Argument `optimizer` must be a pylstm.optimizers.Optimizer, received "
                        f"{optimizer!r:.100}.")
    return _REGISTRY.serialize(optimizer)


def deserialize(config):
    """Builds an optimizer from its serialized form, as `keras.optimizers.deserialize`.

    Args:
        config: dict `{"class_name": str, "config": dict}` (what `serialize` returns); a
            learning rate given as a serialized schedule is deserialized.

    Returns:
        A new `Optimizer`, without the original's state (slots and step count).

    Raises:
        ValueError: for a malformed dict or an unknown class name.

    Example:

    >>> from pylstm import optimizers
    >>> schedule = optimizers.schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=1.0)
    >>> config = optimizers.serialize(optimizers.Adam(learning_rate=schedule))
    >>> optimizer = optimizers.deserialize(config)
    >>> type(optimizer).__name__, optimizer.learning_rate
    ('Adam', 0.1)
    """
    return _REGISTRY.deserialize(config)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad",
           "Adadelta", "Lion", "schedules", "get", "serialize", "deserialize"]
