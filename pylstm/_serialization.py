"""The registry behind every `get()` / `serialize()` / `deserialize()` triple.

Mirrors Keras 3's config protocol: an object serializes to `{"class_name": ..., "config": ...}`,
where `config` is `obj.get_config()` (exactly the constructor's arguments), and deserializes with
`cls.from_config(config)`. A class is found by its CamelCase name, its snake_case name, or an
alias such as `"mse"`.
"""


def snake_case(name):
    """`"GlorotUniform"` -> `"glorot_uniform"`, `"RMSprop"` -> `"rmsprop"`."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Configurable:
    """The config protocol: `get_config()` returns exactly the constructor's arguments and
    `from_config(config)` is `cls(**config)`; the repr shows the config."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Registry:
    """Name -> class lookups for one kind of object (`"initializer"`, `"loss"`, ...).

    Args:
        kind: str, used in error messages.
        classes: the registered classes; each answers to its CamelCase and snake_case names.
        aliases: optional dict of extra names, e.g. `{"mse": MeanSquaredError}`.
    """

    def __init__(self, kind, classes, aliases=None):
        self.kind = kind
        self._names = {}
        for cls in classes:
            self._names[cls.__name__] = cls
            self._names[snake_case(cls.__name__)] = cls
        self._names.update(aliases or {})

    @property
    def names(self):
        return sorted(self._names)

    def lookup(self, name):
        """Returns the class registered as `name`.

        Raises:
            ValueError: for an unknown name; the message lists the valid names.
        """
        try:
            return self._names[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Valid names: {', '.join(self.names)}."
            ) from None

    def serialize(self, obj):
        """Returns `{"class_name": str, "config": dict}`, JSON-serializable."""
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """Builds an object from `{"class_name": str, "config": dict}`.

        Raises:
            ValueError: if `config` is not such a dict or names an unknown class.
        """
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(
                f"Cannot deserialize a {self.kind} from {config!r}: expected a dict "
                "{'class_name': ..., 'config': {...}}."
            )
        return self.lookup(config["class_name"]).from_config(dict(config.get("config") or {}))

    def get(self, identifier):
        """Resolves a name, a config dict, an instance or a callable (returned as is).

        Returns:
            The object, or None for `identifier=None`.

        Raises:
            ValueError: for an unknown name or an identifier of another kind.
        """
        if identifier is None:
            return None
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if callable(identifier):
            return identifier
        raise ValueError(f"Could not interpret {self.kind} identifier: {identifier!r}.")
