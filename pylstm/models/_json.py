"""A model's Keras 3 config as JSON and back (Keras's `Model.to_json` and
`keras.models.model_from_json`), through the `.keras` file's config mapping in `keras_io`."""

import json

from pylstm.layers.layer import DEFAULT_MAX_WEIGHT_BYTES
from pylstm.models import _archive, keras_io

# The description of the JSON in error messages (where a file's path would stand).
_WHAT = "json_string"


def _invalid(why):
    return ValueError(f"Argument `json_string` does not hold a Keras model config: "
                      f"{why.rstrip('.')}.")


def to_json(model, **kwargs):
    """`model`'s Keras config (`config.json` of a `.keras` file, with its `compile_config`
    when Keras has the compiled optimizer, loss and metrics) as a JSON string; `kwargs` go to
    `json.dumps`."""
    return json.dumps(keras_io._model_to_keras(model), default=keras_io._plain, **kwargs)


def model_from_json(json_string, custom_objects=None,
                    max_weight_bytes=DEFAULT_MAX_WEIGHT_BYTES):
    """Builds the model a Keras JSON config describes (Keras 3's
    `keras.models.model_from_json`): `Model.to_json()`'s output, Keras's `model.to_json()`, or
    a `.keras` file's `config.json`.

    The model is built without running initializers, then initialized as a new model is (its
    weights are not in the JSON); it is compiled when the JSON records a compile config that
    pylstm has (as `load_model` compiles), else returned uncompiled. The JSON may come from
    anywhere: it is checked as a `.keras` file's config is (no code runs: a `Lambda` layer is
    refused; the graph is checked; the weights it implies are bounded).

    Args:
        json_string: str or UTF-8 bytes.
        custom_objects: must be None or empty: pylstm builds only its own layers.
        max_weight_bytes: int, the most bytes the model's weights may take (default 2 GiB).

    Returns:
        A built `pylstm.models.Sequential` or functional `pylstm.models.Model`.

    Raises:
        TypeError: `json_string` not a str or bytes.
        ValueError: text that is not JSON or not a Keras model config (the message says what
            is wrong), a layer or argument pylstm lacks, weights over `max_weight_bytes`, or
            `custom_objects` given.

    Example:

    >>> from pylstm.layers import LSTM, Dense, Input
    >>> from pylstm.models import Sequential
    >>> model = Sequential([Input((5, 2)), LSTM(4), Dense(1)])
    >>> clone = model_from_json(model.to_json())
    >>> [type(layer).__name__ for layer in clone.layers]
    ['LSTM', 'Dense']
    """
    if not isinstance(json_string, (str, bytes, bytearray)):
        raise TypeError(f"Argument `json_string` must be a str, received "
                        f"{type(json_string).__name__}.")
    if custom_objects:
        raise ValueError("Argument `custom_objects` is not supported: pylstm builds its own "
                         "layers only.")
    if len(json_string) > keras_io._MAX_CONFIG_BYTES:
        raise _invalid(f"it is longer ({len(json_string)}) than a model config may be "
                       f"({keras_io._MAX_CONFIG_BYTES})")
    config = _archive.parse_json(json_string, "the text", _invalid)
    if not isinstance(config, dict) or "class_name" not in config:
        raise _invalid("it is not a serialized model (a JSON object with a `class_name`)")
    try:
        checked, _ = keras_io._model_from_keras(_WHAT, config, False, max_weight_bytes)
    except ValueError as e:
        raise ValueError(f"model_from_json: {e}") from e
    # Built checked and bounded, without initializers; made again from its own config to run
    # them, as Keras's new model has initialized weights.
    model = type(checked).from_config(checked.get_config())
    keras_io._compile_from_keras(model, config.get("compile_config"), legacy=False)
    return model
