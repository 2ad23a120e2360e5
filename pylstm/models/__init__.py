"""Models (Keras 3's `keras.Sequential` and `keras.models.load_model`), and Keras model files."""

from pylstm.models.keras_io import load_keras, load_keras_weights, save_keras, save_keras_weights
from pylstm.models.saving import load_model, save_model
from pylstm.models.sequential import Sequential

__all__ = ["Sequential", "load_model", "save_model", "load_keras", "load_keras_weights",
           "save_keras", "save_keras_weights"]
