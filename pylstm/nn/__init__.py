"""PyTorch-style modules: `pylstm.nn.LSTM` has `torch.nn.LSTM`'s arguments, parameter names,
shapes, layer/direction order and results, and loads its `state_dict` (a dict of arrays or
tensors, a `.safetensors` file, or a `.pt` file of `torch.save`) without PyTorch installed.

Streaming: `pylstm.nn.LSTMCell` is `torch.nn.LSTMCell` (one timestep, same names and shapes,
trainable); `LSTM.step(input_t, state)` feeds a unidirectional `LSTM` one timestep at a time
through compiled steps, with an `LSTMStepState` (from `lstm.initial_state(batch_size)`) that
can be copied, reset per sample and saved (`to_dict` / `from_dict`); stepping over a sequence
gives the module's result on the whole sequence.

The BHoM DeepLearning `LSTM` module (`BH.oM.DeepLearning.Layers.LSTM`) describes the same
network; its fields map one to one onto the constructor's arguments:

==================  ==================
BHoM field          `pylstm.nn.LSTM`
==================  ==================
InputSize           `input_size`
HiddenSize          `hidden_size`
NumberOfLayers      `num_layers`
BatchFirst          `batch_first`
Dropout             `dropout`
Bidirectional       `bidirectional`
==================  ==================

Example:

>>> import numpy as np
>>> from pylstm import nn
>>> bhom = {"InputSize": 3, "HiddenSize": 5, "NumberOfLayers": 2, "BatchFirst": True,
...         "Dropout": 0.25, "Bidirectional": True}
>>> lstm = nn.LSTM(input_size=bhom["InputSize"], hidden_size=bhom["HiddenSize"],
...                num_layers=bhom["NumberOfLayers"], batch_first=bhom["BatchFirst"],
...                dropout=bhom["Dropout"], bidirectional=bhom["Bidirectional"], seed=0)
>>> output, (h_n, c_n) = lstm.eval()(np.ones((4, 7, 3), dtype="float32"))  # (N, L, H_in)
>>> output.shape, h_n.shape  # (N, L, 2 * H) and (2 * NumberOfLayers, N, H)
((4, 7, 10), (4, 4, 5))
"""

from pylstm.nn.cell import LSTMCell
from pylstm.nn.lstm import LSTM, IncompatibleKeys, LSTMLayer
from pylstm.nn.state_dict import load_state_dict_file, save_state_dict_file
from pylstm.state import LSTMStepState

__all__ = ["LSTM", "LSTMCell", "LSTMLayer", "LSTMStepState", "IncompatibleKeys",
           "load_state_dict_file", "save_state_dict_file"]
