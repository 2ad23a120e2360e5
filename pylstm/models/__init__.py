"""Models (Keras 3's `keras.Sequential` and `keras.models.load_model`), and Keras model files."""

from pylstm.models import _formats
from pylstm.models._json import model_from_json
from pylstm.models._json import to_json as _to_json
from pylstm.models.functional import Functional, Model
from pylstm.models.keras_io import (load_keras, load_keras_weights, save_keras, save_keras_weights,
                                    save_legacy_h5)
from pylstm.models.saving import _load_pylstm, _save_pylstm, load_model, save_model
from pylstm.models.sequential import Sequential

# Which format a path gets (`pylstm.models._formats`): Keras's for the endings it claims,
# else pylstm's own; weights files are always Keras's.
_formats.register("save_model", save_keras, (".keras",))
_formats.register("save_model", save_legacy_h5, (".h5", ".hdf5"))
_formats.register("save_model", _save_pylstm)
_formats.register("load_model", load_keras, (".keras", ".h5", ".hdf5"))
_formats.register("load_model", _load_pylstm)
_formats.register("save_weights", save_keras_weights)
_formats.register("load_weights", load_keras_weights)
_formats.register("to_json", _to_json)

__all__ = ["Model", "Functional", "Sequential", "load_model", "save_model", "model_from_json",
           "load_keras", "load_keras_weights",
           "save_keras", "save_keras_weights", "save_legacy_h5"]
