"""Functional LSTM: validated forward and backward over whole sequences, on the Cython core.

This is the boundary between Python and the compiled kernels of `pylstm._core`: everything is
checked and allocated here, and the kernels trust what they get. Layers (`pylstm.layers`,
`pylstm.nn`) and benchmarks call `lstm_forward`, `lstm_forward_packed` and `lstm_backward`;
`pylstm._reference` is the same math in plain NumPy, and runs instead of the core for
activations the core does not have (Python callables).

Each call's route (which code runs, on how many threads, in which chunks) is chosen by
`pylstm._plan` from its sizes and options; `explain` shows it. Threads: `set_num_threads(n)`
(default None: the BLAS library's setting) for the core's thread team, the GEMMs done once
per call over all rows, and per-step BLAS products large enough to gain from threads; the
caller's BLAS settings are restored after every call (`pylstm._threads`). float32 results
are bitwise the same on any thread count (but for products of one row with weight matrices
of about 2**19 elements or more); float64 results on the core can differ in their last bits
between thread counts (`pylstm._threads` says exactly where the guarantee holds).

Where each job lives: `_arguments` (argument checks), `pylstm._plan` (route choice),
`_dense` (`lstm_forward` and its dense-input routes), `_lengths` (`lengths` and
`lstm_forward_packed`), `_routes` (the compiled routes over rows), `_caches` (one cache class
per route family), `_backward` (`lstm_backward`), `_buffers` (pooled memory), `_explain`.

Legend: B batch, T timesteps, D input features, H units, P recurrent output size (H, or the
projection size), G = 4H. Weights use the Keras layout and gate order i, f, c, o.
"""

from pylstm._threads import BlasThreads, get_num_threads, set_num_threads
from pylstm.ops._backward import lstm_backward
from pylstm.ops._caches import LSTMCache
from pylstm.ops._dense import lstm_forward
from pylstm.ops._explain import explain
from pylstm.ops._lengths import lstm_forward_packed

__all__ = ["BlasThreads", "LSTMCache", "explain", "get_num_threads", "lstm_backward",
           "lstm_forward", "lstm_forward_packed", "set_num_threads"]
