"""The layer registry of model saving: every `Layer` subclass by class name, and a layer to and
from its `{"class_name", "config"}` entry. Wrappers (`Bidirectional`, `RNN`, ...) serialize their
inner layers through it."""

from pylstm.layers.layer import Layer


def _layer_classes():
    """Every `Layer` subclass defined so far (user-defined ones included), by class name."""
    found, stack = {}, [Layer]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            found.setdefault(sub.__name__, sub)
            stack.append(sub)
    return found


def serialize(layer):
    """Returns `{"class_name": str, "config": dict}` for a layer, JSON-serializable (Keras 3's
    `keras.layers.serialize`, without its `module` and `registered_name` keys).

    Args:
        layer: a `Layer`.

    Returns:
        dict with the layer's class name and its `get_config()`.

    Example:

    >>> from pylstm.layers import Dense
    >>> config = serialize(Dense(3, name="out"))
    >>> config["class_name"], config["config"]["units"], config["config"]["activation"]
    ('Dense', 3, 'linear')
    """
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config):
    """Rebuilds a layer from `serialize`'s output (Keras 3's `keras.layers.deserialize`).

    Args:
        config: dict `{"class_name": str, "config": dict}`; the class is looked up among the
            `Layer` subclasses defined so far, custom ones included.

    Returns:
        A new, unbuilt layer of that class made by its `from_config`.

    Raises:
        ValueError: for a malformed config or a class name that is not a known `Layer`
            subclass (import the module defining a custom layer before loading).

    Example:

    >>> from pylstm.layers import LSTM
    >>> deserialize({"class_name": "LSTM", "config": {"units": 4, "name": "encoder"}})
    <LSTM name=encoder>
    """
    if not (isinstance(config, dict) and isinstance(config.get("class_name"), str)
            and isinstance(config.get("config", {}), (dict, type(None)))):
        raise ValueError("Cannot deserialize a layer from a "
                         f"{type(config).__name__} {str(config)[:80]}: expected a dict "
                         "{'class_name': str, 'config': dict}.")
    classes = _layer_classes()
    name = config["class_name"]
    if name not in classes:
        raise ValueError(
            f"Unknown layer class {name!r}. Known layers: {', '.join(sorted(classes))}."
        )
    return classes[name].from_config(dict(config.get("config") or {}))


def with_inner_layers(config, keys):
    """A copy of a wrapper's `config` whose entries under `keys` that are layer configs (dicts,
    as `serialize` writes them) are layers, for the wrapper's `from_config`."""
    config = dict(config)
    for key in keys:
        if isinstance(config.get(key), dict):
            config[key] = deserialize(config[key])
    return config
