"""Type stubs for the scans of input arrays (pylstm/_scan.pyx), used by pylstm._validation."""

from typing import Optional

import numpy as np

def all_finite(values: np.ndarray) -> Optional[bool]:
    """Whether the C-contiguous float32/float64 `values` holds no NaN or inf; None for
    other arrays."""
