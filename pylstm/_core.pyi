"""Type stubs for the compiled LSTM kernels (pylstm/_core.pyx). Call them through pylstm.ops,
which validates and allocates; these trust their arguments. Arrays are C-contiguous, one
floating dtype (float32 or float64) except the integer ones. Shapes use B batch, T timesteps,
N packed rows (sum(batch_sizes); T*B on the dense path), H units, P recurrent output size,
G = 4H, S state slots (N + B in training, 3B in inference), R recurrent dropout masks (1, or 4:
one per gate i, f, c, o). See the module's Design note for the packed layout and the slots."""

from typing import Optional

import numpy as np

ACTIVATION_CODES: dict[str, int]
INPUT_DERIVATIVE_CODES: frozenset[int]
HOIST_STEPS: int   # steps of one sample's fused input product done at once
GATE_CONSTANTS: dict[str, float]   # the compiled gate math's constants (SELU's alpha and scale)

def forward(
    gates: np.ndarray,                       # (N, G) in: x @ kernel + bias; out: activated
    zs: Optional[np.ndarray],                # (N, G) out: gate pre-activations, or None
    hs: np.ndarray,                          # (S, P) out: h state slots; h_n in the final slot
    cs: np.ndarray,                          # (S, H) out: c state slots; c_n in the final slot
    h0: np.ndarray,                          # (B, P) in: initial h, sorted sample order
    c0: np.ndarray,                          # (B, H) in: initial c
    ms: Optional[np.ndarray],                # (N, H) out: m_t (training with projection), or None
    m: Optional[np.ndarray],                 # (B, H) scratch with projection, or None
    y: Optional[np.ndarray],                 # (N, P) out: h_t per row, or None
    y_prev: np.ndarray,                      # (B, P) in zeros; out: last unmasked output
    hm: Optional[np.ndarray],                # (B, P) scratch with recurrent dropout, or None
    recurrent_kernel: np.ndarray,            # (P, G)
    projection: Optional[np.ndarray],        # (H, P) or None
    mask: Optional[np.ndarray],              # (T, B) uint8 (dense path only), or None
    recurrent_dropout_mask: Optional[np.ndarray],  # (R, B, P) or None
    batch_sizes: np.ndarray,                 # (T,) intc, non-increasing, batch_sizes[0] = B
    reverse: bool,
    training: bool,
    zero_output: bool,
    activations: np.ndarray,                 # (5,) intc: codes of gates i, f, g, o and cell
    packed: Optional[np.ndarray] = None,     # (packed_size(H, P),) float32: the packed path
    pack: bool = True,                       # pack recurrent_kernel (and kernel) into it first
    num_threads: int = 1,                    # team size on the packed path (-n: n only while
                                             # the team's helpers are awake)
    x: Optional[np.ndarray] = None,          # flat float32 input rows: the core's input product
    ldx: int = 0,                            # x: elements between a step's rows
    x_step: int = 0,                         # x: between dense steps (0: packed rows)
    kernel: Optional[np.ndarray] = None,     # (D, G) with x
    packed_kernel: Optional[np.ndarray] = None,  # (packed_size(H, D),) float32 with x
    bias: Optional[np.ndarray] = None,       # (G,) or None, with x
    ldy: int = 0,                            # y: elements between a step's rows (0: packed)
    y_step: int = 0,                         # y: between dense steps
) -> None: ...

def forward_small(
    x: np.ndarray,                           # (T, B, D) rows time-major in memory (or B, T, D
                                             # with T = 1 or B = 1)
    kernel: np.ndarray,                      # (D, G)
    recurrent_kernel: np.ndarray,            # (H, G): no projection
    bias: Optional[np.ndarray],              # (G,) or None
    h0: np.ndarray,                          # (B, H)
    c0: np.ndarray,                          # (B, H)
    activations: np.ndarray,                 # (5,) intc
    batch_sizes: np.ndarray,                 # (T,) intc, every entry B
    reverse: bool,
    return_sequences: bool,
    blas_switch: Optional[np.ndarray] = None,  # (2n,) uintp: BLAS get/set thread functions
) -> tuple[Optional[np.ndarray], np.ndarray, np.ndarray]: ...   # y (x's shape, H), h_n, c_n

def backward(
    dz: np.ndarray,                          # (N, G) out: d loss / d gate pre-activations
    dh: np.ndarray,                          # (B, P) in: d h_n; out: d h_0
    dc: np.ndarray,                          # (B, H) in: d c_n; out: d c_0
    dy_carry: np.ndarray,                    # (B, P) in: d y_last (masked path); scratch
    dhs: Optional[np.ndarray],               # (N, P) out: d h_t per row with projection, or None
    dm: Optional[np.ndarray],                # (B, H) scratch with projection, or None
    g: np.ndarray,                           # (B, P) scratch
    a: np.ndarray,                           # (H,) scratch
    hm: Optional[np.ndarray],                # (B, P) scratch with recurrent dropout, or None
    dy: Optional[np.ndarray],                # (N, P) d loss / d y (or dense: lddy), or None
    gates: np.ndarray,                       # (N, G) forward's activated gates
    zs: Optional[np.ndarray],                # (N, G) gate pre-activations, or None
    cs: np.ndarray,                          # (N + B, H) forward's training cell state slots
    recurrent_kernel: np.ndarray,            # (P, G)
    projection: Optional[np.ndarray],        # (H, P) or None
    mask: Optional[np.ndarray],              # (T, B) uint8 (dense path only), or None
    recurrent_dropout_mask: Optional[np.ndarray],  # (R, B, P) or None
    batch_sizes: np.ndarray,                 # (T,) intc, as in the forward
    reverse: bool,
    zero_output: bool,
    activations: np.ndarray,                 # (5,) intc: codes of gates i, f, g, o and cell
    packed_t: Optional[np.ndarray] = None,   # (packed_t_size(H, P),) float32: the packed path
    num_threads: int = 1,                    # team size on the packed path
    dw: Optional[np.ndarray] = None,         # (D, G) out: d kernel, added by the packed team
    du: Optional[np.ndarray] = None,         # (P, G) out: d recurrent_kernel, with dw
    db: Optional[np.ndarray] = None,         # (G,) out: d bias, with dw, or None
    x: Optional[np.ndarray] = None,          # (N, D) the input rows, with dw
    h_prev: Optional[np.ndarray] = None,     # (N, P) each row's h_{t-1}, with dw
    lddy: int = 0,                           # dy: elements between a step's rows (0: packed)
    dy_step: int = 0,                        # dy: between dense steps
) -> None: ...

def packed_size(H: int, P: int) -> int: ...     # floats of a packed (P, 4H) kernel
def packed_t_size(H: int, P: int) -> int: ...   # floats of a packed transposed kernel
def set_team_weights(weights: "list[float]") -> None: ...   # load-balance weights (tests)
def team_weights(nt: int) -> "list[float]": ...   # the current ones, teams of nt (diagnostics)

def matmul_acc(
    a: np.ndarray,                           # (m, k), or (k, m) if trans_a
    w: np.ndarray,                           # (k, n), or (n, k) if trans_w
    out: np.ndarray,                         # (m, n) in/out: op(a) @ op(w) + beta * out
    trans_a: bool,
    trans_w: bool,
    beta: float,
) -> None: ...

def activate(z: np.ndarray, activation: int) -> None: ...   # z (n,) in place

def activation_grad(v: np.ndarray, x: np.ndarray, y: np.ndarray,
                    activation: int) -> None: ...           # v (n,) *= act'(x), y = act(x)
