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


def _short_repr(value, limit=200):
    """`repr(value)`, cut to `limit` characters (configs may come from untrusted files)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
        base: optional base class that users subclass (Keras 3's `Regularizer`,
            `Constraint`). If given, the registry is open, as Keras's is for these kinds: every
            public subclass of `base` defined by the time of a lookup answers to its names
            too (the built-in `classes` and `aliases` win a name clash), so a user's subclass
            round-trips through `serialize`/`deserialize`; `get` instantiates a class;
            `serialize(None)` and `deserialize(None)` give None (a layer without a
            regularizer or constraint); and `serialize` of an object without `get_config()`
            raises a TypeError that says to subclass `base`.
    """

    def __init__(self, kind, classes, aliases=None, base=None):
        self.kind = kind
        self.base = base
        self._names = {}
        for cls in classes:
            self._names[cls.__name__] = cls
            self._names[snake_case(cls.__name__)] = cls
        self._names.update(aliases or {})

    def _table(self):
        """The name -> class dict, with `base`'s public subclasses looked up now."""
        if self.base is None:
            return self._names
        table, stack = {}, [self.base]
        while stack:
            for sub in stack.pop().__subclasses__():
                stack.append(sub)
                if not sub.__name__.startswith("_"):
                    table[sub.__name__] = sub
                    table[snake_case(sub.__name__)] = sub
        table.update(self._names)
        return table

    @property
    def names(self):
        return sorted(self._table())

    def lookup(self, name):
        """Returns the class registered as `name`.

        Raises:
            ValueError: for an unknown name; the message lists the valid names.
        """
        try:
            return self._table()[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Valid names: {', '.join(self.names)}."
            ) from None

    def serialize(self, obj):
        """Returns `{"class_name": str, "config": dict}`, JSON-serializable.

        Raises:
            TypeError: for an open registry (`base` given), if `obj` has no `get_config()`.
        """
        if self.base is not None:
            if obj is None:
                return None
            if not callable(getattr(obj, "get_config", None)):
                raise TypeError(
                    f"Cannot serialize {self.kind} {obj!r}: it has no `get_config()`. Subclass "
                    f"`{self.base.__module__}.{self.base.__name__}` and implement `get_config()` "
                    "to save it."
                )
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """Builds an object from `{"class_name": str, "config": dict}`.

        Raises:
            ValueError: if `config` is not such a dict (a str `class_name`, a dict or None
                `config`) or names an unknown class.
        """
        if config is None and self.base is not None:
            return None
        if not (isinstance(config, dict) and isinstance(config.get("class_name"), str)
                and isinstance(config.get("config"), (dict, type(None)))):
            raise ValueError(
                f"Cannot deserialize a {self.kind} from {_short_repr(config)}: expected a dict "
                "{'class_name': str, 'config': {...}}."
            )
        return self.lookup(config["class_name"]).from_config(dict(config.get("config") or {}))

    def get(self, identifier):
        """Resolves a name, a config dict, an instance or a callable (returned as is); for an
        open registry, also a class (instantiated with its defaults).

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
        if self.base is not None and isinstance(identifier, type):
            identifier = identifier()
        if callable(identifier):
            return identifier
        raise ValueError(f"Could not interpret {self.kind} identifier: {identifier!r}.")
