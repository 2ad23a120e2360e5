# cython: language_level=3
"""LSTM kernels: forward and backward (BPTT) of one direction over a packed batch of sequences.

Design:
    Legend: B batch, T timesteps, N packed rows (sum of the batch sizes; T*B when dense),
    D input features, H units, P recurrent output size (H, or the projection size), G = 4H.

    Gate order is i, f, c, o (Keras; PyTorch's i, f, g, o is the same order). Weights use the
    Keras layout: kernel (D, G), recurrent_kernel (P, G), bias (G,), projection (H, P):

        z_t = x_t @ kernel + (h_{t-1} * r) @ recurrent_kernel + bias    (n_t, G)
        i, f, o = recurrent_activation(z_i, z_f, z_o);  g = activation(z_c)
        c_t = f * c_{t-1} + i * g
        m_t = o * activation(c_t)
        h_t = m_t @ projection   (or h_t = m_t without projection; Sak et al. 2014 for LSTMP)

    Packed layout (PyTorch's PackedSequence, Apple BNNS's per-step batch sizes): the samples
    are sorted by decreasing length and batch_sizes (T,) is non-increasing, batch_sizes[0] = B;
    step t runs the first n_t = batch_sizes[t] samples, whose rows are contiguous, so every
    per-step block is a dense (n_t, .) matrix and no work is spent on padding. The dense path
    is the special case n_t = B (N = T*B, row t*B + b). A sample's per-sample rows (h0, c0,
    h_n, c_n, dropout masks) are its position b in the sorted order. All buffers are
    C-contiguous; pylstm.ops sorts, packs and scatters.
      gates  (N, G)   in: x @ kernel + bias for all rows (one GEMM, done by the caller);
                      out: the activated gates i, f, g, o (the training cache).
      zs     (N, G)   out, optional: the pre-activations z_t. Kept only in training and only
                      when a gate's activation needs its input for its derivative (swish:
                      x * sigmoid(x) is not a function of its output alone).
      y      (N, P)   out, optional: h_t of each row.
      ms     (N, H)   out, training with a projection: m_t, for the projection gradient.
      hs (S, P), cs (S, H): state slots, a slot being the rows of one step.
        Training, S = N + B. Forward: step t reads h_{t-1} from rows [off_t, off_t + n_t)
        (off_t = rows before step t) and writes h_t into step t+1's slot, so hs[:N] is the
        recurrent input of every row, one block for the recurrent_kernel gradient GEMM; the
        final slot is rows [N, N + B). Reverse: step t reads h_{t+1} from rows
        [B + off_t, B + off_t + n_t) and writes step t-1's slot, so hs[B:] is the recurrent
        input of every row; the final slot is rows [0, B).
        Inference, S = 3B: rows [0, B) and [B, 2B) used alternately, final slot [2B, 3B);
        nothing per step is kept.
      At step t, rows [n_next, n_t) (n_next the next processed step's batch size; 0 after
      the last) are processed for the last time: they write h and c into their row of the
      final slot, which so holds h_n and c_n, each sample's state after its own last step.

    Direction: forward processes t = 0 .. T-1, all B samples starting at t = 0. Reverse
    processes t = T-1 .. 0 and outputs stay at their rows (PyTorch's reverse direction); the
    batch grows, each sample starting at its own last real step and ending at t = 0. A
    sample's h0/c0 row is copied into the slot of the step where it starts (rows
    [n_prev, n_t), n_prev the previous processed step's batch size).

    Mask (T, B) uint8, optional, dense path only (all batch sizes B): on a masked step a
    sample's h and c are carried unchanged and its output repeats its last unmasked output
    (y_prev (B, P), zeros in), or is zero with zero_output_for_mask: Keras's generic RNN
    semantics. Lengths never use it: the packed batch simply shrinks.

    Recurrent dropout mask r (R, B, P), optional, R = 1 (one mask for all four gates) or R = 4
    (one per gate i, f, c, o, as Keras's LSTMCell draws them when recurrent_dropout > 0):
    already scaled (0 or 1 / (1 - rate)), the same at every step; step t uses its rows
    [0, n_t). It multiplies h_{t-1} only inside the recurrent product; the carried state h
    stays unmasked (Keras 3's LSTMCell; Gal & Ghahramani 2016). With R = 4 the product is
    four (n_t, P) @ (P, H) GEMMs on column blocks of recurrent_kernel. The input dropout
    mask is applied by the caller, which owns the x @ kernel GEMM.

    Activations (_gates.pxd) are chosen by code, one per gate (i, f, g, o) and one for the
    cell output (Keras's recurrent_activation / activation pair is the usual choice; Apple
    BNNS sets each gate's), and applied over contiguous gate blocks so that each loop
    vectorizes: float32 uses _fastmath.h (about 1e-7 relative error), float64 libm. The codes
    cover Keras 3's elementwise fixed activations (ACTIVATION_CODES below, plus Keras 2's
    legacy_hard_sigmoid). Derivatives come from the cached post-activation values
    (tanh' = 1 - y^2, sigmoid' = y (1 - y), ...); swish's from its input: zs for a gate,
    c_t (always in cs) for the cell output.

    Forward caches for backward: gates, zs (if needed), the cs slots, ms (with a projection);
    the caller keeps the hs slots for the recurrent_kernel gradient. Backward runs the
    processed steps in the opposite order with dh, dc (B, .) indexed by sorted position:
    in d h_n, d c_n; out d h_0, d c_0. Rows [n_t, B) are untouched at step t: their sample
    is not running there (forward: its last step is still to come in backward order;
    reverse: its steps are done, leaving d h_0, d c_0). act(c_t) is recomputed
    rather than cached. Backward fills dz (N, G) (and dhs (N, P), d h_t per row, with a
    projection); the weight gradients are GEMMs over all N rows at once in pylstm.ops, or,
    on the packed path, sums the team adds as it goes (below).

    Two ways to run the per-step products:
    - Packed (float32 without projection or recurrent dropout; pylstm.ops chooses it):
      recurrent_kernel, and kernel for the input product, are packed once per call into
      panels of SIMD-width units holding the four gates' columns (_recurrent.h). A team of
      threads (one parallel region per call) splits the units, in whole panels (forward) or
      groups of 4 panels (backward), in proportion to each member's measured speed: each
      thread computes its units' pre-activations with its own register-tiled kernel,
      their gate math and its columns of h_t and c_t, and the team meets once per step at a
      barrier before h_t is read. Each thread's panels stay in its core's L2 for the whole
      sequence. The input product is fused into each step (x read in place through
      strides, y written in place), computed between arriving at the previous step's
      barrier and waiting at it; in training at batch under 8 it is done for all rows
      first, with the same arithmetic. Backward packs recurrent_kernel^T by groups of output
      columns: each thread computes its units' gate derivatives, adds its units' columns of
      the weight gradients every WGRAD_ROWS rows (between arriving and waiting), then,
      after the barrier, computes its columns of d h_{t-1}. Every element's arithmetic is
      fixed by the layout, not by the team, so results are bitwise the same on any number
      of threads.
    - BLAS (float64, projection, recurrent dropout): one SciPy BLAS product per step, on the
      calling thread alone; the input product is one GEMM over all rows done by the caller.

    Python validates and allocates (pylstm/ops.py); these functions trust their arguments,
    release the GIL for the whole sequence, and allocate nothing inside the time loop.
"""

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cython cimport floating
from libc.string cimport memcpy, memset

from pylstm._blas cimport gemm, matmul
from pylstm._gates cimport *

cdef extern from "_fastmath.h" nogil:
    void pl_standard_gates(float* zb, float* cb, const float* cpb, float* m_b, int H, int ua,
                           int ub)
    void pl_standard_backward(float* dzb, float* dcb, const float* dm_b, const float* zb,
                              const float* cnb, const float* cpb, int H, int ua, int ub)

