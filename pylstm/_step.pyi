"""Type stubs for the compiled single-timestep kernel (pylstm/_step.pyx). Use it through
pylstm.streaming.LSTMStepper, which validates and allocates; it trusts its arguments. Shapes use
B batch, D input features, H units, P recurrent output size, G = 4H."""

from typing import Optional

import numpy as np

STATUS_OK: int
STATUS_X_NOT_FINITE: int
STATUS_H_NOT_FINITE: int
STATUS_C_NOT_FINITE: int

class StepKernel:
    kernel: np.ndarray                       # (D, G)
    recurrent_kernel: np.ndarray             # (P, G)
    bias: Optional[np.ndarray]               # (G,) or None
    projection: Optional[np.ndarray]         # (H, P) or None
    activations: np.ndarray                  # (5,) intc: codes of gates i, f, g, o and cell
    D: int
    H: int
    P: int

    def __init__(
        self,
        kernel: np.ndarray,
        recurrent_kernel: np.ndarray,
        bias: Optional[np.ndarray],
        projection: Optional[np.ndarray],
        activations: np.ndarray,
    ) -> None: ...

    def run(
        self,
        x: np.ndarray,                       # (B, D) in
        h: np.ndarray,                       # (B, P) in
        c: np.ndarray,                       # (B, H) in
        h_new: np.ndarray,                   # (B, P) out; may be h
        c_new: np.ndarray,                   # (B, H) out; may be c
        y: Optional[np.ndarray],             # (B, P) out: copy of h_new, or None
        z: np.ndarray,                       # (B, G) scratch
        m: Optional[np.ndarray],             # (B, H) scratch with a projection, or None
    ) -> int: ...                            # a STATUS_* code

