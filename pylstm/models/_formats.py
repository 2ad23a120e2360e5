"""Which function saves or loads a model file: the one table that `Sequential.save`,
`save_weights`, `load_weights`, `pylstm.models.save_model` and `load_model` look up.

`pylstm.models` fills it when imported, with each format's functions and the path endings
they claim, so that the dependencies point one way: the format modules (`saving`, pylstm's
own; `keras_io`, Keras's) build `Sequential` models, and neither `Sequential` nor pylstm's
format imports another format.
"""

import os

# operation -> [(endings, function)], the entries that claim endings first, then the one for
# any other path (no endings).
_TABLE = {}


def register(operation, function, endings=()):
    """Makes `function` do `operation` for paths ending in one of `endings`, or for any path
    no other entry claims when `endings` is empty.

    Args:
        operation: "save_model" (`function(model, path)`), "load_model"
            (`function(path, max_weight_bytes=...)`), "save_weights" or "load_weights"
            (`function(model, path)`), "to_json" (`function(model, **json_dumps_kwargs)`,
            any path).
        function: the callable.
        endings: tuple of str, such as `(".keras",)`.
    """
    entries = _TABLE.setdefault(operation, [])
    entries.append((tuple(endings), function))
    entries.sort(key=lambda entry: not entry[0])


def find(operation, path):
    """The function registered for `operation` on `path` (`os.fspath`'d only when an entry
    claims endings, so that a saver's own checks come first otherwise)."""
    for endings, function in _TABLE[operation]:
        if not endings or os.fspath(path).endswith(endings):
            return function
    raise ValueError(f"No {operation} function for {path!r}.")
