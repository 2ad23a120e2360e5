"""Type stubs for the compiled LSTM kernels (pylstm/_core.pyx). Call them through pylstm.ops,
which validates and allocates; these trust their arguments. Shapes use B batch, T timesteps,
H units, P recurrent output size, G = 4H, S state slots (T + 1 in training, 2 in inference),
R recurrent dropout masks (1, or 4: one per gate i, f, c, o)."""

from typing import Optional

import numpy as np

ACTIVATION_CODES: dict[str, int]
INPUT_DERIVATIVE_CODES: frozenset[int]

def forward(
    gates: np.ndarray,                       # (T, B, G) in: x @ kernel + bias; out: activated
    zs: Optional[np.ndarray],                # (T, B, G) out: gate pre-activations, or None
    hs: np.ndarray,                          # (S, B, P)
    cs: np.ndarray,                          # (S, B, H)
    ms: Optional[np.ndarray],                # (T, B, H) or None
    m: Optional[np.ndarray],                 # (B, H) or None
    y: Optional[np.ndarray],                 # (T, B, P) or None
    y_prev: np.ndarray,                      # (B, P)
    hm: Optional[np.ndarray],                # (B, P) scratch with recurrent dropout, or None
    recurrent_kernel: np.ndarray,            # (P, G)
    projection: Optional[np.ndarray],        # (H, P) or None
    mask: Optional[np.ndarray],              # (T, B) uint8 or None
    recurrent_dropout_mask: Optional[np.ndarray],  # (R, B, P) or None
    reverse: bool,
    training: bool,
    zero_output: bool,
    activations: np.ndarray,                 # (5,) intc: codes of gates i, f, g, o and cell
) -> None: ...

def backward(
    dz: np.ndarray,                          # (T, B, G) out
    dh: np.ndarray,                          # (B, P) in: d h_n; out: d h_0
    dc: np.ndarray,                          # (B, H) in: d c_n; out: d c_0
    dy_carry: np.ndarray,                    # (B, P) in: d y_last
    dhs: Optional[np.ndarray],               # (T, B, P) or None
    dm: Optional[np.ndarray],                # (B, H) or None
    g: np.ndarray,                           # (B, P) scratch
    a: np.ndarray,                           # (H,) scratch
    hm: Optional[np.ndarray],                # (B, P) scratch with recurrent dropout, or None
    dy: Optional[np.ndarray],                # (T, B, P) or None
    gates: np.ndarray,                       # (T, B, G)
    zs: Optional[np.ndarray],                # (T, B, G) gate pre-activations, or None
    cs: np.ndarray,                          # (T + 1, B, H)
    recurrent_kernel: np.ndarray,            # (P, G)
    projection: Optional[np.ndarray],        # (H, P) or None
    mask: Optional[np.ndarray],              # (T, B) uint8 or None
    recurrent_dropout_mask: Optional[np.ndarray],  # (R, B, P) or None
    reverse: bool,
    zero_output: bool,
    activations: np.ndarray,                 # (5,) intc: codes of gates i, f, g, o and cell
) -> None: ...

def matmul_acc(a: np.ndarray, w: np.ndarray, out: np.ndarray, trans_a: bool, trans_w: bool,
               beta: float) -> None: ...

def activate(z: np.ndarray, activation: int) -> None: ...

def activation_grad(v: np.ndarray, x: np.ndarray, y: np.ndarray, activation: int) -> None: ...