cdef extern from "_recurrent.h" nogil:
    ctypedef struct pl_barrier:
        int count
        int sense
        int nt
    ctypedef void (*pl_work_fn)(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil
    int pl_vec_width()
    size_t pl_packed_size(int H, int P)
    void pl_pack(float* packed, const float* u, int H, int P, int q0, int q1)
    void pl_rec_product(float* z, const float* bias, const float* h, size_t ldh,
                        const float* packed, int n, int H, int K, int q0, int q1)
    size_t pl_packed_t_size(int H, int P)
    void pl_pack_t(float* packed, const float* u, int H, int P, int c0, int c1)
    void pl_weight_grad(float* dw, float* db, const float* a, size_t lda, int K, const float* dz,
                        int n, int H, int ua, int ub)
    void pl_rec_grad(float* out, const float* dz, const float* packed_t, int n, int H, int P,
                     int c0, int c1)
    void pl_gemm_rows(float* z, const float* bias, const float* x, size_t ldx,
                      const float* packed, size_t n, int H, int K, int q0, int q1)
    int PL_MAX_THREADS
    double pl_weight[]
    void pl_weight_nt_set(int nt)
    void pl_share_panels(int H, int tid, int nt, int* q0, int* q1)
    void pl_share_groups(int H, int tid, int nt, int* c0, int* c1)
    void pl_barrier_wait(pl_barrier* bar, int* local_sense)
    void pl_barrier_arrive(pl_barrier* bar, int* local_sense)
    void pl_barrier_finish(pl_barrier* bar, int local_sense)
    int pl_team_run(int nt, pl_work_fn fn, void* arg, int only_awake)

ACTIVATION_CODES = {
    "linear": ACT_LINEAR,
    "tanh": ACT_TANH,
    "sigmoid": ACT_SIGMOID,
    "hard_sigmoid": ACT_HARD_SIGMOID,
    "relu": ACT_RELU,
    "elu": ACT_ELU,
    "selu": ACT_SELU,
    "softplus": ACT_SOFTPLUS,
    "softsign": ACT_SOFTSIGN,
    "swish": ACT_SWISH,
    "silu": ACT_SWISH,
    "exponential": ACT_EXPONENTIAL,
    "legacy_hard_sigmoid": ACT_LEGACY_HARD_SIGMOID,
}

# Steps whose input product the fused inference of one sample does at once (forward's
# `gates` scratch is then (HOIST, G)).
cdef enum:
    HOIST = 64
HOIST_STEPS = HOIST

cnp.import_array()

# Batch from which a training forward computes each step's input product while waiting at the
# previous step's barrier (as inference does) instead of all rows' at once before the loop:
# below it, reading the packed kernel for every step of a few rows costs more than it hides.
cdef enum:
    TRAIN_STEP_INPUT_MIN_BATCH = 8

# Rows of dz the backward's team accumulates into the weight gradients at once (whole steps:
# every step at batch >= 64, every other step at batch 32, every 64 at batch 1): enough rows
# that loading and storing the gradients' registers costs little beside the products
# (pl_weight_grad on 64 units, dz in cache: 73-82 GFLOP/s on one core at 32 rows, 92-93 at 64).
cdef enum:
    WGRAD_ROWS = 64

# Codes whose derivative needs the activation's input: a gate using one makes forward keep zs.
INPUT_DERIVATIVE_CODES = frozenset({ACT_SWISH})


# Buffers -----------------------------------------------------------------------------------

cdef inline const floating* _offset(const floating* p, Py_ssize_t k) noexcept nogil:
    """p + k, or NULL for an absent optional buffer."""
    return p + k if p != NULL else NULL


# Recurrent product with optional recurrent dropout -----------------------------------------

cdef inline void _add_recurrent(
        floating* z,                  # IN/OUT (n, G): gets (h_{t-1} * r) @ recurrent_kernel
        const floating* h_prev,       # IN (n, P)
        floating* hm,                 # scratch (n, P), used with recurrent dropout
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* rdrop,        # IN (R, B, P) or NULL; rows [0, n) of each mask are used
        int R, int n, int B, int H, int P) noexcept nogil:
    cdef int G = 4 * H
    cdef Py_ssize_t k, j
    if rdrop == NULL:
        # z += h_{t-1} @ recurrent_kernel    (n, P) @ (P, G)
        matmul(n, P, G, 1, h_prev, P, recurrent_kernel, False, 1, z, G)
        return
    for k in range(R):
        for j in range(n * P):
            hm[j] = h_prev[j] * rdrop[k * B * P + j]
        if R == 1:
            # z += (h_{t-1} * r) @ recurrent_kernel    (n, P) @ (P, G)
            matmul(n, P, G, 1, hm, P, recurrent_kernel, False, 1, z, G)
        else:
            # z[:, kH:(k+1)H] += (h_{t-1} * r_k) @ recurrent_kernel[:, kH:(k+1)H]    (n, P) @ (P, H)
            gemm(False, False, n, H, P, 1, hm, P, recurrent_kernel + k * H, G, 1, z + k * H, G)


cdef inline void _recurrent_grad(
        floating* out,                # OUT (n, P): d loss / d h_{t-1}
        const floating* dz,           # IN (n, G)
        floating* hm,                 # scratch (n, P), used with four recurrent dropout masks
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* rdrop,        # IN (R, B, P) or NULL; rows [0, n) of each mask are used
        int R, int n, int B, int H, int P) noexcept nogil:
    cdef int G = 4 * H
    cdef Py_ssize_t k, j
    cdef const floating* r
    if rdrop == NULL or R == 1:
        # out = dz @ recurrent_kernel^T    (n, G) @ (G, P)
        matmul(n, G, P, 1, dz, G, recurrent_kernel, True, 0, out, P)
        if rdrop != NULL:
            for j in range(n * P):
                out[j] *= rdrop[j]
        return
    for k in range(R):
        # hm = dz[:, kH:(k+1)H] @ recurrent_kernel[:, kH:(k+1)H]^T    (n, H) @ (H, P)
        gemm(False, True, n, P, H, 1, dz + k * H, G, recurrent_kernel + k * H, G, 0, hm, P)
        r = rdrop + k * B * P
        if k == 0:
            for j in range(n * P):
                out[j] = hm[j] * r[j]
        else:
            for j in range(n * P):
                out[j] += hm[j] * r[j]


cdef inline bint _standard(const int* acts) noexcept nogil:
    """Whether the activations are Keras's and PyTorch's (sigmoid gates, tanh candidate and
    cell output): the float32 kernels then run their fused one-pass gate math."""
    return (acts[GATE_I] == ACT_SIGMOID and acts[GATE_F] == ACT_SIGMOID and
            acts[GATE_G] == ACT_TANH and acts[GATE_O] == ACT_SIGMOID and acts[CELL] == ACT_TANH)


# State slots -------------------------------------------------------------------------------

cdef inline Py_ssize_t _slot(Py_ssize_t s, Py_ssize_t off, int B, bint reverse,
                             bint training) noexcept nogil:
    """First row of the state slot read by processed step s, whose rows start at `off`."""
    if training:
        return off + B if reverse else off
    return (s % 2) * B


cdef inline Py_ssize_t _final_slot(Py_ssize_t N, int B, bint reverse,
                                   bint training) noexcept nogil:
    """First row of the (B, .) block that receives each sample's state after its last step."""
    if training:
        return 0 if reverse else N
    return 2 * B


cdef inline int _next_rows(Py_ssize_t s, Py_ssize_t t, int T, int n, Py_ssize_t off,
                           const int* batch_sizes, bint reverse,
                           Py_ssize_t* off_next) noexcept nogil:
    """Batch size of the step processed after step t (processing index s), 0 after the last;
    sets *off_next to its first packed row. Forward and backward walk the same geometry."""
    off_next[0] = 0
    if s + 1 >= T:
        return 0
    cdef int n_next = batch_sizes[t - 1 if reverse else t + 1]
    off_next[0] = off - n_next if reverse else off + n
    return n_next


# Forward ---------------------------------------------------------------------------------

cdef void _forward(
        floating* gates,              # IN/OUT (N, G): x @ kernel + bias -> activated gates
        floating* zs,                 # OUT (N, G) gate pre-activations, or NULL
        floating* hs,                 # OUT (S, P) state slots: h per step, final h
        floating* cs,                 # OUT (S, H) state slots: c per step, final c
        const floating* h0,           # IN (B, P) initial h
        const floating* c0,           # IN (B, H) initial c
        floating* ms,                 # OUT (N, H) m_t cache, or NULL (training with projection)
        floating* m,                  # scratch (B, H), used with projection
        floating* y,                  # OUT (N, P) outputs, or NULL
        floating* y_prev,             # OUT (B, P): last unmasked output per sample (zeros in)
        floating* hm,                 # scratch (B, P), used with recurrent dropout
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* packed,       # IN recurrent_kernel packed (_recurrent.h), or NULL: BLAS
        const floating* x,            # IN input rows (with packed), or NULL: gates has x @ W + b
        Py_ssize_t ldx,               # x: elements between a step's rows
        Py_ssize_t x_step,            # x: elements between dense steps; 0: packed rows, ldx apart
        const floating* packed_kernel,  # IN kernel (D, G) packed like recurrent_kernel (with x)
        const floating* bias,         # IN (G,) or NULL (with x)
        int D,                        # input features (with x)
        Py_ssize_t ldy,               # y: elements between a step's rows; 0: packed rows
        Py_ssize_t y_step,            # y: elements between dense steps (with ldy > 0)
        const floating* projection,   # IN (H, P) or NULL
        const unsigned char* mask,    # IN (T, B) or NULL (only with all batch sizes = B)
        const floating* rdrop,        # IN (R, B, P) recurrent dropout mask, or NULL
        const int* batch_sizes,       # IN (T,) non-increasing, batch_sizes[0] = B
        int R, int T, int B, int H, int P, bint reverse, bint training, bint zero_output,
        const int* acts,              # IN (5,): i, f, g, o, cell activations
        int q0, int q1,               # this thread's panels of `packed` (all: 0, Q)
        pl_barrier* bar) noexcept nogil:
    # One thread of a team computes the units [ua, ub) of panels [q0, q1) (all H units when
    # alone); with `packed`, the team meets at `bar` once per step, after writing h_t, and
    # after copying initial states. Projection and recurrent dropout run alone, on BLAS.
    # With `x` (inference), `gates` is a (B, G) scratch: each step computes
    # z = bias + x_t @ kernel + h_{t-1} @ recurrent_kernel there, from both packed kernels,
    # reading x and writing y in place through their strides (no input GEMM, no gathered
    # copies).
    cdef int G = 4 * H
    cdef Py_ssize_t N = 0
    cdef Py_ssize_t s, t, b, j, k, off, off_next
    cdef int n, n_prev, n_next, keep
    cdef int V = pl_vec_width()
    cdef int ua = q0 * V if q0 * V < H else H
    cdef int ub = q1 * V if q1 * V < H else H
    cdef int nu = ub - ua
    # h's columns of this thread: its units, or all P of a projection (always alone)
    cdef int pa = ua if projection == NULL else 0
    cdef int np_ = nu if projection == NULL else P
    cdef int sense = 0
    cdef size_t f = sizeof(floating)
    cdef floating* z
    cdef floating* zb
    cdef floating* cb
    cdef floating* hb
    cdef const floating* cpb
    cdef floating* h_in
    cdef floating* c_in
    cdef floating* h_out
    cdef floating* c_out
    cdef floating* h_fin
    cdef floating* c_fin
    cdef floating* m_b
    cdef floating* yb
    cdef float* z_next = NULL
    cdef Py_ssize_t t_next
    cdef bint masked
    cdef bint standard = _standard(acts)

    for s in range(T):
        N += batch_sizes[s]
    h_fin = hs + _final_slot(N, B, reverse, training) * P
    c_fin = cs + _final_slot(N, B, reverse, training) * H
    off = N if reverse else 0
    n_prev = 0
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = batch_sizes[t]
        if reverse:
            off -= n
        # The samples still running at the next processed step: rows [0, keep) carry on, rows
        # [keep, n) end here and leave their state in the final slot.
        n_next = _next_rows(s, t, T, n, off, batch_sizes, reverse, &off_next)
        keep = n_next if n_next < n else n
        h_in = hs + _slot(s, off, B, reverse, training) * P
        c_in = cs + _slot(s, off, B, reverse, training) * H
        h_out = hs + _slot(s + 1, off_next, B, reverse, training) * P
        c_out = cs + _slot(s + 1, off_next, B, reverse, training) * H
        # Samples starting here (all at the first step; in reverse, each at its last real
        # step) take their initial state.
        if n_prev < n:
            for b in range(n_prev, n):
                memcpy(h_in + b * P + pa, h0 + b * P + pa, np_ * f)
                memcpy(c_in + b * H + ua, c0 + b * H + ua, nu * f)
            pl_barrier_wait(bar, &sense)
        n_prev = n
        z = gates + off * G
        if floating is float:
            if x != NULL:
                # z = bias + x_t @ kernel: done while waiting at the previous step's barrier
                z = z_next if z_next != NULL else _step_input(
                    gates, x, ldx, x_step, packed_kernel, bias, D, H, B, T, s, t, off, n,
                    reverse, training, q0, q1)

        if floating is float:
            if packed != NULL:
                pl_rec_product(z, NULL, h_in, P, packed, n, H, P, q0, q1)
            else:
                _add_recurrent(z, h_in, hm, recurrent_kernel, rdrop, R, n, B, H, P)
        else:
            _add_recurrent(z, h_in, hm, recurrent_kernel, rdrop, R, n, B, H, P)
        if zs != NULL:
            for b in range(n):
                for k in range(4):
                    memcpy(zs + (off + b) * G + k * H + ua, z + b * G + k * H + ua, nu * f)

        for b in range(n):
            cb = (c_out if b < keep else c_fin) + b * H
            cpb = c_in + b * H
            masked = mask != NULL and mask[t * B + b] == 0
            if masked:
                memcpy(cb + ua, cpb + ua, nu * f)
                continue
            zb = z + b * G
            m_b = m + b * H if projection != NULL else (h_out if b < keep else h_fin) + b * P
            if floating is float:
                if standard:
                    # Keras's and PyTorch's activations in one pass over the units
                    pl_standard_gates(zb, cb, cpb, m_b, H, ua, ub)
                    continue
            _activate(acts[GATE_I], zb + ua, nu)
            _activate(acts[GATE_F], zb + H + ua, nu)
            _activate(acts[GATE_G], zb + 2 * H + ua, nu)
            _activate(acts[GATE_O], zb + 3 * H + ua, nu)
            for j in range(ua, ub):
                cb[j] = zb[H + j] * cpb[j] + zb[j] * zb[2 * H + j]
            # m = o * act_cell(c)
            memcpy(m_b + ua, cb + ua, nu * f)
            _activate(acts[CELL], m_b + ua, nu)
            for j in range(ua, ub):
                m_b[j] *= zb[3 * H + j]

        if projection != NULL:
            if ms != NULL:
                memcpy(ms + off * H, m, n * H * f)
            # h_t = m_t @ projection    (n, H) @ (H, P), split between the two destinations
            if keep > 0:
                matmul(keep, H, P, 1, m, H, projection, False, 0, h_out, P)
            if n > keep:
                matmul(n - keep, H, P, 1, m + keep * H, H, projection, False, 0,
                       h_fin + keep * P, P)

        for b in range(n):
            hb = (h_out if b < keep else h_fin) + b * P + pa
            masked = mask != NULL and mask[t * B + b] == 0
            yb = NULL
            if y != NULL:
                yb = y + ((off + b) * P if ldy == 0 else t * y_step + b * ldy) + pa
            if masked:
                memcpy(hb, h_in + b * P + pa, np_ * f)
                if y != NULL:
                    if zero_output:
                        memset(yb, 0, np_ * f)
                    else:
                        memcpy(yb, y_prev + b * P + pa, np_ * f)
            else:
                if mask != NULL:
                    memcpy(y_prev + b * P + pa, hb, np_ * f)
                if y != NULL:
                    memcpy(yb, hb, np_ * f)
        if not reverse:
            off += n
        if floating is float:
            if x != NULL and s + 1 < T:
                # Split barrier: arrive, compute the next step's input product (it needs no
                # other thread's h_t), then wait; a partner running late costs less idle time.
                pl_barrier_arrive(bar, &sense)
                t_next = t - 1 if reverse else t + 1
                n_next = batch_sizes[t_next]
                z_next = _step_input(gates, x, ldx, x_step, packed_kernel, bias, D, H, B, T,
                                     s + 1, t_next, off - n_next if reverse else off, n_next,
                                     reverse, training, q0, q1)
                pl_barrier_finish(bar, sense)
                continue
        pl_barrier_wait(bar, &sense)


cdef float* _step_input(float* gates, const float* x, Py_ssize_t ldx, Py_ssize_t x_step,
                        const float* packed_kernel, const float* bias, int D, int H, int B,
                        int T, Py_ssize_t s, Py_ssize_t t, Py_ssize_t off, int n, bint reverse,
                        bint training, int q0, int q1) noexcept nogil:
    """The input product of processed step s (step t, rows [off, off + n)) for this thread's
    panels [q0, q1): z = bias + x_t @ kernel from the packed kernel; returns where z is (the
    gates cache rows in training, else the scratch)."""
    cdef Py_ssize_t G = 4 * H
    cdef int V = pl_vec_width()
    cdef int ua = min(q0 * V, H)
    cdef int nu = min(q1 * V, H) - ua
    cdef Py_ssize_t block, span, t_base, j, b
    cdef int k
    cdef float* z
    if not training and B == 1 and x_step > 0:
        # One sample: its steps' rows are x_step apart, so the input product of the next
        # HOIST steps is one product (kernel read once for them, not per step) into gates, a
        # (HOIST, G) scratch; the same arithmetic as per step.
        block = s - s % HOIST
        span = HOIST if T - block > HOIST else T - block
        t_base = block if not reverse else T - block - span
        if s == block:
            if bias == NULL:
                for j in range(span):
                    for k in range(4):
                        memset(gates + j * G + k * H + ua, 0, nu * sizeof(float))
            pl_rec_product(gates, bias, x + t_base * x_step, x_step, packed_kernel, span, H, D,
                           q0, q1)
        return gates + (t - t_base) * G
    z = gates + off * G if training else gates
    if bias == NULL:
        for b in range(n):
            for k in range(4):
                memset(z + b * G + k * H + ua, 0, nu * sizeof(float))
    pl_rec_product(z, bias, x + (off * ldx if x_step == 0 else t * x_step), ldx, packed_kernel,
                   n, H, D, q0, q1)
    return z


cdef struct _Packed:
    # One float32 forward on the packed recurrent kernel, shared by a thread team.
    float* gates
    float* zs
    float* hs
    float* cs
    const float* h0
    const float* c0
    float* y
    float* y_prev
    const float* recurrent_kernel
    float* packed
    const float* x
    Py_ssize_t ldx, x_step, ldy, y_step
    float* packed_kernel
    const float* kernel
    const float* bias
    int D
    const unsigned char* mask
    const int* batch_sizes
    const int* acts
    int T, B, H, P
    bint reverse, training, zero_output, pack


cdef void _packed_worker(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil:
    """Thread `tid` of `nt`: packs its panels if asked, then runs its units of the forward."""
    cdef _Packed* a = <_Packed*> arg
    cdef int q0, q1
    pl_share_panels(a.H, tid, nt, &q0, &q1)
    cdef Py_ssize_t N = 0
    cdef Py_ssize_t s, r
    cdef int G = 4 * a.H
    cdef int V = pl_vec_width()
    cdef int ua = q0 * V if q0 * V < a.H else a.H
    cdef int ub = q1 * V if q1 * V < a.H else a.H
    cdef int k
    cdef const float* x = a.x
    if a.pack:
        pl_pack(a.packed, a.recurrent_kernel, a.H, a.P, q0, q1)
        if a.x != NULL:
            pl_pack(a.packed_kernel, a.kernel, a.H, a.D, q0, q1)
    if a.x != NULL and a.training and a.B < TRAIN_STEP_INPUT_MIN_BATCH:
        # Small batches: the input product of every row at once into the gates cache (this
        # thread's units), gates = bias + x @ kernel, reading the packed kernel once for many
        # rows; larger batches compute it step by step, each while waiting at the previous
        # step's barrier. Either way the same arithmetic as the fused inference.
        for s in range(a.T):
            N += a.batch_sizes[s]
        if a.bias == NULL:
            for r in range(N):
                for k in range(4):
                    memset(a.gates + r * G + k * a.H + ua, 0, (ub - ua) * sizeof(float))
        pl_gemm_rows(a.gates, a.bias, a.x, a.ldx, a.packed_kernel, N, a.H, a.D, q0, q1)
        x = NULL
    _forward(a.gates, a.zs, a.hs, a.cs, a.h0, a.c0, <float*> NULL, <float*> NULL, a.y,
             a.y_prev, <float*> NULL, a.recurrent_kernel, a.packed, x, a.ldx, a.x_step,
             a.packed_kernel, a.bias, a.D, a.ldy, a.y_step, <float*> NULL, a.mask,
             <float*> NULL, a.batch_sizes, 0, a.T, a.B, a.H, a.P, a.reverse, a.training,
             a.zero_output, a.acts, q0, q1, bar)


def set_team_weights(weights):
    """Sets the thread team's load-balance weights (one per member, each in [0.25, 4]), as
    its speed measurements would; for tests of uneven splits."""
    cdef int t
    cdef int nt = len(weights)
    if not 1 <= nt <= PL_MAX_THREADS:
        raise ValueError(f"Argument `weights` must have 1 to {PL_MAX_THREADS} entries, "
                         f"received {nt}.")
    for t in range(nt):
        w = float(weights[t])
        if not 0.25 <= w <= 4.0:
            raise ValueError(f"Argument `weights` must hold values in [0.25, 4], received "
                             f"{w} at {t}.")
        pl_weight[t] = w
    pl_weight_nt_set(nt)


def team_weights(int nt):
    """The thread team's current load-balance weights for teams of `nt` (see
    set_team_weights); for diagnostics and tests."""
    if not 1 <= nt <= PL_MAX_THREADS:
        raise ValueError(f"Argument `nt` must be in [1, {PL_MAX_THREADS}], received {nt}.")
    return [pl_weight[t] for t in range(nt)]


def packed_size(int H, int P):
    """Floats of the buffer `forward` packs a (P, 4H) recurrent kernel into (float32 only)."""
    return pl_packed_size(H, P)


def forward(floating[:, ::1] gates, floating[:, ::1] zs, floating[:, ::1] hs,
            floating[:, ::1] cs, const floating[:, ::1] h0, const floating[:, ::1] c0,
            floating[:, ::1] ms, floating[:, ::1] m,
            floating[:, ::1] y, floating[:, ::1] y_prev, floating[:, ::1] hm,
            const floating[:, ::1] recurrent_kernel, const floating[:, ::1] projection,
            const unsigned char[:, ::1] mask, const floating[:, :, ::1] recurrent_dropout_mask,
            const int[::1] batch_sizes, bint reverse, bint training, bint zero_output,
            const int[::1] activations, floating[::1] packed=None, bint pack=True,
            int num_threads=1, const floating[::1] x=None, Py_ssize_t ldx=0,
            Py_ssize_t x_step=0, const floating[:, ::1] kernel=None,
            floating[::1] packed_kernel=None, const floating[::1] bias=None, Py_ssize_t ldy=0,
            Py_ssize_t y_step=0):
    """Runs the recurrence over all steps of a packed batch (see the module's Design note).

    Rows are packed by step: `gates`, `zs`, `y` `(N, G or P)`, `ms` `(N, H)`, N =
    sum(batch_sizes); `hs` `(S, P)` and `cs` `(S, H)` hold the state slots, S = N + B in
    training, 3B in inference; the final states are the rows `[N, N + B)` (training forward),
    `[0, B)` (training reverse) or `[2B, 3B)` (inference). Optional buffers (zs, ms, m, y, hm,
    projection, mask, recurrent_dropout_mask) are passed as None; `mask` `(T, B)` only with
    every batch size equal to B; hm `(B, P)` is needed with `recurrent_dropout_mask`
    `(R, B, P)`, R = 1 or 4. `activations` holds the five ACTIVATION_CODES of gates i, f, g, o
    and of the cell output. Shapes are trusted: pylstm.ops validates them.

    `packed` `(packed_size(H, P),)` float32, without projection or recurrent dropout: the
    recurrent product runs on recurrent_kernel packed into it (_recurrent.h; packed first if
    `pack`, else as a previous call left it), on `num_threads` threads (negative: -num_threads
    if the team's helpers are still awake from a previous run, else alone), one parallel region
    for the whole sequence. None: one BLAS product per step on the calling thread.

    With `packed`, the core may also do the input product: `x` (flat) holds the input rows,
    a step's rows `ldx` apart, dense steps `x_step` apart (0: packed rows, each step's rows
    contiguous from its first packed row); `kernel` `(D, G)` is packed into `packed_kernel`
    `(packed_size(H, D),)` (with `pack`); `bias` `(G,)` or None. In training, `x` holds the
    N packed rows (`ldx` = D) and `gates` gets `bias + x @ kernel` for all of them first
    (batch under 8) or step by step; in inference each step computes its own into `gates`,
    then a `(B, G)` scratch (for one dense
    sample, `(HOIST_STEPS, G)`: its next steps' products at once), and `y`'s
    rows are at `t * y_step + b * ldy` (dense; `ldy` 0: packed rows). Either way each gate's
    arithmetic is the same, so inference and training give the same bits.
    """
    cdef int T = batch_sizes.shape[0]
    cdef int B = h0.shape[0]
    cdef int H = gates.shape[1] // 4
    cdef int P = hs.shape[1]
    cdef int R = recurrent_dropout_mask.shape[0] if recurrent_dropout_mask is not None else 0
    cdef int Q = (H + pl_vec_width() - 1) // pl_vec_width()
    cdef pl_barrier alone
    cdef _Packed a
    cdef bint only_awake
    alone.count = alone.sense = 0
    alone.nt = 1
    if floating is float:
        if packed is not None:
            a.gates = &gates[0, 0]
            a.zs = &zs[0, 0] if zs is not None else NULL
            a.hs = &hs[0, 0]
            a.cs = &cs[0, 0]
            a.h0 = &h0[0, 0]
            a.c0 = &c0[0, 0]
            a.y = &y[0, 0] if y is not None else NULL
            a.y_prev = &y_prev[0, 0]
            a.recurrent_kernel = &recurrent_kernel[0, 0]
            a.packed = &packed[0]
            a.mask = &mask[0, 0] if mask is not None else NULL
            a.batch_sizes = &batch_sizes[0]
            a.acts = &activations[0]
            a.x = &x[0] if x is not None else NULL
            a.ldx, a.x_step, a.ldy, a.y_step = ldx, x_step, ldy, y_step
            a.kernel = &kernel[0, 0] if x is not None else NULL
            a.packed_kernel = &packed_kernel[0] if x is not None else NULL
            a.bias = &bias[0] if x is not None and bias is not None else NULL
            a.D = kernel.shape[0] if x is not None else 0
            a.T, a.B, a.H, a.P = T, B, H, P
            a.reverse, a.training, a.zero_output, a.pack = reverse, training, zero_output, pack
            # at most a panel a thread; negative: only while the helpers are awake
            only_awake = num_threads < 0
            num_threads = max(1, min(abs(num_threads), Q))
            with nogil:
                pl_team_run(num_threads, _packed_worker, &a, only_awake)
            return
    with nogil:
        _forward(&gates[0, 0],
                 &zs[0, 0] if zs is not None else NULL,
                 &hs[0, 0], &cs[0, 0], &h0[0, 0], &c0[0, 0],
                 &ms[0, 0] if ms is not None else NULL,
                 &m[0, 0] if m is not None else NULL,
                 &y[0, 0] if y is not None else NULL,
                 &y_prev[0, 0],
                 &hm[0, 0] if hm is not None else NULL,
                 &recurrent_kernel[0, 0], NULL, NULL, 0, 0, NULL, NULL, 0, ldy, y_step,
                 &projection[0, 0] if projection is not None else NULL,
                 &mask[0, 0] if mask is not None else NULL,
                 &recurrent_dropout_mask[0, 0, 0] if recurrent_dropout_mask is not None
                 else NULL,
                 &batch_sizes[0], R, T, B, H, P, reverse, training, zero_output,
                 &activations[0], 0, Q, &alone)


cdef void _forward_small(
        floating* y,                  # OUT (N, P) outputs, rows time-major, or NULL
        floating* h_n,                # OUT (B, P)
        floating* c_n,                # OUT (B, H)
        floating* scratch,            # (N*G + 4B*P + 3B*H) floats: gates, hs, cs, y_prev
        const int* batch_sizes,       # IN (T,) every entry B
        const floating* x,            # IN (N, D) time-major rows
        const floating* kernel,       # IN (D, G)
        const floating* recurrent_kernel,  # IN (P, G), P = H
        const floating* bias,         # IN (G,) or NULL
        const floating* h0,           # IN (B, P)
        const floating* c0,           # IN (B, H)
        const int* acts, int T, int B, int D, int H, bint reverse) noexcept nogil:
    # The arithmetic of _core_inference's single chunk, step for step: gates = bias, then
    # gates += x @ kernel (one GEMM over all rows), then the time loop on BLAS.
    cdef int G = 4 * H
    cdef int P = H
    cdef Py_ssize_t N = <Py_ssize_t> T * B
    cdef Py_ssize_t r
    cdef floating* gates = scratch
    cdef floating* hs = gates + N * G
    cdef floating* cs = hs + 3 * B * P
    cdef floating* y_prev = cs + 3 * B * H
    cdef pl_barrier alone
    alone.count = alone.sense = 0
    alone.nt = 1
    if bias != NULL:
        for r in range(N):
            memcpy(gates + r * G, bias, G * sizeof(floating))
    else:
        memset(gates, 0, N * G * sizeof(floating))
    gemm(False, False, <int> N, G, D, 1, x, D, kernel, G, 1, gates, G)
    memset(y_prev, 0, B * P * sizeof(floating))
    _forward(gates, NULL, hs, cs, h0, c0, NULL, NULL, y, y_prev, NULL, recurrent_kernel,
             NULL, NULL, 0, 0, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, batch_sizes, 0, T, B, H,
             P, reverse, False, False, acts, 0, (H + pl_vec_width() - 1) // pl_vec_width(),
             &alone)
    memcpy(h_n, hs + 2 * B * P, B * P * sizeof(floating))
    memcpy(c_n, cs + 2 * B * H, B * H * sizeof(floating))


ctypedef int (*_get_threads_fn)() noexcept nogil
ctypedef void (*_set_threads_fn)(int) noexcept nogil

cdef enum:
    MAX_BLAS_LIBS = 8


def forward_small(cnp.ndarray x, cnp.ndarray kernel, cnp.ndarray recurrent_kernel, bias,
                  cnp.ndarray h0, cnp.ndarray c0, cnp.ndarray activations,
                  cnp.ndarray batch_sizes, bint reverse, bint return_sequences,
                  cnp.ndarray blas_switch=None):
    """Inference of a call with few rows, without a mask, projection or dropout: the
    arithmetic of pylstm.ops's chunked inference (so the same bits), with one call's worth
    of Python overhead (microseconds at batch 1) instead of several.

    Args (trusted: validated by pylstm.ops; C-contiguous, the kernel's dtype):
        x: time-major `(T, B, D)`, or batch-major `(B, T, D)` with T = 1 or B = 1: rows
            time-major in memory either way (row t*B + b).
        kernel `(D, 4H)`, recurrent_kernel `(H, 4H)`, bias `(4H,)` or None.
        h0, c0: `(B, H)`.  activations: `(5,)` intc codes.
        batch_sizes: `(T,)` intc, every entry B (in x's first two axes' order: T and B
            are read from it and from h0).
        blas_switch: None, or `(2n,)` uintp addresses of n BLAS libraries' get and set
            thread-count functions (`pylstm._threads.loop_switch`): each is set to one thread
            for the call, and back to its count after.

    Returns:
        `(y, h_n, c_n)`: y of x's shape with H features (None without `return_sequences`),
        h_n and c_n `(B, H)`, new arrays of the kernel's dtype.
    """
    cdef int T = batch_sizes.shape[0]
    cdef int B = h0.shape[0]
    cdef int D = kernel.shape[0]
    cdef int H = kernel.shape[1] // 4
    cdef Py_ssize_t n = <Py_ssize_t> T * B * 4 * H + 4 * B * H + 3 * B * H
    cdef int typenum = cnp.PyArray_TYPE(kernel)
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = x.shape[0], x.shape[1], H
    y = cnp.PyArray_EMPTY(3, dims, typenum, 0) if return_sequences else None
    dims[0], dims[1] = B, H
    h_n = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    c_n = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    cdef void* y_p = cnp.PyArray_DATA(y) if y is not None else NULL
    cdef void* hn_p = cnp.PyArray_DATA(h_n)
    cdef void* cn_p = cnp.PyArray_DATA(c_n)
    cdef const void* x_p = cnp.PyArray_DATA(x)
    cdef const void* k_p = cnp.PyArray_DATA(kernel)
    cdef const void* r_p = cnp.PyArray_DATA(recurrent_kernel)
    cdef const void* b_p = cnp.PyArray_DATA(bias) if bias is not None else NULL
    cdef const void* h0_p = cnp.PyArray_DATA(h0)
    cdef const void* c0_p = cnp.PyArray_DATA(c0)
    cdef const int* bs_p = <const int*> cnp.PyArray_DATA(batch_sizes)
    cdef const int* acts_p = <const int*> cnp.PyArray_DATA(activations)
    cdef const size_t* fns = NULL
    cdef int nlibs = 0
    cdef int saved[MAX_BLAS_LIBS]
    cdef int k
    if blas_switch is not None:
        nlibs = blas_switch.shape[0] // 2
        if nlibs > MAX_BLAS_LIBS or blas_switch.dtype.itemsize != sizeof(size_t):
            raise ValueError(f"forward_small: bad blas_switch {blas_switch!r}.")
        fns = <const size_t*> cnp.PyArray_DATA(blas_switch)
    cdef void* scratch = PyMem_Malloc(n * cnp.PyArray_ITEMSIZE(kernel))
    if scratch == NULL:
        raise MemoryError(f"forward_small: cannot allocate {n} floats of scratch.")
    with nogil:
        for k in range(nlibs):
            saved[k] = (<_get_threads_fn> fns[2 * k])()
            if saved[k] != 1:
                (<_set_threads_fn> fns[2 * k + 1])(1)
        if typenum == cnp.NPY_FLOAT32:
            _forward_small(<float*> y_p, <float*> hn_p, <float*> cn_p, <float*> scratch,
                           bs_p, <const float*> x_p, <const float*> k_p,
                           <const float*> r_p, <const float*> b_p, <const float*> h0_p,
                           <const float*> c0_p, acts_p, T, B, D, H, reverse)
        else:
            _forward_small(<double*> y_p, <double*> hn_p, <double*> cn_p, <double*> scratch,
                           bs_p, <const double*> x_p, <const double*> k_p,
                           <const double*> r_p, <const double*> b_p, <const double*> h0_p,
                           <const double*> c0_p, acts_p, T, B, D, H, reverse)
        for k in range(nlibs):
            if saved[k] != 1:
                (<_set_threads_fn> fns[2 * k + 1])(saved[k])
    PyMem_Free(scratch)
    return y, h_n, c_n


# Backward --------------------------------------------------------------------------------

cdef void _backward(
        floating* dz,                 # OUT (N, G): d loss / d gate pre-activations
        floating* dh,                 # IN/OUT (B, P): d h_n in, d h_0 out
        floating* dc,                 # IN/OUT (B, H): d c_n in, d c_0 out
        floating* dy_carry,           # IN/OUT (B, P): d y_last in; scratch
        floating* dhs,                # OUT (N, P): d h_t per row (projection), or NULL
        floating* dm,                 # scratch (B, H), used with projection
        floating* g,                  # scratch (B, P)
        floating* a,                  # scratch (H,)
        floating* hm,                 # scratch (B, P), used with four recurrent dropout masks
        const floating* dy,           # IN (N, P) or NULL; dense rows at t * dy_step + b * lddy
        Py_ssize_t lddy,              # dy: elements between a step's rows; 0: packed rows
        Py_ssize_t dy_step,           # dy: elements between dense steps (with lddy > 0)
        const floating* gates,        # IN (N, G) activated gates
        const floating* zs,           # IN (N, G) gate pre-activations, or NULL
        const floating* cs,           # IN (N + B, H) cell state slots of a training forward
        const floating* recurrent_kernel,  # IN (P, G)
        const floating* packed_t,     # IN recurrent_kernel^T packed (_recurrent.h), or NULL: BLAS
        const floating* projection,   # IN (H, P) or NULL
        const unsigned char* mask,    # IN (T, B) or NULL (only with all batch sizes = B)
        const floating* rdrop,        # IN (R, B, P) recurrent dropout mask, or NULL
        const int* batch_sizes,       # IN (T,) non-increasing, batch_sizes[0] = B
        int R, int T, int B, int H, int P, bint reverse, bint zero_output,
        const int* acts,              # IN (5,): i, f, g, o, cell activations
        int c0, int c1,               # this thread's column groups of `packed_t` (all: 0, C)
        pl_barrier* bar,
        float* dw,                    # OUT (D, G) d kernel, or NULL (float32, packed_t only)
        float* du,                    # OUT (P, G) d recurrent_kernel, with dw
        float* db,                    # OUT (G,) d bias, or NULL
        const float* xr,              # IN (N, D) the input rows, with dw
        const float* h_prev,          # IN (N, P) each row's h_{t-1}, with dw
        int D) noexcept nogil:
    # One thread of a team computes the units [ua, ub) of groups [c0, c1) (all H when alone):
    # their gate derivatives, and the same columns of d h_{t-1}, after the team has met at
    # `bar` (once per step) with every column of dz_t written. Projection and recurrent
    # dropout run alone, on BLAS. With `dw`, it also adds its units' columns of the weight
    # gradients (zeroed by the caller) every WGRAD_ROWS rows or more, while dz is in cache.
    cdef int G = 4 * H
    cdef Py_ssize_t N = 0
    cdef Py_ssize_t step, s, t, b, j, k, off, off_next
    cdef int n, n_next, keep
    cdef int W = 4 * pl_vec_width()
    cdef int ua = c0 * W if c0 * W < H else H
    cdef int ub = c1 * W if c1 * W < H else H
    cdef int nu = ub - ua
    # d h's columns of this thread: its units, or all P of a projection (always alone)
    cdef int pa = ua if projection == NULL else 0
    cdef int pb = ub if projection == NULL else P
    cdef int sense = 0
    cdef size_t f = sizeof(floating)
    cdef const floating* zb
    cdef const floating* xb
    cdef floating* dzb
    cdef const floating* c_in
    cdef const floating* c_out
    cdef const floating* c_fin
    cdef floating* dm_b
    cdef floating* dcb
    cdef const floating* cnb
    cdef const floating* cpb
    cdef const floating* dyb = NULL
    cdef Py_ssize_t lo = 0, pending = 0
    cdef bint standard = _standard(acts)

    for s in range(T):
        N += batch_sizes[s]
    c_fin = cs + _final_slot(N, B, reverse, True) * H
    # Processed steps in the opposite order of the forward; `off` is step t's first row.
    off = 0 if reverse else N
    for step in range(T):
        s = T - 1 - step
        t = T - 1 - s if reverse else s
        n = batch_sizes[t]
        if not reverse:
            off -= n
        n_next = _next_rows(s, t, T, n, off, batch_sizes, reverse, &off_next)
        keep = n_next if n_next < n else n
        c_in = cs + _slot(s, off, B, reverse, True) * H
        c_out = cs + _slot(s + 1, off_next, B, reverse, True) * H

        # g = d loss / d h_t, for the samples that ran this step
        for b in range(n):
            if dy != NULL:
                dyb = dy + ((off + b) * P if lddy == 0 else t * dy_step + b * lddy)
            if mask != NULL and mask[t * B + b] == 0:
                if dy != NULL and not zero_output:
                    for k in range(pa, pb):
                        dy_carry[b * P + k] += dyb[k]
                continue
            for k in range(pa, pb):
                g[b * P + k] = dh[b * P + k] + dy_carry[b * P + k]
                dy_carry[b * P + k] = 0
            if dy != NULL:
                for k in range(pa, pb):
                    g[b * P + k] += dyb[k]

        if projection != NULL:
            memcpy(dhs + off * P, g, n * P * f)
            # dm = g @ projection^T    (n, P) @ (P, H)
            matmul(n, P, H, 1, g, P, projection, True, 0, dm, H)

        for b in range(n):
            dzb = dz + (off + b) * G
            if mask != NULL and mask[t * B + b] == 0:
                for k in range(4):
                    memset(dzb + k * H + ua, 0, nu * f)
                if dhs != NULL:
                    memset(dhs + (off + b) * P, 0, P * f)
                continue
            zb = gates + (off + b) * G
            xb = _offset(zs, (off + b) * G)
            dm_b = (dm + b * H) if projection != NULL else (g + b * P)
            dcb = dc + b * H
            cnb = (c_out if b < keep else c_fin) + b * H
            cpb = c_in + b * H
            if floating is float:
                if standard:
                    # Keras's and PyTorch's activations in one pass over the units
                    pl_standard_backward(dzb, dcb, dm_b, zb, cnb, cpb, H, ua, ub)
                    continue
            # a = act(c_t), recomputed rather than cached
            memcpy(a + ua, cnb + ua, nu * f)
            _activate(acts[CELL], a + ua, nu)
            # do = dm * a * rec'(o)
            for j in range(ua, ub):
                dzb[3 * H + j] = dm_b[j] * a[j]
            _mul_dact(acts[GATE_O], dzb + 3 * H + ua, _offset(xb, 3 * H + ua), zb + 3 * H + ua,
                      nu)
            # dc_t = dc + dm * o * act'(c_t)   (dzb's first block as scratch)
            for j in range(ua, ub):
                dzb[j] = dm_b[j] * zb[3 * H + j]
            _mul_dact(acts[CELL], dzb + ua, cnb + ua, a + ua, nu)
            for j in range(ua, ub):
                dcb[j] += dzb[j]
            # di = dc_t * g * rec'(i); df = dc_t * c_{t-1} * rec'(f); dg = dc_t * i * act'(g)
            for j in range(ua, ub):
                dzb[j] = dcb[j] * zb[2 * H + j]
                dzb[H + j] = dcb[j] * cpb[j]
                dzb[2 * H + j] = dcb[j] * zb[j]
            _mul_dact(acts[GATE_I], dzb + ua, _offset(xb, ua), zb + ua, nu)
            _mul_dact(acts[GATE_F], dzb + H + ua, _offset(xb, H + ua), zb + H + ua, nu)
            _mul_dact(acts[GATE_G], dzb + 2 * H + ua, _offset(xb, 2 * H + ua), zb + 2 * H + ua,
                      nu)
            # dc_{t-1} = dc_t * f
            for j in range(ua, ub):
                dcb[j] *= zb[H + j]

        # Every column of dz_t is written: the team meets before reading whole rows of it.
        # Split barrier: in between, this thread's weight gradients, which need only its own
        # columns of dz (a partner running late costs less idle time).
        pl_barrier_arrive(bar, &sense)
        if floating is float:
            if dw != NULL:
                # rows of the steps since the last flush: [lo, lo + pending), contiguous
                if not reverse or pending == 0:
                    lo = off
                pending += n
                if pending >= WGRAD_ROWS or step == T - 1:
                    pl_weight_grad(dw, db, xr + lo * D, D, D, dz + lo * G, pending, H, ua, ub)
                    pl_weight_grad(du, NULL, h_prev + lo * P, P, P, dz + lo * G, pending, H,
                                   ua, ub)
                    pending = 0
        pl_barrier_finish(bar, sense)
        # d h_{t-1} = (dz_t @ recurrent_kernel^T) * r    (n, G) @ (G, P); masked rows carry dh.
        # Rows [n, B) keep their dh: those samples have not started (or have ended) here.
        if floating is float:
            if packed_t != NULL:
                pl_rec_grad(dh if mask == NULL else g, dz + off * G, packed_t, n, H, P, c0, c1)
            elif mask == NULL:
                _recurrent_grad(dh, dz + off * G, hm, recurrent_kernel, rdrop, R, n, B, H, P)
            else:
                _recurrent_grad(g, dz + off * G, hm, recurrent_kernel, rdrop, R, n, B, H, P)
        elif mask == NULL:
            _recurrent_grad(dh, dz + off * G, hm, recurrent_kernel, rdrop, R, n, B, H, P)
        else:
            _recurrent_grad(g, dz + off * G, hm, recurrent_kernel, rdrop, R, n, B, H, P)
        if mask != NULL:
            for b in range(n):
                if mask[t * B + b] != 0:
                    memcpy(dh + b * P + pa, g + b * P + pa, (pb - pa) * f)
        if reverse:
            off += n


cdef struct _PackedBackward:
    # One float32 backward on the packed transposed recurrent kernel, shared by a team.
    float* dz
    float* dh
    float* dc
    float* dy_carry
    float* g
    float* a
    const float* dy
    Py_ssize_t lddy, dy_step
    const float* gates
    const float* zs
    const float* cs
    const float* recurrent_kernel
    float* packed_t
    const unsigned char* mask
    const int* batch_sizes
    const int* acts
    float* dw
    float* du
    float* db
    const float* x
    const float* h_prev
    int T, B, H, P, D
    bint reverse, zero_output


cdef void _packed_backward_worker(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil:
    """Thread `tid` of `nt`: packs its groups of the transposed kernel, then runs its units."""
    cdef _PackedBackward* a = <_PackedBackward*> arg
    cdef int c0, c1
    cdef int W = 4 * pl_vec_width()
    cdef int ua, ub
    pl_share_groups(a.H, tid, nt, &c0, &c1)
    pl_pack_t(a.packed_t, a.recurrent_kernel, a.H, a.P, c0, c1)
    if a.dw != NULL:
        ua = min(c0 * W, a.H)
        ub = min(c1 * W, a.H)
        _zero_units(a.dw, a.D, a.H, ua, ub)
        _zero_units(a.du, a.P, a.H, ua, ub)
        if a.db != NULL:
            _zero_units(a.db, 1, a.H, ua, ub)
    _backward(a.dz, a.dh, a.dc, a.dy_carry, <float*> NULL, <float*> NULL, a.g, a.a,
              <float*> NULL, a.dy, a.lddy, a.dy_step, a.gates, a.zs, a.cs, a.recurrent_kernel,
              a.packed_t,
              <float*> NULL, a.mask, <float*> NULL, a.batch_sizes, 0, a.T, a.B, a.H, a.P,
              a.reverse, a.zero_output, a.acts, c0, c1, bar, a.dw, a.du, a.db, a.x, a.h_prev,
              a.D)


cdef void _zero_units(float* w, int K, int H, int ua, int ub) noexcept nogil:
    """Zeroes the columns of units [ua, ub) of every gate in the K rows of w (K, 4H)."""
    cdef int k, g
    if ub > ua:
        for k in range(K):
            for g in range(4):
                memset(w + (<Py_ssize_t> k * 4 + g) * H + ua, 0, (ub - ua) * sizeof(float))


def packed_t_size(int H, int P):
    """Floats of the buffer `backward` packs the transposed (P, 4H) recurrent kernel into."""
    return pl_packed_t_size(H, P)


def backward(floating[:, ::1] dz, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, ::1] dy_carry, floating[:, ::1] dhs, floating[:, ::1] dm,
             floating[:, ::1] g, floating[::1] a, floating[:, ::1] hm,
             const floating[:, ::1] dy, const floating[:, ::1] gates,
             const floating[:, ::1] zs, const floating[:, ::1] cs,
             const floating[:, ::1] recurrent_kernel, const floating[:, ::1] projection,
             const unsigned char[:, ::1] mask, const floating[:, :, ::1] recurrent_dropout_mask,
             const int[::1] batch_sizes, bint reverse, bint zero_output,
             const int[::1] activations, floating[::1] packed_t=None, int num_threads=1,
             floating[:, ::1] dw=None, floating[:, ::1] du=None, floating[::1] db=None,
             const floating[:, ::1] x=None, const floating[:, ::1] h_prev=None,
             Py_ssize_t lddy=0, Py_ssize_t dy_step=0):
    """Backpropagates through all steps of a packed batch, filling dz (see the Design note).

    Rows are packed as in `forward`; `cs` is its training state slots `(N + B, H)`. `zs` is the
    forward's pre-activation cache (None when no gate needs it); hm `(B, P)` is needed with a
    `recurrent_dropout_mask` of four masks. The weight gradients are then GEMMs over all N rows
    at once (pylstm.ops), unless the team adds them (below).

    `packed_t` `(packed_t_size(H, P),)` float32, without projection or recurrent dropout: the
    per-step product `dz_t @ recurrent_kernel^T` runs on the transposed kernel packed into it
    (_recurrent.h) on `num_threads` threads (negative: as in `forward`), one parallel region
    for the whole sequence.
    None: one BLAS product per step on the calling thread.

    With `packed_t`, given `dw` `(D, G)`, `du` `(P, G)` (and `db` `(G,)` or None), `x`
    `(N, D)` the input rows and `h_prev` `(N, P)` each row's previous state, the team also
    computes `dw = x^T dz`, `du = h_prev^T dz` (and `db` = dz's column sums), each member
    its own units' columns, every WGRAD_ROWS rows while dz is in cache; they are then
    not GEMMs after the loop.

    `dy` holds packed rows, or with `lddy` > 0 dense rows at `t * dy_step + b * lddy` (a
    batch-major `(B, T, P)` gradient read in place: `lddy` = T * P, `dy_step` = P).
    """
    cdef int T = batch_sizes.shape[0]
    cdef int B = dh.shape[0]
    cdef int H = dz.shape[1] // 4
    cdef int P = dh.shape[1]
    cdef int R = recurrent_dropout_mask.shape[0] if recurrent_dropout_mask is not None else 0
    cdef int C = (H + 4 * pl_vec_width() - 1) // (4 * pl_vec_width())
    cdef pl_barrier alone
    cdef _PackedBackward w
    cdef bint only_awake
    alone.count = alone.sense = 0
    alone.nt = 1
    if floating is float:
        if packed_t is not None:
            w.dz = &dz[0, 0]
            w.dh = &dh[0, 0]
            w.dc = &dc[0, 0]
            w.dy_carry = &dy_carry[0, 0]
            w.g = &g[0, 0]
            w.a = &a[0]
            w.dy = &dy[0, 0] if dy is not None else NULL
            w.lddy, w.dy_step = lddy, dy_step
            w.gates = &gates[0, 0]
            w.zs = &zs[0, 0] if zs is not None else NULL
            w.cs = &cs[0, 0]
            w.recurrent_kernel = &recurrent_kernel[0, 0]
            w.packed_t = &packed_t[0]
            w.mask = &mask[0, 0] if mask is not None else NULL
            w.batch_sizes = &batch_sizes[0]
            w.acts = &activations[0]
            w.dw = &dw[0, 0] if dw is not None else NULL
            w.du = &du[0, 0] if dw is not None else NULL
            w.db = &db[0] if dw is not None and db is not None else NULL
            w.x = &x[0, 0] if dw is not None else NULL
            w.h_prev = &h_prev[0, 0] if dw is not None else NULL
            w.D = dw.shape[0] if dw is not None else 0
            w.T, w.B, w.H, w.P = T, B, H, P
            w.reverse, w.zero_output = reverse, zero_output
            only_awake = num_threads < 0
            num_threads = max(1, min(abs(num_threads), C))
            with nogil:
                pl_team_run(num_threads, _packed_backward_worker, &w, only_awake)
            return
    with nogil:
        _backward(&dz[0, 0], &dh[0, 0], &dc[0, 0], &dy_carry[0, 0],
                  &dhs[0, 0] if dhs is not None else NULL,
                  &dm[0, 0] if dm is not None else NULL,
                  &g[0, 0], &a[0],
                  &hm[0, 0] if hm is not None else NULL,
                  &dy[0, 0] if dy is not None else NULL, lddy, dy_step,
                  &gates[0, 0],
                  &zs[0, 0] if zs is not None else NULL,
                  &cs[0, 0], &recurrent_kernel[0, 0], NULL,
                  &projection[0, 0] if projection is not None else NULL,
                  &mask[0, 0] if mask is not None else NULL,
                  &recurrent_dropout_mask[0, 0, 0] if recurrent_dropout_mask is not None
                  else NULL,
                  &batch_sizes[0], R, T, B, H, P, reverse, zero_output, &activations[0],
                  0, C, &alone, NULL, NULL, NULL, NULL, NULL, 0)


# GEMMs over all timesteps -----------------------------------------------------------------

def matmul_acc(const floating[:, ::1] a, const floating[:, ::1] w, floating[:, ::1] out,
               bint trans_a, bint trans_w, floating beta):
    """out = op(a) @ op(w) + beta * out, through SciPy's BLAS with the GIL released.

    Every dimension must be at least 1 (pylstm.ops validates this).
    """
    cdef int m = out.shape[0]
    cdef int n = out.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    with nogil:
        gemm(trans_a, trans_w, m, n, k, 1, &a[0, 0], a.shape[1], &w[0, 0], w.shape[1],
             beta, &out[0, 0], n)


def activate(floating[::1] z, int activation):
    """Applies the core's activation (an ACTIVATION_CODES value) to z in place; for tests."""
    with nogil:
        _activate(activation, &z[0], z.shape[0])


def activation_grad(floating[::1] v, const floating[::1] x, const floating[::1] y,
                    int activation):
    """v *= act'(x) in place, given x and y = act(x) as the kernels have them; for tests."""
    with nogil:
        _mul_dact(activation, &v[0], &x[0], &y[0], v.shape[0])
