"""Layers (Keras 3's `keras.layers`) and the layer registry used by model saving."""

# _layer_classes: for the Keras loader, which maps Keras class names onto these.
from pylstm.layers._registry import _layer_classes, deserialize, serialize  # noqa: F401
from pylstm.layers.attention import AdditiveAttention, Attention
from pylstm.layers.bidirectional import Bidirectional
from pylstm.layers.convolutional import Conv1D
from pylstm.layers.core import Activation, Dropout, Flatten, Input, InputLayer
from pylstm.layers.dense import Dense
from pylstm.layers.embedding import Embedding
from pylstm.layers.global_pooling import GlobalAveragePooling1D, GlobalMaxPooling1D
from pylstm.layers.keras_tensor import KerasTensor
from pylstm.layers.layer import Layer, Variable
from pylstm.layers.lstm import LSTM
from pylstm.layers.masking import Masking
from pylstm.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                                   Subtract, add, average, concatenate, dot, maximum, minimum,
                                   multiply, subtract)
from pylstm.layers.normalization import BatchNormalization, LayerNormalization
from pylstm.layers.pooling import AveragePooling1D, MaxPooling1D
from pylstm.layers.reshaping import Permute, RepeatVector, Reshape
from pylstm.layers.rnn import RNN, LSTMCell, StackedRNNCells
from pylstm.layers.spatial_dropout import SpatialDropout1D
from pylstm.layers.time_distributed import TimeDistributed

__all__ = ["Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot",
           "concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum", "dot",
           "RepeatVector", "Reshape", "Permute", "GlobalAveragePooling1D", "GlobalMaxPooling1D",
           "Layer", "Variable", "KerasTensor", "Dense", "LSTM", "InputLayer", "Input", "Dropout",
           "Activation",
           "Flatten", "Embedding", "Masking", "Bidirectional", "TimeDistributed", "RNN",
           "LSTMCell", "StackedRNNCells", "serialize", "deserialize", "Attention",
           "AdditiveAttention", "Conv1D", "MaxPooling1D", "AveragePooling1D",
           "BatchNormalization", "LayerNormalization", "SpatialDropout1D"]
