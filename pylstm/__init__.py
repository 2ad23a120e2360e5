"""pylstm: a standalone LSTM library for Python (NumPy + SciPy only)."""

__version__ = "0.1.0"
