"""pylstm: a standalone LSTM library for Python (NumPy and SciPy; no deep-learning framework).

A Cython core runs LSTM forward and backward over whole sequences through SciPy's BLAS; a
Keras-style API (`pylstm.layers`, `pylstm.models`) sits on top.
"""

from pylstm._version import __version__

try:
    from pylstm import (activations, callbacks, constraints, datasets, initializers, layers,
                        losses, metrics, models, nn, ops, optim, optimizers, regularizers,
                        streaming, utils)

    from pylstm._config import show_config
    # Keras 3's top-level names, so that `import pylstm as keras` serves a Keras script
    from pylstm.layers import Input
    from pylstm.models import Model, Sequential
    from pylstm._memory import get_memory_pool_limit, memory_pool_idle, set_memory_pool_limit
    from pylstm._threads import get_num_threads, set_num_threads
except ImportError as error:
    from pylstm._extensions import unbuilt_error

    unbuilt = unbuilt_error(error, __name__, __path__[0])
    if unbuilt is None:
        raise
    raise unbuilt from error

__all__ = ["activations", "callbacks", "constraints", "datasets", "initializers", "layers",
           "losses", "metrics", "models", "nn", "ops", "optim", "optimizers", "regularizers",
           "streaming", "utils", "get_num_threads", "set_num_threads", "get_memory_pool_limit",
           "set_memory_pool_limit", "memory_pool_idle", "show_config", "Input", "Model",
           "Sequential", "__version__"]
