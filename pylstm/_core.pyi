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

class Steps:
    """Which steps a call runs, and how."""
    batch_sizes: np.ndarray                  # (T,) intc, non-increasing, batch_sizes[0] <= B
    activations: np.ndarray                  # (5,) intc: codes of gates i, f, g, o and cell
    mask: Optional[np.ndarray]               # (T, B) uint8 (dense path only), or None

    def __init__(
        self,
        batch_sizes: np.ndarray,
        activations: np.ndarray,
        *,
        mask: Optional[np.ndarray] = None,
        reverse: bool = False,
        training: bool = False,              # keep every step's state slots (for backward)
        zero_output: bool = False,           # a masked step outputs zeros
    ) -> None: ...

class RecurrentWeights:
    """The weights the time loop reads, one floating dtype; `packed` for the packed path."""
    recurrent_kernel: np.ndarray             # (P, G)
    projection: Optional[np.ndarray]         # (H, P) or None
    recurrent_dropout_mask: Optional[np.ndarray]  # (R, B, P) or None
    packed: Optional[np.ndarray]             # float32, (packed_size(H, P),) for forward,
                                             # (packed_t_size(H, P),) for backward, or None
    kernel: Optional[np.ndarray]             # (D, G) float32: the core's input product
    packed_kernel: Optional[np.ndarray]      # (packed_size(H, D),) float32, with kernel
    bias: Optional[np.ndarray]               # (G,) or None, with kernel

    def __init__(
        self,
        recurrent_kernel: np.ndarray,
        *,
        projection: Optional[np.ndarray] = None,
        recurrent_dropout_mask: Optional[np.ndarray] = None,
        packed: Optional[np.ndarray] = None,
        kernel: Optional[np.ndarray] = None,
        packed_kernel: Optional[np.ndarray] = None,
        bias: Optional[np.ndarray] = None,
    ) -> None: ...

class ForwardArrays:
    """The arrays `forward` reads and writes, of the weights' dtype."""
    gates: np.ndarray                        # (N, G) in: x @ kernel + bias; out: activated
                                             # (inference with x: (B or HOIST_STEPS, G) scratch)
    hs: np.ndarray                           # (S, P) out: h state slots; h_n in the final slot
    cs: np.ndarray                           # (S, H) out: c state slots; c_n in the final slot
    h0: np.ndarray                           # (B, P) in: initial h, sorted sample order
    c0: np.ndarray                           # (B, H) in: initial c
    y_prev: np.ndarray                       # (B, P) in zeros; out: last unmasked output
    zs: Optional[np.ndarray]                 # (N, G) out: gate pre-activations, or None
    ms: Optional[np.ndarray]                 # (N, H) out: m_t (training with projection)
    m: Optional[np.ndarray]                  # (B, H) scratch with projection, or None
    y: Optional[np.ndarray]                  # (N, P) out: h_t per row, or None
    hm: Optional[np.ndarray]                 # (B, P) scratch with recurrent dropout, or None
    x: Optional[np.ndarray]                  # flat float32 input rows: the core's input product

    def __init__(
        self,
        gates: np.ndarray,
        hs: np.ndarray,
        cs: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray,
        y_prev: np.ndarray,
        *,
        zs: Optional[np.ndarray] = None,
        ms: Optional[np.ndarray] = None,
        m: Optional[np.ndarray] = None,
        y: Optional[np.ndarray] = None,
        hm: Optional[np.ndarray] = None,
        x: Optional[np.ndarray] = None,
        ldx: int = 0,                        # x: elements between a step's rows
        x_step: int = 0,                     # x: between dense steps (0: packed rows)
        ldy: int = 0,                        # y: elements between a step's rows (0: packed)
        y_step: int = 0,                     # y: between dense steps
    ) -> None: ...

def forward(
    arrays: ForwardArrays,
    weights: RecurrentWeights,
    steps: Steps,
    team: int = 1,                           # threads of the packed path's team
    team_if_awake: bool = False,             # that team only if its helpers are awake
    pack: bool = True,                       # pack the kernels first (else as left)
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

class BackwardArrays:
    """The arrays `backward` reads and writes, of the weights' dtype."""
    dz: np.ndarray                           # (N, G) out: d loss / d gate pre-activations
    dh: np.ndarray                           # (B, P) in: d h_n; out: d h_0
    dc: np.ndarray                           # (B, H) in: d c_n; out: d c_0
    dy_carry: np.ndarray                     # (B, P) in: d y_last (masked path); scratch
    g: np.ndarray                            # (B, P) scratch
    a: np.ndarray                            # (H,) scratch
    gates: np.ndarray                        # (N, G) forward's activated gates
    cs: np.ndarray                           # (N + B, H) forward's training cell state slots
    zs: Optional[np.ndarray]                 # (N, G) gate pre-activations, or None
    dy: Optional[np.ndarray]                 # (N, P) d loss / d y (or dense: lddy), or None
    dhs: Optional[np.ndarray]                # (N, P) out: d h_t per row with projection
    dm: Optional[np.ndarray]                 # (B, H) scratch with projection, or None
    hm: Optional[np.ndarray]                 # (B, P) scratch with recurrent dropout, or None

    def __init__(
        self,
        dz: np.ndarray,
        dh: np.ndarray,
        dc: np.ndarray,
        dy_carry: np.ndarray,
        g: np.ndarray,
        a: np.ndarray,
        gates: np.ndarray,
        cs: np.ndarray,
        *,
        zs: Optional[np.ndarray] = None,
        dy: Optional[np.ndarray] = None,
        dhs: Optional[np.ndarray] = None,
        dm: Optional[np.ndarray] = None,
        hm: Optional[np.ndarray] = None,
        lddy: int = 0,                       # dy: elements between a step's rows (0: packed)
        dy_step: int = 0,                    # dy: between dense steps
    ) -> None: ...

class TeamGradients:
    """The weight gradients the packed backward's team adds (float32)."""
    dw: np.ndarray                           # (D, G) out: d kernel
    du: np.ndarray                           # (P, G) out: d recurrent_kernel
    x: np.ndarray                            # (N, D) the input rows
    h_prev: np.ndarray                       # (N, P) each row's h_{t-1}
    db: Optional[np.ndarray]                 # (G,) out: d bias, or None

    def __init__(
        self,
        dw: np.ndarray,
        du: np.ndarray,
        x: np.ndarray,
        h_prev: np.ndarray,
        *,
        db: Optional[np.ndarray] = None,
    ) -> None: ...

def backward(
    arrays: BackwardArrays,
    weights: RecurrentWeights,               # packed: (packed_t_size(H, P),) float32
    steps: Steps,                            # the training forward's
    team: int = 1,
    team_if_awake: bool = False,
    sums: Optional[TeamGradients] = None,    # packed path: the team adds the weight gradients
) -> None: ...

def packed_size(H: int, P: int) -> int: ...     # floats of a packed (P, 4H) kernel
def packed_t_size(H: int, P: int) -> int: ...   # floats of a packed transposed kernel
def set_team_weights(weights: "list[float]") -> None: ...   # load-balance weights (tests)
def team_weights(nt: int) -> "list[float]": ...   # the current ones, teams of nt (diagnostics)
def team_calibration(nt: int) -> "tuple[float, float, int]": ...   # (FLOP/ns, barrier ns, team)
def tile_sizes() -> "dict[str, int]": ...   # the packed kernels' register tile
def team_cpus(nt: int) -> "list[int]": ...   # each member's CPU in the last run (diagnostics)

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
