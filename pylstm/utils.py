"""Process-wide random state.

Unseeded initializers, unseeded `Dropout` layers and `Sequential.fit`'s shuffling all draw from
one module-level `np.random.Generator`, so that `set_random_seed(seed)` makes a whole model
reproducible (the role of Keras 3's `keras.utils.set_random_seed`).
"""

import numpy as np

_generator = np.random.default_rng()


def set_random_seed(seed):
    """Reseeds the generator that every unseeded random draw in pylstm uses.

    Args:
        seed: int >= 0.

    Raises:
        ValueError: if `seed` is not a non-negative int.
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Argument `seed` must be a non-negative int, received {seed!r}.")
    _generator = np.random.default_rng(int(seed))


def default_generator():
    """Returns the module-level `np.random.Generator` (reseeded by `set_random_seed`)."""
    return _generator


def rng_from_seed(seed):
    """A fresh `np.random.Generator` for an int `seed`, or the module generator for None."""
    return _generator if seed is None else np.random.default_rng(seed)
