"""Utilities of `pylstm.nn`, after `torch.nn.utils`: packed variable-length sequences."""

from pylstm.nn.utils import rnn

__all__ = ["rnn"]
