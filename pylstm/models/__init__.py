"""Models (Keras 3's `keras.Sequential` and `keras.models.load_model`)."""

from pylstm.models.saving import load_model, save_model
from pylstm.models.sequential import Sequential

__all__ = ["Sequential", "load_model", "save_model"]
