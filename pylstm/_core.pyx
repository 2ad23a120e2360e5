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

    Activations (_gates.pxd, with its C half _gates.h: the only place gate math is written)
    are chosen by code, one per gate (i, f, g, o) and one for the
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
      panels of SIMD-width units holding the four gates' columns (_packed_products.h). A team
      of threads (_thread_team.h; one parallel region per call) splits the units, in whole
      panels (forward) or groups of 4 panels (backward), in proportion to each member's
      measured speed: each thread computes its units' pre-activations with its own
      register-tiled kernel, their gate math and its columns of h_t and c_t, and the team
      meets once per step at a barrier before h_t is read. Each thread's panels stay in its
      core's L2 for the whole sequence. The input product is fused into each step (x read in
      place through strides, y written in place), computed between arriving at the previous
      step's barrier and waiting at it; in training at batch under 8 it is done for all rows
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

Code:
    Python passes `forward` and `backward` small argument objects that check their arrays
    and fill the structs of what the call runs over: `Steps` fills Shape (B, T, H, P, D, R,
    N, batch_sizes) and Options (direction, training, zero_output, mask, activations),
    `RecurrentWeights` fills Weights (recurrent_kernel, projection, dropout masks, packed
    kernels), `ForwardArrays` / `BackwardArrays` the buffers (ForwardBuffers,
    BackwardBuffers) and `TeamGradients` WeightGrads (the team's weight gradients). A Share is one thread's part of the units. `_forward` and
    `_backward` walk the processed steps (StepRows: a step's rows and state slots) and call
    one named function per stage of a step: initial states, input product, recurrent
    product, gate math of each row (_gates.gates_forward / gates_backward), projection,
    outputs; backward: output gradient, projection, gate derivatives, weight gradients,
    state gradient. On the packed path a team member (`_forward_member`, `_backward_member`)
    packs its panels and runs the same functions on its units. `forward_small` runs the
    one-step kernel of _cell.pxd at each step, as `pylstm._step.StepKernel` does.
"""

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cython cimport floating
from libc.string cimport memcpy, memset

from pylstm._blas cimport gemm, matmul
from pylstm._cell cimport lstm_step
from pylstm._gates cimport *

cdef extern from "_packed_products.h" nogil:
    int PL_MR
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

cdef extern from "_thread_team.h" nogil:
    ctypedef struct pl_barrier:
        int count
        int sense
        int nt
    ctypedef void (*pl_work_fn)(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil
    int PL_MAX_THREADS
    double pl_weight[]
    int pl_member_cpu[]
    void pl_weight_nt_set(int nt)
    void pl_share(int H, int width, int tid, int nt, int* i0, int* i1)
    void pl_barrier_wait(pl_barrier* bar, int* local_sense)
    void pl_barrier_arrive(pl_barrier* bar, int* local_sense)
    void pl_barrier_finish(pl_barrier* bar, int local_sense)
    int pl_team_run(int nt, pl_work_fn fn, void* arg, int only_awake)
    long long pl_now_ns()

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

# The constants of the compiled gate math (_gates.h), for the test that pylstm.activations
# holds the same.
GATE_CONSTANTS = {"selu_alpha": SELU_ALPHA, "selu_scale": SELU_SCALE}

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
# (`python -P benchmarks/bench_lstm.py` times the training step that it sets).
cdef enum:
    WGRAD_ROWS = 64

# Codes whose derivative needs the activation's input: a gate using one makes forward keep zs.
INPUT_DERIVATIVE_CODES = frozenset({ACT_SWISH})


# What a call runs over ---------------------------------------------------------------------
# The Python-visible wrappers fill these once per call; the kernels below read them. Buffers
# are typeless pointers (a struct cannot hold a fused type): each kernel takes its main buffer
# typed (float* or double*), which selects its specialization, and casts the others to match.

cdef struct Shape:
    int T, B, H, P                # legend of the Design note
    int D                         # input features, with the core's input product (else 0)
    int R                         # recurrent dropout masks: 0, 1 or 4
    Py_ssize_t N                  # packed rows: sum(batch_sizes)
    const int* batch_sizes        # (T,) non-increasing, batch_sizes[0] = B


cdef struct Options:
    bint reverse, training, zero_output
    const unsigned char* mask     # (T, B) or NULL (only with all batch sizes = B)
    Acts acts                     # gates i, f, g, o and cell output


cdef struct Weights:
    const void* recurrent_kernel  # (P, G)
    const void* projection        # (H, P) or NULL
    const void* rdrop             # (R, B, P) recurrent dropout mask, or NULL
    float* packed                 # recurrent_kernel packed (forward) or its transpose packed
                                  # (backward), float32; NULL: one BLAS product per step
    const float* kernel           # (D, G), with the core's input product
    float* packed_kernel          # kernel packed like recurrent_kernel, with kernel
    const float* bias             # (G,) or NULL, with kernel


cdef struct ForwardBuffers:
    void* gates                   # IN/OUT (N, G): x @ kernel + bias -> activated gates
                                  # (with x in inference: a (B, G) or (HOIST, G) scratch)
    void* zs                      # OUT (N, G) gate pre-activations, or NULL
    void* hs                      # OUT (S, P) state slots: h per step, final h
    void* cs                      # OUT (S, H) state slots: c per step, final c
    const void* h0                # IN (B, P) initial h
    const void* c0                # IN (B, H) initial c
    void* ms                      # OUT (N, H) m_t cache, or NULL (training with projection)
    void* m                       # scratch (B, H), used with projection
    void* y                       # OUT outputs, or NULL
    void* y_prev                  # OUT (B, P): last unmasked output per sample (zeros in)
    void* hm                      # scratch (B, P), used with recurrent dropout
    const float* x                # IN input rows, with the core's input product, or NULL
    Py_ssize_t ldx                # x: elements between a step's rows
    Py_ssize_t x_step             # x: elements between dense steps; 0: packed rows
    Py_ssize_t ldy                # y: elements between a step's rows; 0: packed rows (N, P)
    Py_ssize_t y_step             # y: elements between dense steps (with ldy > 0)


cdef struct BackwardBuffers:
    void* dz                      # OUT (N, G): d loss / d gate pre-activations
    void* dh                      # IN/OUT (B, P): d h_n in, d h_0 out
    void* dc                      # IN/OUT (B, H): d c_n in, d c_0 out
    void* dy_carry                # IN/OUT (B, P): d y_last in; scratch
    void* dhs                     # OUT (N, P): d h_t per row (projection), or NULL
    void* dm                      # scratch (B, H), used with projection
    void* g                       # scratch (B, P)
    void* a                       # scratch (H,)
    void* hm                      # scratch (B, P), used with four recurrent dropout masks
    const void* dy                # IN d loss / d y, or NULL
    Py_ssize_t lddy               # dy: elements between a step's rows; 0: packed rows (N, P)
    Py_ssize_t dy_step            # dy: elements between dense steps (with lddy > 0)
    const void* gates             # IN (N, G) activated gates
    const void* zs                # IN (N, G) gate pre-activations, or NULL
    const void* cs                # IN (N + B, H) cell state slots of a training forward


cdef struct WeightGrads:
    # float32 packed backward only: the team adds the weight gradients as it goes.
    float* dw                     # OUT (D, G) d kernel (zeroed here), or NULL: not here
    float* du                     # OUT (P, G) d recurrent_kernel
    float* db                     # OUT (G,) d bias, or NULL
    const float* x                # IN (N, D) the input rows
    const float* h_prev           # IN (N, P) each row's h_{t-1}
    int D


cdef struct Share:
    # One thread's part of a call: items [i0, i1) (panels of `packed` forward, column groups
    # of the transposed kernel backward), their units [ua, ub), and the columns [pa, pb) of
    # h (its units, or all P of a projection, which runs alone).
    int i0, i1, ua, ub, pa, pb
    pl_barrier* bar


cdef struct StepRows:
    # Processed step s is step t, rows [off, off + n); the next processed step has n_next
    # rows from off_next (0 after the last); rows [0, keep) carry on, rows [keep, n) end here
    # and leave their state in the final slot. The step reads h_{t-1} and c_{t-1} from slot
    # rows r_in and writes h_t and c_t to slot rows r_out (rows [keep, n): to r_fin).
    Py_ssize_t t, off, off_next, r_in, r_out, r_fin
    int n, n_next, keep


cdef inline Share _share(const Shape* sh, bint projection, int width, int i0, int i1,
                         pl_barrier* bar) noexcept nogil:
    """The Share of items [i0, i1) of `width` units each."""
    cdef Share me
    me.i0, me.i1, me.bar = i0, i1, bar
    me.ua = min(i0 * width, sh.H)
    me.ub = min(i1 * width, sh.H)
    me.pa = me.ua if not projection else 0
    me.pb = me.ub if not projection else sh.P
    return me


# Walking the steps -------------------------------------------------------------------------

cdef inline Py_ssize_t _step_of(Py_ssize_t s, const Shape* sh, bint reverse) noexcept nogil:
    """The step t that processing index s runs."""
    return sh.T - 1 - s if reverse else s


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


cdef inline void _step_rows(const Shape* sh, bint reverse, bint training, Py_ssize_t s,
                            Py_ssize_t off, StepRows* st) noexcept nogil:
    """Fills st for processed step s, whose rows start at `off`; forward and backward walk
    the same geometry."""
    st.t = _step_of(s, sh, reverse)
    st.n = sh.batch_sizes[st.t]
    st.off = off
    st.n_next = 0
    st.off_next = 0
    if s + 1 < sh.T:
        st.n_next = sh.batch_sizes[st.t - 1 if reverse else st.t + 1]
        st.off_next = off - st.n_next if reverse else off + st.n
    st.keep = st.n_next if st.n_next < st.n else st.n
    st.r_in = _slot(s, off, sh.B, reverse, training)
    st.r_out = _slot(s + 1, st.off_next, sh.B, reverse, training)
    st.r_fin = _final_slot(sh.N, sh.B, reverse, training)


# Forward, one step at a time ---------------------------------------------------------------

cdef inline void _start_states(floating* hs, floating* cs, const ForwardBuffers* io,
                               const Shape* sh, const Share* me, const StepRows* st,
                               int n_prev) noexcept nogil:
    """Samples starting at this step (rows [n_prev, n): all at the first step; in reverse,
    each at its last real step) take their initial state into the slot the step reads."""
    cdef int P = sh.P, H = sh.H
    cdef floating* h_in = hs + st.r_in * P
    cdef floating* c_in = cs + st.r_in * H
    cdef const floating* h0 = <const floating*> io.h0
    cdef const floating* c0 = <const floating*> io.c0
    cdef Py_ssize_t b
    for b in range(n_prev, st.n):
        memcpy(h_in + b * P + me.pa, h0 + b * P + me.pa, (me.pb - me.pa) * sizeof(floating))
        memcpy(c_in + b * H + me.ua, c0 + b * H + me.ua, (me.ub - me.ua) * sizeof(floating))


cdef inline void _add_recurrent(
        floating* z,                  # IN/OUT (n, G): gets (h_{t-1} * r) @ recurrent_kernel
        const floating* h_prev,       # IN (n, P)
        floating* hm,                 # scratch (n, P), used with recurrent dropout
        const Shape* sh,
        const Weights* w,
        int n) noexcept nogil:
    """The BLAS recurrent product of one step, with the recurrent dropout masks (rows [0, n)
    of each) if any."""
    cdef int H = sh.H, P = sh.P, G = 4 * sh.H
    cdef const floating* recurrent_kernel = <const floating*> w.recurrent_kernel
    cdef const floating* rdrop = <const floating*> w.rdrop
    cdef Py_ssize_t k, j
    if rdrop == NULL:
        # z += h_{t-1} @ recurrent_kernel    (n, P) @ (P, G)
        matmul(n, P, G, 1, h_prev, P, recurrent_kernel, False, 1, z, G)
        return
    for k in range(sh.R):
        for j in range(n * P):
            hm[j] = h_prev[j] * rdrop[k * sh.B * P + j]
        if sh.R == 1:
            # z += (h_{t-1} * r) @ recurrent_kernel    (n, P) @ (P, G)
            matmul(n, P, G, 1, hm, P, recurrent_kernel, False, 1, z, G)
        else:
            # z[:, kH:(k+1)H] += (h_{t-1} * r_k) @ recurrent_kernel[:, kH:(k+1)H]    (n, P) @ (P, H)
            gemm(False, False, n, H, P, 1, hm, P, recurrent_kernel + k * H, G, 1, z + k * H, G)


cdef inline void _recurrent_product(floating* z, const floating* h_in, const ForwardBuffers* io,
                                    const Shape* sh, const Weights* w,
                                    const Share* me, int n) noexcept nogil:
    """z += h_{t-1} @ recurrent_kernel for this thread's units: on the packed kernel, or BLAS."""
    if floating is float:
        if w.packed != NULL:
            pl_rec_product(z, NULL, h_in, sh.P, w.packed, n, sh.H, sh.P, me.i0, me.i1)
            return
    _add_recurrent(z, h_in, <floating*> io.hm, sh, w, n)


cdef inline void _keep_pre_activations(const floating* z, const ForwardBuffers* io,
                                       const Shape* sh, const Share* me,
                                       const StepRows* st) noexcept nogil:
    """zs's rows of this step = z, for this thread's units (training, when a gate's
    derivative needs its input)."""
    cdef int H = sh.H, G = 4 * sh.H
    cdef floating* zs = <floating*> io.zs
    cdef Py_ssize_t b, k
    for b in range(st.n):
        for k in range(4):
            memcpy(zs + (st.off + b) * G + k * H + me.ua, z + b * G + k * H + me.ua,
                   (me.ub - me.ua) * sizeof(floating))


cdef inline void _cell_rows(floating* z, const ForwardBuffers* io, const Shape* sh,
                            const Options* op, const Weights* w, const Share* me,
                            const StepRows* st) noexcept nogil:
    """The gate math of every row of the step (this thread's units): c_t into the next slot
    (or the final one), m_t into h's slot, or into m with a projection. A masked row carries
    c_{t-1}."""
    cdef int H = sh.H, P = sh.P, G = 4 * sh.H
    cdef floating* hs = <floating*> io.hs
    cdef floating* cs = <floating*> io.cs
    cdef floating* m = <floating*> io.m
    cdef floating* cb
    cdef floating* m_b
    cdef const floating* cpb
    cdef Py_ssize_t b, r
    for b in range(st.n):
        r = (st.r_out if b < st.keep else st.r_fin) + b
        cb = cs + r * H
        cpb = cs + st.r_in * H + b * H
        if op.mask != NULL and op.mask[st.t * sh.B + b] == 0:
            memcpy(cb + me.ua, cpb + me.ua, (me.ub - me.ua) * sizeof(floating))
            continue
        m_b = m + b * H if w.projection != NULL else hs + r * P
        gates_forward(&op.acts, z + b * G, cb, cpb, m_b, H, me.ua, me.ub)


cdef inline void _project(floating* m, const ForwardBuffers* io, const Shape* sh,
                          const Weights* w, const StepRows* st) noexcept nogil:
    """h_t = m_t @ projection (alone), into the next slot and the final one; keeps m_t in ms
    when training."""
    cdef int H = sh.H, P = sh.P
    cdef floating* hs = <floating*> io.hs
    cdef const floating* projection = <const floating*> w.projection
    if io.ms != NULL:
        memcpy(<floating*> io.ms + st.off * H, m, st.n * H * sizeof(floating))
    # h_t = m_t @ projection    (n, H) @ (H, P), split between the two destinations
    if st.keep > 0:
        matmul(st.keep, H, P, 1, m, H, projection, False, 0, hs + st.r_out * P, P)
    if st.n > st.keep:
        matmul(st.n - st.keep, H, P, 1, m + st.keep * H, H, projection, False, 0,
               hs + (st.r_fin + st.keep) * P, P)


cdef inline void _emit_rows(floating* hs, const ForwardBuffers* io, const Shape* sh,
                            const Options* op, const Share* me,
                            const StepRows* st) noexcept nogil:
    """The outputs of the step (this thread's columns of h): y_t = h_t; a masked row carries
    h_{t-1} and repeats its last unmasked output (or zeros, with zero_output)."""
    cdef int P = sh.P
    cdef size_t width = (me.pb - me.pa) * sizeof(floating)
    cdef floating* y = <floating*> io.y
    cdef floating* y_prev = <floating*> io.y_prev
    cdef floating* hb
    cdef floating* yb
    cdef Py_ssize_t b
    cdef bint masked
    for b in range(st.n):
        hb = hs + ((st.r_out if b < st.keep else st.r_fin) + b) * P + me.pa
        masked = op.mask != NULL and op.mask[st.t * sh.B + b] == 0
        yb = NULL
        if y != NULL:
            yb = y + ((st.off + b) * P if io.ldy == 0 else st.t * io.y_step + b * io.ldy) + me.pa
        if masked:
            memcpy(hb, hs + (st.r_in + b) * P + me.pa, width)
            if y != NULL:
                if op.zero_output:
                    memset(yb, 0, width)
                else:
                    memcpy(yb, y_prev + b * P + me.pa, width)
        else:
            if op.mask != NULL:
                memcpy(y_prev + b * P + me.pa, hb, width)
            if y != NULL:
                memcpy(yb, hb, width)


cdef float* _step_input(float* gates, const ForwardBuffers* io, const Shape* sh,
                        const Options* op, const Weights* w, const Share* me, Py_ssize_t s,
                        Py_ssize_t t, Py_ssize_t off, int n) noexcept nogil:
    """The input product of processed step s (step t, rows [off, off + n)) for this thread's
    panels: z = bias + x_t @ kernel from the packed kernel; returns where z is (the gates
    cache rows in training, else the scratch)."""
    cdef Py_ssize_t G = 4 * sh.H
    cdef int H = sh.H, T = sh.T
    cdef int nu = me.ub - me.ua
    cdef Py_ssize_t block, span, t_base, j, b
    cdef int k
    cdef float* z
    if not op.training and sh.B == 1 and io.x_step > 0:
        # One sample: its steps' rows are x_step apart, so the input product of the next
        # HOIST steps is one product (kernel read once for them, not per step) into gates, a
        # (HOIST, G) scratch; the same arithmetic as per step.
        block = s - s % HOIST
        span = HOIST if T - block > HOIST else T - block
        t_base = block if not op.reverse else T - block - span
        if s == block:
            if w.bias == NULL:
                for j in range(span):
                    for k in range(4):
                        memset(gates + j * G + k * H + me.ua, 0, nu * sizeof(float))
            pl_rec_product(gates, w.bias, io.x + t_base * io.x_step, io.x_step, w.packed_kernel,
                           span, H, sh.D, me.i0, me.i1)
        return gates + (t - t_base) * G
    z = gates + off * G if op.training else gates
    if w.bias == NULL:
        for b in range(n):
            for k in range(4):
                memset(z + b * G + k * H + me.ua, 0, nu * sizeof(float))
    pl_rec_product(z, w.bias, io.x + (off * io.ldx if io.x_step == 0 else t * io.x_step),
                   io.ldx, w.packed_kernel, n, H, sh.D, me.i0, me.i1)
    return z


cdef void _forward(floating* gates, const ForwardBuffers* io, const Shape* sh,
                   const Options* op, const Weights* w, const Share* me) noexcept nogil:
    """The recurrence over all steps for one thread's units (all when alone; gates is
    io.gates, typed). With `packed`, the team meets at me.bar once per step, after writing
    h_t, and after copying initial states; projection and recurrent dropout run alone, on
    BLAS. With io.x (the core's input product), each step computes
    z = bias + x_t @ kernel + h_{t-1} @ recurrent_kernel from both packed kernels, reading x
    and writing y in place through their strides."""
    cdef int G = 4 * sh.H
    cdef Py_ssize_t s, off
    cdef int n_prev = 0
    cdef int sense = 0
    cdef floating* hs = <floating*> io.hs
    cdef floating* cs = <floating*> io.cs
    cdef floating* z
    cdef float* z_next = NULL
    cdef StepRows st

    off = sh.N if op.reverse else 0
    for s in range(sh.T):
        if op.reverse:
            off -= sh.batch_sizes[_step_of(s, sh, True)]
        _step_rows(sh, op.reverse, op.training, s, off, &st)
        if n_prev < st.n:
            _start_states(hs, cs, io, sh, me, &st, n_prev)
            pl_barrier_wait(me.bar, &sense)
        n_prev = st.n
        z = gates + st.off * G
        if floating is float:
            if io.x != NULL:
                # z = bias + x_t @ kernel: done while waiting at the previous step's barrier
                z = z_next if z_next != NULL else _step_input(gates, io, sh, op, w, me, s,
                                                              st.t, st.off, st.n)
        _recurrent_product(z, hs + st.r_in * sh.P, io, sh, w, me, st.n)
        if io.zs != NULL:
            _keep_pre_activations(z, io, sh, me, &st)
        _cell_rows(z, io, sh, op, w, me, &st)
        if w.projection != NULL:
            _project(<floating*> io.m, io, sh, w, &st)
        _emit_rows(hs, io, sh, op, me, &st)
        if not op.reverse:
            off += st.n
        if floating is float:
            if io.x != NULL and s + 1 < sh.T:
                # Split barrier: arrive, compute the next step's input product (it needs no
                # other thread's h_t), then wait; a partner running late costs less idle time.
                pl_barrier_arrive(me.bar, &sense)
                z_next = _step_input(gates, io, sh, op, w, me, s + 1,
                                     st.t - 1 if op.reverse else st.t + 1, st.off_next,
                                     st.n_next)
                pl_barrier_finish(me.bar, sense)
                continue
        pl_barrier_wait(me.bar, &sense)


# Forward on a thread team ------------------------------------------------------------------

cdef struct _ForwardTeam:
    # One float32 forward on the packed recurrent kernel, shared by a thread team.
    Shape sh
    Options op
    Weights w
    ForwardBuffers io
    bint pack                     # pack the kernels first (else as a previous call left them)


cdef void _forward_member(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil:
    """Thread `tid` of `nt`: packs its panels if asked, then runs its units of the forward."""
    cdef _ForwardTeam* a = <_ForwardTeam*> arg
    # each member's own copy: read at every step, never from a line another thread writes
    cdef Shape sh = a.sh
    cdef Options op = a.op
    cdef Weights w = a.w
    cdef ForwardBuffers io = a.io
    cdef int q0, q1
    cdef Share me
    pl_share(sh.H, pl_vec_width(), tid, nt, &q0, &q1)
    me = _share(&sh, False, pl_vec_width(), q0, q1, bar)
    if a.pack:
        pl_pack(w.packed, <const float*> w.recurrent_kernel, sh.H, sh.P, q0, q1)
        if io.x != NULL:
            pl_pack(w.packed_kernel, w.kernel, sh.H, sh.D, q0, q1)
    if io.x != NULL and op.training and sh.B < TRAIN_STEP_INPUT_MIN_BATCH:
        _all_rows_input(&io, &sh, &w, &me)
        io.x = NULL
    _forward(<float*> io.gates, &io, &sh, &op, &w, &me)


cdef void _all_rows_input(const ForwardBuffers* io, const Shape* sh, const Weights* w,
                          const Share* me) noexcept nogil:
    """Small training batches: the input product of every row at once into the gates cache
    (this thread's units), gates = bias + x @ kernel, reading the packed kernel once for many
    rows; larger batches compute it step by step, each while waiting at the previous step's
    barrier. Either way the same arithmetic as the fused inference."""
    cdef int G = 4 * sh.H
    cdef float* gates = <float*> io.gates
    cdef Py_ssize_t r
    cdef int k
    if w.bias == NULL:
        for r in range(sh.N):
            for k in range(4):
                memset(gates + r * G + k * sh.H + me.ua, 0, (me.ub - me.ua) * sizeof(float))
    pl_gemm_rows(gates, w.bias, io.x, io.ldx, w.packed_kernel, sh.N, sh.H, sh.D, me.i0, me.i1)


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


cdef void _barrier_member(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil:
    cdef int rounds = (<int*> arg)[0]
    cdef int sense = 0
    cdef int i
    for i in range(rounds):
        pl_barrier_wait(bar, &sense)


def team_calibration(int nt):
    """Measures what the thread team's sizes are derived from (`pylstm._tuning`): the packed
    recurrent product's rate on one thread (FLOP per ns: 4 rows of 64 units and 64 inputs,
    the best of repeated runs), and the time a barrier of a team of `nt` takes (ns, the
    best of repeated runs of barriers alone; 0 for `nt` 1 or where the team is the caller
    alone). Returns `(flop_per_ns, barrier_ns, team)`, `team` the members that ran."""
    cdef int H = 64, K = 64, n = 4, reps = 64, rounds = 256, one = 1
    cdef int panels = (H + pl_vec_width() - 1) // pl_vec_width()
    cdef size_t packed_floats = pl_packed_size(H, K)
    cdef size_t i
    cdef long long start, best = -1, elapsed
    cdef int trial, rep, team = 1
    if not 1 <= nt <= PL_MAX_THREADS:
        raise ValueError(f"Argument `nt` must be in [1, {PL_MAX_THREADS}], received {nt}.")
    cdef float* buffer = <float*> PyMem_Malloc(
        (packed_floats + K * 4 * H + n * K + n * 4 * H) * sizeof(float))
    if buffer == NULL:
        raise MemoryError()
    cdef float* packed = buffer
    cdef float* u = packed + packed_floats
    cdef float* h = u + K * 4 * H
    cdef float* z = h + n * K
    for i in range(K * 4 * H):
        u[i] = 0.01
    for i in range(n * K):
        h[i] = 0.5
    pl_pack(packed, u, H, K, 0, panels)
    with nogil:
        for trial in range(8):
            start = pl_now_ns()
            for rep in range(reps):
                pl_rec_product(z, NULL, h, K, packed, n, H, K, 0, panels)
            elapsed = pl_now_ns() - start
            if best < 0 or elapsed < best:
                best = elapsed
    PyMem_Free(buffer)
    flop_per_ns = 2.0 * n * K * 4 * H * reps / max(best, 1)
    if nt == 1:
        return flop_per_ns, 0.0, 1
    best = -1
    with nogil:
        team = pl_team_run(nt, _barrier_member, &one, 0)     # starts or wakes the helpers
        for trial in range(4):
            start = pl_now_ns()
            team = pl_team_run(nt, _barrier_member, &rounds, 0)
            elapsed = pl_now_ns() - start
            if best < 0 or elapsed < best:
                best = elapsed
    return flop_per_ns, (best / rounds if team > 1 else 0.0), team


def tile_sizes():
    """The packed kernels' register tile at this kernel level: `{"vector_floats": floats a
    vector register holds, "tile_rows": rows of a recurrent tile}`."""
    return {"vector_floats": pl_vec_width(), "tile_rows": PL_MR}


def team_cpus(int nt):
    """The CPU each member of the thread team's last run of `nt` ran its share on (after a
    helper left a CPU another member was on), -1 where not known; for diagnostics and tests."""
    if not 1 <= nt <= PL_MAX_THREADS:
        raise ValueError(f"Argument `nt` must be in [1, {PL_MAX_THREADS}], received {nt}.")
    return [pl_member_cpu[t] for t in range(nt)]


def packed_size(int H, int P):
    """Floats of the buffer `forward` packs a (P, 4H) recurrent kernel into (float32 only)."""
    return pl_packed_size(H, P)


# What a call runs over, as Python passes it --------------------------------------------------
# Python builds the arguments of `forward` and `backward` as objects of the classes below
# (ops builds them once per call, or once per run of chunks where they stay the same). Each
# checks its arrays when built (an ndarray of the right dtype and dimensions, C-contiguous,
# writable where the kernels write, the shapes it can compare) and keeps them alive while it
# holds their pointers; `forward` and `backward` check that the three agree, so that no
# kernel reads or writes outside an array.

cdef dict _DTYPE_NAMES = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT64: "float64",
                          cnp.NPY_INT: "intc", cnp.NPY_UBYTE: "uint8"}


cdef void* _data(object a, str name, int typenum, int ndim, bint written,
                 bint optional) except? NULL:
    """The data of array argument `name`, checked: an ndarray of `typenum` with `ndim`
    dimensions, C-contiguous, writable if `written`; None gives NULL if `optional`."""
    cdef cnp.ndarray arr
    if a is None:
        if optional:
            return NULL
        raise TypeError(f"Argument `{name}` must be an array, received None.")
    if not cnp.PyArray_Check(a):
        raise TypeError(f"Argument `{name}` must be a NumPy array, received "
                        f"{type(a).__name__}.")
    arr = <cnp.ndarray> a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"Argument `{name}` must have dtype {_DTYPE_NAMES[typenum]}, received "
                        f"{a.dtype}.")
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"Argument `{name}` must have {ndim} dimensions, received shape "
                         f"{a.shape}.")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"Argument `{name}` must be C-contiguous.")
    if written and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"Argument `{name}` must be writable.")
    return cnp.PyArray_DATA(arr)


cdef inline Py_ssize_t _dim(object a, int i) noexcept:
    """Dimension i of a checked array (0 for None)."""
    return cnp.PyArray_DIMS(<cnp.ndarray> a)[i] if a is not None else 0


cdef int _expect(object a, str name, Py_ssize_t d0, Py_ssize_t d1) except -1:
    """Checks that the 2-D array `name`, if given, is (d0, d1); -1: any size there."""
    if a is None:
        return 0
    if (d0 >= 0 and _dim(a, 0) != d0) or (d1 >= 0 and _dim(a, 1) != d1):
        raise ValueError(f"Argument `{name}` must have shape "
                         f"({d0 if d0 >= 0 else 'any'}, {d1 if d1 >= 0 else 'any'}), "
                         f"received {a.shape}.")
    return 0


cdef int _stride(Py_ssize_t value, str name) except -1:
    """Checks that the stride argument `name` is not negative."""
    if value < 0:
        raise ValueError(f"Argument `{name}` must be >= 0, received {value}.")
    return 0


cdef int _reaches(Py_ssize_t size, str name, Py_ssize_t needed) except -1:
    """Checks that an array `name` of `size` elements holds the `needed` a call addresses."""
    if size < needed:
        raise ValueError(f"Argument `{name}` must hold at least {needed} elements for this "
                         f"call, received {size}.")
    return 0


cdef class Steps:
    """Which steps a call runs, and how: `batch_sizes` `(T,)` intc, non-increasing (the
    packed batch: step t runs its first batch_sizes[t] samples; all B on the dense path),
    `activations` `(5,)` intc (ACTIVATION_CODES of gates i, f, g, o and of the cell output),
    `mask` `(T, B)` uint8 or None (dense path only), and the flags `reverse`, `training`
    (keep every step's state slots; `backward` needs it) and `zero_output` (a masked step
    outputs zeros instead of repeating its last output)."""

    cdef Shape sh                 # T, N and batch_sizes (the arrays and weights give the rest)
    cdef Options op
    cdef Py_ssize_t mask_batch
    cdef readonly object batch_sizes, activations, mask

    def __init__(self, batch_sizes, activations, *, mask=None, bint reverse=False,
                 bint training=False, bint zero_output=False):
        cdef const int* sizes = <const int*> _data(batch_sizes, "batch_sizes", cnp.NPY_INT, 1,
                                                   False, False)
        cdef const int* codes = <const int*> _data(activations, "activations", cnp.NPY_INT, 1,
                                                   False, False)
        cdef Py_ssize_t s
        self.sh.T = _dim(batch_sizes, 0)
        if self.sh.T < 1:
            raise ValueError("Argument `batch_sizes` must have at least one step, received 0.")
        if _dim(activations, 0) != 5:
            raise ValueError(f"Argument `activations` must have shape (5,), received "
                             f"{activations.shape}.")
        self.sh.N = 0
        for s in range(self.sh.T):
            if sizes[s] < 0 or (s > 0 and sizes[s] > sizes[s - 1]):
                raise ValueError(f"Argument `batch_sizes` must be non-negative and "
                                 f"non-increasing, received {sizes[s]} at step {s}"
                                 + (f" after {sizes[s - 1]}." if s > 0 else "."))
            self.sh.N += sizes[s]
        self.sh.batch_sizes = sizes
        self.sh.B = self.sh.H = self.sh.P = self.sh.D = self.sh.R = 0
        self.op.mask = <const unsigned char*> _data(mask, "mask", cnp.NPY_UBYTE, 2, False, True)
        _expect(mask, "mask", self.sh.T, -1)
        self.mask_batch = _dim(mask, 1)
        self.op.reverse, self.op.training, self.op.zero_output = reverse, training, zero_output
        self.op.acts = acts_of(codes)
        self.batch_sizes = batch_sizes
        self.activations = activations
        self.mask = mask


cdef class RecurrentWeights:
    """The weights the time loop reads: `recurrent_kernel` `(P, G)`, `projection` `(H, P)` or
    None, `recurrent_dropout_mask` `(R, B, P)` or None (R = 1, or 4: one per gate), all of one
    floating dtype. Float32 without projection or recurrent dropout may run packed: `packed`
    `(packed_size(H, P),)` for `forward` (`(packed_t_size(H, P),)` for `backward`), the buffer
    the core packs recurrent_kernel (its transpose) into; for the core's input product
    (`ForwardArrays`' `x`), also `kernel` `(D, G)`, `packed_kernel` `(packed_size(H, D),)` and
    `bias` `(G,)` or None."""

    cdef Weights w
    cdef int typenum
    cdef int H, P, D, R
    cdef Py_ssize_t rdrop_batch, packed_floats
    cdef readonly object recurrent_kernel, projection, recurrent_dropout_mask
    cdef readonly object packed, kernel, packed_kernel, bias

    def __init__(self, recurrent_kernel, *, projection=None, recurrent_dropout_mask=None,
                 packed=None, kernel=None, packed_kernel=None, bias=None):
        cdef int t = (cnp.PyArray_TYPE(<cnp.ndarray> recurrent_kernel) if cnp.PyArray_Check(recurrent_kernel)
                      else cnp.NPY_FLOAT64)
        if t != cnp.NPY_FLOAT32:
            t = cnp.NPY_FLOAT64
        self.typenum = t
        self.w.recurrent_kernel = _data(recurrent_kernel, "recurrent_kernel", t, 2, False, False)
        self.P = _dim(recurrent_kernel, 0)
        self.H = _dim(recurrent_kernel, 1) // 4
        _expect(recurrent_kernel, "recurrent_kernel", -1, 4 * self.H)
        self.w.projection = _data(projection, "projection", t, 2, False, True)
        _expect(projection, "projection", self.H, self.P)
        if projection is None and self.P != self.H:
            raise ValueError(f"Argument `recurrent_kernel` must have shape ({self.H}, "
                             f"{4 * self.H}) without a projection, received "
                             f"{recurrent_kernel.shape}.")
        self.w.rdrop = _data(recurrent_dropout_mask, "recurrent_dropout_mask", t, 3, False, True)
        self.R = _dim(recurrent_dropout_mask, 0)
        self.rdrop_batch = _dim(recurrent_dropout_mask, 1)
        if recurrent_dropout_mask is not None and (
                self.R not in (1, 4) or _dim(recurrent_dropout_mask, 2) != self.P):
            raise ValueError(f"Argument `recurrent_dropout_mask` must have shape (1 or 4, B, "
                             f"{self.P}), received {recurrent_dropout_mask.shape}.")
        self.w.packed = self.w.packed_kernel = NULL
        self.w.kernel = self.w.bias = NULL
        self.D = 0
        self.packed_floats = 0
        if packed is not None:
            if t != cnp.NPY_FLOAT32 or projection is not None or recurrent_dropout_mask is not None:
                raise ValueError("Argument `packed` needs float32 weights without projection or "
                                 "recurrent dropout mask.")
            self.w.packed = <float*> _data(packed, "packed", t, 1, True, False)
            self.packed_floats = _dim(packed, 0)
        if kernel is not None or packed_kernel is not None or bias is not None:
            if packed is None or kernel is None or packed_kernel is None:
                raise ValueError("Arguments `kernel` and `packed_kernel` go together, with "
                                 "`packed` (the core's input product).")
            self.w.kernel = <const float*> _data(kernel, "kernel", t, 2, False, False)
            self.D = _dim(kernel, 0)
            _expect(kernel, "kernel", -1, 4 * self.H)
            self.w.packed_kernel = <float*> _data(packed_kernel, "packed_kernel", t, 1, True,
                                                  False)
            _reaches(_dim(packed_kernel, 0), "packed_kernel", pl_packed_size(self.H, self.D))
            self.w.bias = <const float*> _data(bias, "bias", t, 1, False, True)
            if bias is not None and _dim(bias, 0) != 4 * self.H:
                raise ValueError(f"Argument `bias` must have shape ({4 * self.H},), received "
                                 f"{bias.shape}.")
        self.recurrent_kernel = recurrent_kernel
        self.projection = projection
        self.recurrent_dropout_mask = recurrent_dropout_mask
        self.packed = packed
        self.kernel = kernel
        self.packed_kernel = packed_kernel
        self.bias = bias


cdef class ForwardArrays:
    """The arrays `forward` reads and writes, of the weights' dtype (see the module's Design
    note): `gates` `(N, G)` (in: x @ kernel + bias; out: the activated gates; with the core's
    input product in inference, a `(B, G)` scratch, `(HOIST_STEPS, G)` for one dense sample),
    `hs` `(S, P)` and `cs` `(S, H)` the state slots (S = N + B in training, 3B in inference;
    the final states in rows `[N, N + B)`, `[0, B)` in reverse training, `[2B, 3B)` in
    inference), `h0` `(B, P)` and `c0` `(B, H)` the initial states, `y_prev` `(B, P)` (in:
    zeros; out: each sample's last unmasked output). Optional: `zs` `(N, G)` the
    pre-activations, `ms` `(N, H)` (training with projection), `m` `(B, H)` (scratch with
    projection), `y` the outputs `(N, P)`, or with `ldy` > 0 dense rows `(t, b)` at
    `t * y_step + b * ldy`, `hm` `(B, P)` (scratch with recurrent dropout), and `x` (flat,
    float32) the input rows for the core's input product: a step's rows `ldx` apart, dense
    steps `x_step` apart (0: packed rows, each step's contiguous)."""

    cdef ForwardBuffers io
    cdef int typenum
    cdef Py_ssize_t B, H, P, gate_rows, slots, zs_rows, ms_rows, y_size, x_size
    cdef readonly object gates, hs, cs, h0, c0, y_prev, zs, ms, m, y, hm, x

    def __init__(self, gates, hs, cs, h0, c0, y_prev, *, zs=None, ms=None, m=None, y=None,
                 hm=None, x=None, Py_ssize_t ldx=0, Py_ssize_t x_step=0, Py_ssize_t ldy=0,
                 Py_ssize_t y_step=0):
        cdef int t = (cnp.PyArray_TYPE(<cnp.ndarray> gates) if cnp.PyArray_Check(gates) else cnp.NPY_FLOAT64)
        if t != cnp.NPY_FLOAT32:
            t = cnp.NPY_FLOAT64
        self.typenum = t
        self.io.gates = _data(gates, "gates", t, 2, True, False)
        self.io.hs = _data(hs, "hs", t, 2, True, False)
        self.io.cs = _data(cs, "cs", t, 2, True, False)
        self.io.h0 = _data(h0, "h0", t, 2, False, False)
        self.io.c0 = _data(c0, "c0", t, 2, False, False)
        self.io.y_prev = _data(y_prev, "y_prev", t, 2, True, False)
        self.io.zs = _data(zs, "zs", t, 2, True, True)
        self.io.ms = _data(ms, "ms", t, 2, True, True)
        self.io.m = _data(m, "m", t, 2, True, True)
        self.io.y = _data(y, "y", t, 2, True, True)
        self.io.hm = _data(hm, "hm", t, 2, True, True)
        self.io.x = <const float*> _data(x, "x", cnp.NPY_FLOAT32, 1, False, True)
        self.gate_rows, self.H = _dim(gates, 0), _dim(gates, 1) // 4
        self.slots, self.P = _dim(hs, 0), _dim(hs, 1)
        self.B = _dim(h0, 0)
        _expect(gates, "gates", -1, 4 * self.H)
        _expect(cs, "cs", self.slots, self.H)
        _expect(c0, "c0", self.B, self.H)
        _expect(h0, "h0", self.B, self.P)
        _expect(y_prev, "y_prev", self.B, self.P)
        _expect(zs, "zs", -1, 4 * self.H)
        _expect(ms, "ms", -1, self.H)
        _expect(m, "m", self.B, self.H)
        _expect(y, "y", -1, self.P)
        _expect(hm, "hm", self.B, self.P)
        self.zs_rows, self.ms_rows = _dim(zs, 0), _dim(ms, 0)
        self.y_size = _dim(y, 0) * self.P
        self.x_size = _dim(x, 0)
        if x is not None and t != cnp.NPY_FLOAT32:
            raise TypeError("Argument `x` (the core's input product) needs float32 arrays, "
                            "received float64.")
        _stride(ldx, "ldx")
        _stride(x_step, "x_step")
        _stride(ldy, "ldy")
        _stride(y_step, "y_step")
        self.io.ldx, self.io.x_step = ldx, x_step
        self.io.ldy, self.io.y_step = ldy, y_step
        self.gates = gates
        self.hs = hs
        self.cs = cs
        self.h0 = h0
        self.c0 = c0
        self.y_prev = y_prev
        self.zs = zs
        self.ms = ms
        self.m = m
        self.y = y
        self.hm = hm
        self.x = x


cdef int _dtypes_agree(int arrays, int weights) except -1:
    if arrays != weights:
        raise TypeError(f"The arrays and the weights must have one dtype, received "
                        f"{_DTYPE_NAMES[arrays]} arrays and {_DTYPE_NAMES[weights]} weights.")
    return 0


cdef int _weights_fit(RecurrentWeights weights, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P,
                      Steps steps) except -1:
    """Checks that the weights and the steps fit arrays of B samples, H units, P outputs."""
    if weights.H != H or weights.P != P:
        raise ValueError(f"Argument `recurrent_kernel` must have shape ({P}, {4 * H}) to fit "
                         f"the arrays, received ({weights.P}, {4 * weights.H}).")
    if weights.w.rdrop != NULL and weights.rdrop_batch != B:
        raise ValueError(f"Argument `recurrent_dropout_mask` must have {B} samples, received "
                         f"{weights.rdrop_batch}.")
    if steps.op.mask != NULL and steps.mask_batch != B:
        raise ValueError(f"Argument `mask` must have {B} samples, received "
                         f"{steps.mask_batch}.")
    if steps.sh.batch_sizes[0] > B:
        raise ValueError(f"Argument `batch_sizes` must not exceed the batch {B}, received "
                         f"{steps.sh.batch_sizes[0]}.")
    return 0


cdef int _forward_fits(ForwardArrays a, RecurrentWeights weights, Steps steps) except -1:
    """Checks that `forward`'s arguments agree: no kernel reads or writes outside an array."""
    cdef Py_ssize_t N = steps.sh.N, B = a.B, T = steps.sh.T
    cdef bint training = steps.op.training
    _dtypes_agree(a.typenum, weights.typenum)
    _weights_fit(weights, B, a.H, a.P, steps)
    if a.slots != (N + B if training else 3 * B):
        raise ValueError(f"Arguments `hs` and `cs` must have {N + B if training else 3 * B} "
                         f"rows (state slots), received {a.slots}.")
    if a.io.x == NULL or training:
        _reaches(a.gate_rows, "gates (rows)", N)
    else:
        _reaches(a.gate_rows, "gates (rows)", HOIST if B == 1 and a.io.x_step > 0 else B)
    if a.io.zs != NULL:
        _reaches(a.zs_rows, "zs (rows)", N)
    if a.io.ms != NULL:
        _reaches(a.ms_rows, "ms (rows)", N)
    if weights.w.projection != NULL and (a.io.m == NULL or (training and a.io.ms == NULL)):
        raise ValueError("A projection needs `m` (and in training `ms`).")
    if weights.w.rdrop != NULL and a.io.hm == NULL:
        raise ValueError("A recurrent dropout mask needs `hm`.")
    if a.io.y != NULL:
        _reaches(a.y_size, "y", N * a.P if a.io.ldy == 0 else
                 (T - 1) * a.io.y_step + (B - 1) * a.io.ldy + a.P)
    if a.io.x != NULL:
        if weights.w.kernel == NULL:
            raise ValueError("Argument `x` (the core's input product) needs `kernel`, "
                             "`packed_kernel` and `packed` in the weights.")
        if training and a.io.x_step != 0:
            # a small training batch computes all rows' input products at once, `ldx` apart
            raise ValueError(f"Argument `x_step` must be 0 in training (`x` as packed rows), "
                             f"received {a.io.x_step}.")
        _reaches(a.x_size, "x", (N - 1) * a.io.ldx + weights.D if a.io.x_step == 0 else
                 (T - 1) * a.io.x_step + (B - 1) * a.io.ldx + weights.D)
    if weights.w.packed != NULL:
        _reaches(weights.packed_floats, "packed", pl_packed_size(a.H, a.P))
    return 0


cdef inline int _team_size(int team, int items) except -1:
    """The threads of a team asked for `team` threads: at most one per item (panel or
    group)."""
    if team < 1:
        raise ValueError(f"Argument `team` must be at least 1, received {team}.")
    return min(team, items)


def forward(ForwardArrays arrays not None, RecurrentWeights weights not None,
            Steps steps not None, int team=1, bint team_if_awake=False, bint pack=True):
    """Runs the recurrence over all steps of a packed batch (see the module's Design note).

    Args:
        arrays: the `ForwardArrays` it reads and fills.
        weights: the `RecurrentWeights`; with `packed`, the recurrent product runs on
            recurrent_kernel packed into it (_packed_products.h), with `kernel` the input
            product too (each step's `bias + x_t @ kernel`: all rows first in training at
            batch under 8, else step by step; the same arithmetic either way, so inference
            and training give the same bits). Without, one BLAS product per step on the
            calling thread.
        steps: the `Steps` it runs.
        team: threads of the packed path's team (one parallel region for the whole sequence).
        team_if_awake: the team only if its helpers are still awake from a previous run,
            else the calling thread alone.
        pack: pack the kernels first; False: use them as a previous call left them (the
            chunks of one inference).

    Raises:
        TypeError: an array of another dtype.
        ValueError: arrays, weights and steps that do not fit together.
    """
    cdef Shape sh = steps.sh
    cdef _ForwardTeam run
    cdef pl_barrier alone
    cdef Share me
    cdef int items = (weights.H + pl_vec_width() - 1) // pl_vec_width()
    cdef int size = _team_size(team, items)
    _forward_fits(arrays, weights, steps)
    sh.B, sh.H, sh.P, sh.R = arrays.B, weights.H, weights.P, weights.R
    sh.D = weights.D if arrays.io.x != NULL else 0
    if weights.w.packed != NULL:
        run.sh, run.op, run.w, run.io, run.pack = sh, steps.op, weights.w, arrays.io, pack
        with nogil:
            pl_team_run(size, _forward_member, &run, team_if_awake)
        return
    alone.count = alone.sense = 0
    alone.nt = 1
    me = _share(&sh, weights.w.projection != NULL, pl_vec_width(), 0, items, &alone)
    with nogil:
        if arrays.typenum == cnp.NPY_FLOAT32:
            _forward(<float*> arrays.io.gates, &arrays.io, &sh, &steps.op, &weights.w, &me)
        else:
            _forward(<double*> arrays.io.gates, &arrays.io, &sh, &steps.op, &weights.w, &me)


# Calls of a few rows -----------------------------------------------------------------------

cdef void _input_rows(floating* gates, const floating* x, const floating* kernel,
                      const floating* bias, Py_ssize_t N, int D, int G) noexcept nogil:
    """gates (N, G) = bias + x (N, D) @ kernel (D, G): one GEMM over all rows."""
    cdef Py_ssize_t r
    if bias != NULL:
        for r in range(N):
            memcpy(gates + r * G, bias, G * sizeof(floating))
    else:
        memset(gates, 0, N * G * sizeof(floating))
    # gates += x @ kernel    (N, D) @ (D, G)
    gemm(False, False, <int> N, G, D, 1, x, D, kernel, G, 1, gates, G)


cdef void _forward_small(
        floating* gates,              # IN (N, G): bias + x @ kernel, rows time-major
        floating* y,                  # OUT (N, H) outputs, rows time-major, or NULL
        floating* h_n,                # OUT (B, H): the state, updated in place at each step
        floating* c_n,                # OUT (B, H)
        const floating* recurrent_kernel,  # IN (H, G)
        const Acts* acts, int T, int B, int H, bint reverse) noexcept nogil:
    """The time loop of a call of a few rows: the one-step kernel at each step, from the
    initial state the caller put into h_n and c_n. The arithmetic of pylstm.ops's chunked
    inference, step for step (so the same bits)."""
    cdef int G = 4 * H
    cdef Py_ssize_t s, t
    for s in range(T):
        t = T - 1 - s if reverse else s
        lstm_step(gates + t * B * G, h_n, c_n, h_n, c_n, NULL, recurrent_kernel, NULL, acts,
                  B, H, H)
        if y != NULL:
            memcpy(y + t * B * H, h_n, B * H * sizeof(floating))


ctypedef int (*_get_threads_fn)() noexcept nogil
ctypedef void (*_set_threads_fn)(int) noexcept nogil

cdef enum:
    MAX_BLAS_LIBS = 8


cdef struct _BlasSwitch:
    # BLAS libraries whose thread count a call sets to one, and their counts before.
    int n
    const size_t* fns             # (2n,): get and set functions of each library
    int saved[MAX_BLAS_LIBS]


cdef void _blas_one_thread(_BlasSwitch* sw) noexcept nogil:
    cdef int k
    for k in range(sw.n):
        sw.saved[k] = (<_get_threads_fn> sw.fns[2 * k])()
        if sw.saved[k] != 1:
            (<_set_threads_fn> sw.fns[2 * k + 1])(1)


cdef void _blas_restore(const _BlasSwitch* sw) noexcept nogil:
    cdef int k
    for k in range(sw.n):
        if sw.saved[k] != 1:
            (<_set_threads_fn> sw.fns[2 * k + 1])(sw.saved[k])


def forward_small(cnp.ndarray x, cnp.ndarray kernel, cnp.ndarray recurrent_kernel, bias,
                  cnp.ndarray h0, cnp.ndarray c0, cnp.ndarray activations,
                  cnp.ndarray batch_sizes, bint reverse, bint return_sequences,
                  cnp.ndarray blas_switch=None):
    """Inference of a call with few rows, without a mask, projection or dropout: the
    arithmetic of pylstm.ops's chunked inference (so the same bits), with one call's worth
    of Python overhead instead of several (`python -P benchmarks/bench_lstm.py --quick` times
    it: its one-step cell).

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
    cdef Py_ssize_t N = <Py_ssize_t> T * B
    cdef int typenum = cnp.PyArray_TYPE(kernel)
    cdef cnp.npy_intp dims[3]
    cdef _BlasSwitch sw
    cdef Acts acts = acts_of(<const int*> cnp.PyArray_DATA(activations))
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
    sw.n = 0
    sw.fns = NULL
    if blas_switch is not None:
        sw.n = blas_switch.shape[0] // 2
        if sw.n > MAX_BLAS_LIBS or blas_switch.dtype.itemsize != sizeof(size_t):
            raise ValueError(f"forward_small: bad blas_switch {blas_switch!r}.")
        sw.fns = <const size_t*> cnp.PyArray_DATA(blas_switch)
    cdef void* gates = PyMem_Malloc(N * 4 * H * cnp.PyArray_ITEMSIZE(kernel))
    if gates == NULL:
        raise MemoryError(f"forward_small: cannot allocate {N * 4 * H} floats of scratch.")
    cdef const void* h0_p = cnp.PyArray_DATA(h0)
    cdef const void* c0_p = cnp.PyArray_DATA(c0)
    cdef size_t state_bytes = B * H * cnp.PyArray_ITEMSIZE(kernel)
    with nogil:
        # the state starts as h0, c0 and is updated in place
        memcpy(hn_p, h0_p, state_bytes)
        memcpy(cn_p, c0_p, state_bytes)
        _blas_one_thread(&sw)
        if typenum == cnp.NPY_FLOAT32:
            _input_rows(<float*> gates, <const float*> x_p, <const float*> k_p,
                        <const float*> b_p, N, D, 4 * H)
            _forward_small(<float*> gates, <float*> y_p, <float*> hn_p, <float*> cn_p,
                           <const float*> r_p, &acts, T, B, H, reverse)
        else:
            _input_rows(<double*> gates, <const double*> x_p, <const double*> k_p,
                        <const double*> b_p, N, D, 4 * H)
            _forward_small(<double*> gates, <double*> y_p, <double*> hn_p, <double*> cn_p,
                           <const double*> r_p, &acts, T, B, H, reverse)
        _blas_restore(&sw)
    PyMem_Free(gates)
    return y, h_n, c_n


# Backward, one step at a time --------------------------------------------------------------

cdef inline void _output_grad(floating* g, const BackwardBuffers* io, const Shape* sh,
                              const Options* op, const Share* me,
                              const StepRows* st) noexcept nogil:
    """g = d loss / d h_t for the samples that ran this step (this thread's columns):
    dh + the carried d y + d y_t; a masked row adds d y_t to the carry instead."""
    cdef int P = sh.P
    cdef floating* dh = <floating*> io.dh
    cdef floating* dy_carry = <floating*> io.dy_carry
    cdef const floating* dy = <const floating*> io.dy
    cdef const floating* dyb = NULL
    cdef Py_ssize_t b, k
    for b in range(st.n):
        if dy != NULL:
            dyb = dy + ((st.off + b) * P if io.lddy == 0 else st.t * io.dy_step + b * io.lddy)
        if op.mask != NULL and op.mask[st.t * sh.B + b] == 0:
            if dy != NULL and not op.zero_output:
                for k in range(me.pa, me.pb):
                    dy_carry[b * P + k] += dyb[k]
            continue
        for k in range(me.pa, me.pb):
            g[b * P + k] = dh[b * P + k] + dy_carry[b * P + k]
            dy_carry[b * P + k] = 0
        if dy != NULL:
            for k in range(me.pa, me.pb):
                g[b * P + k] += dyb[k]


cdef inline void _project_back(floating* g, const BackwardBuffers* io, const Shape* sh,
                               const Weights* w, const StepRows* st) noexcept nogil:
    """dm = g @ projection^T (alone); keeps g, d h_t, in dhs for the projection gradient."""
    memcpy(<floating*> io.dhs + st.off * sh.P, g, st.n * sh.P * sizeof(floating))
    # dm = g @ projection^T    (n, P) @ (P, H)
    matmul(st.n, sh.P, sh.H, 1, g, sh.P, <const floating*> w.projection, True, 0,
           <floating*> io.dm, sh.H)


cdef inline void _cell_rows_backward(floating* dz, const BackwardBuffers* io, const Shape* sh,
                                     const Options* op, const Weights* w, const Share* me,
                                     const StepRows* st) noexcept nogil:
    """The gate derivatives of every row of the step (this thread's units) into dz; takes dc
    from d c_t to d c_{t-1}. A masked row gets zeros."""
    cdef int H = sh.H, P = sh.P, G = 4 * sh.H
    cdef const floating* gates = <const floating*> io.gates
    cdef const floating* cs = <const floating*> io.cs
    cdef floating* dzb
    cdef floating* dm_b
    cdef Py_ssize_t b, k
    for b in range(st.n):
        dzb = dz + (st.off + b) * G
        if op.mask != NULL and op.mask[st.t * sh.B + b] == 0:
            for k in range(4):
                memset(dzb + k * H + me.ua, 0, (me.ub - me.ua) * sizeof(floating))
            if io.dhs != NULL:
                memset(<floating*> io.dhs + (st.off + b) * P, 0, P * sizeof(floating))
            continue
        dm_b = (<floating*> io.dm + b * H) if w.projection != NULL else (<floating*> io.g + b * P)
        gates_backward(&op.acts, dzb, <floating*> io.dc + b * H, dm_b,
                       gates + (st.off + b) * G, _at(<const floating*> io.zs, (st.off + b) * G),
                       cs + ((st.r_out if b < st.keep else st.r_fin) + b) * H,
                       cs + (st.r_in + b) * H, <floating*> io.a, H, me.ua, me.ub)


cdef inline void _recurrent_grad(
        floating* out,                # OUT (n, P): d loss / d h_{t-1}
        const floating* dz,           # IN (n, G)
        floating* hm,                 # scratch (n, P), used with four recurrent dropout masks
        const Shape* sh,
        const Weights* w,
        int n) noexcept nogil:
    """The BLAS product d h_{t-1} = (dz_t @ recurrent_kernel^T) * r of one step."""
    cdef int H = sh.H, P = sh.P, G = 4 * sh.H
    cdef const floating* recurrent_kernel = <const floating*> w.recurrent_kernel
    cdef const floating* rdrop = <const floating*> w.rdrop
    cdef Py_ssize_t k, j
    cdef const floating* r
    if rdrop == NULL or sh.R == 1:
        # out = dz @ recurrent_kernel^T    (n, G) @ (G, P)
        matmul(n, G, P, 1, dz, G, recurrent_kernel, True, 0, out, P)
        if rdrop != NULL:
            for j in range(n * P):
                out[j] *= rdrop[j]
        return
    for k in range(sh.R):
        # hm = dz[:, kH:(k+1)H] @ recurrent_kernel[:, kH:(k+1)H]^T    (n, H) @ (H, P)
        gemm(False, True, n, P, H, 1, dz + k * H, G, recurrent_kernel + k * H, G, 0, hm, P)
        r = rdrop + k * sh.B * P
        if k == 0:
            for j in range(n * P):
                out[j] = hm[j] * r[j]
        else:
            for j in range(n * P):
                out[j] += hm[j] * r[j]


cdef inline void _state_grad(floating* dz, const BackwardBuffers* io, const Shape* sh,
                             const Options* op, const Weights* w, const Share* me,
                             const StepRows* st) noexcept nogil:
    """d h_{t-1} = (dz_t @ recurrent_kernel^T) * r    (n, G) @ (G, P), this thread's columns,
    into dh; with a mask into g first, and masked rows keep their dh. Rows [n, B) keep their
    dh: those samples have not started (or have ended) here."""
    cdef int P = sh.P
    cdef floating* dh = <floating*> io.dh
    cdef floating* g = <floating*> io.g
    cdef floating* out = dh if op.mask == NULL else g
    cdef Py_ssize_t b
    if floating is float:
        if w.packed != NULL:
            pl_rec_grad(out, dz + st.off * 4 * sh.H, w.packed, st.n, sh.H, P, me.i0, me.i1)
        else:
            _recurrent_grad(out, dz + st.off * 4 * sh.H, <floating*> io.hm, sh, w, st.n)
    else:
        _recurrent_grad(out, dz + st.off * 4 * sh.H, <floating*> io.hm, sh, w, st.n)
    if op.mask != NULL:
        for b in range(st.n):
            if op.mask[st.t * sh.B + b] != 0:
                memcpy(dh + b * P + me.pa, g + b * P + me.pa, (me.pb - me.pa) * sizeof(floating))


cdef struct _GradRows:
    # Rows of dz not yet added to the weight gradients: [lo, lo + pending), contiguous.
    Py_ssize_t lo, pending


cdef inline void _add_weight_grads(const float* dz, const WeightGrads* wg, const Shape* sh,
                                   const Share* me, const StepRows* st, bint reverse,
                                   bint last, _GradRows* rows) noexcept nogil:
    """This thread's units of dw += x^T dz, du += h_prev^T dz (and db) once WGRAD_ROWS rows
    or more are pending (or at the last step), while dz is in cache."""
    cdef int G = 4 * sh.H
    if not reverse or rows.pending == 0:
        rows.lo = st.off
    rows.pending += st.n
    if rows.pending >= WGRAD_ROWS or last:
        pl_weight_grad(wg.dw, wg.db, wg.x + rows.lo * wg.D, wg.D, wg.D, dz + rows.lo * G,
                       rows.pending, sh.H, me.ua, me.ub)
        pl_weight_grad(wg.du, NULL, wg.h_prev + rows.lo * sh.P, sh.P, sh.P, dz + rows.lo * G,
                       rows.pending, sh.H, me.ua, me.ub)
        rows.pending = 0


cdef void _backward(floating* dz, const BackwardBuffers* io, const Shape* sh,
                    const Options* op, const Weights* w, const Share* me,
                    const WeightGrads* wg) noexcept nogil:
    """Backpropagation through all steps for one thread's units (all when alone; dz is io.dz,
    typed): their gate derivatives, and the same columns of d h_{t-1} after the team has met
    at me.bar (once per step) with every column of dz_t written. Projection and recurrent
    dropout run alone, on BLAS. With wg.dw (float32 packed), it also adds its units' columns
    of the weight gradients (zeroed by the caller) every WGRAD_ROWS rows or more."""
    cdef Py_ssize_t step, s, off
    cdef int sense = 0
    cdef StepRows st
    cdef _GradRows rows
    rows.lo = rows.pending = 0
    # Processed steps in the opposite order of the forward; `off` is step t's first row.
    off = 0 if op.reverse else sh.N
    for step in range(sh.T):
        s = sh.T - 1 - step
        if not op.reverse:
            off -= sh.batch_sizes[_step_of(s, sh, False)]
        _step_rows(sh, op.reverse, True, s, off, &st)
        _output_grad(<floating*> io.g, io, sh, op, me, &st)
        if w.projection != NULL:
            _project_back(<floating*> io.g, io, sh, w, &st)
        _cell_rows_backward(dz, io, sh, op, w, me, &st)
        # Every column of dz_t is written: the team meets before reading whole rows of it.
        # Split barrier: in between, this thread's weight gradients, which need only its own
        # columns of dz (a partner running late costs less idle time).
        pl_barrier_arrive(me.bar, &sense)
        if floating is float:
            if wg != NULL and wg.dw != NULL:
                _add_weight_grads(dz, wg, sh, me, &st, op.reverse, step == sh.T - 1, &rows)
        pl_barrier_finish(me.bar, sense)
        _state_grad(dz, io, sh, op, w, me, &st)
        if op.reverse:
            off += st.n


# Backward on a thread team -----------------------------------------------------------------

cdef struct _BackwardTeam:
    # One float32 backward on the packed transposed recurrent kernel, shared by a team.
    Shape sh
    Options op
    Weights w
    BackwardBuffers io
    WeightGrads wg


cdef void _backward_member(void* arg, int tid, int nt, pl_barrier* bar) noexcept nogil:
    """Thread `tid` of `nt`: packs its groups of the transposed kernel, zeroes its units of
    the weight gradients if the team adds them, then runs its units."""
    cdef _BackwardTeam* a = <_BackwardTeam*> arg
    # each member's own copy: read at every step, never from a line another thread writes
    cdef Shape sh = a.sh
    cdef Options op = a.op
    cdef Weights w = a.w
    cdef BackwardBuffers io = a.io
    cdef WeightGrads wg = a.wg
    cdef int c0, c1
    cdef Share me
    pl_share(sh.H, 4 * pl_vec_width(), tid, nt, &c0, &c1)
    me = _share(&sh, False, 4 * pl_vec_width(), c0, c1, bar)
    pl_pack_t(w.packed, <const float*> w.recurrent_kernel, sh.H, sh.P, c0, c1)
    if wg.dw != NULL:
        _zero_units(wg.dw, wg.D, sh.H, me.ua, me.ub)
        _zero_units(wg.du, sh.P, sh.H, me.ua, me.ub)
        if wg.db != NULL:
            _zero_units(wg.db, 1, sh.H, me.ua, me.ub)
    _backward(<float*> io.dz, &io, &sh, &op, &w, &me, &wg)


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


cdef class BackwardArrays:
    """The arrays `backward` reads and writes, of the weights' dtype: `dz` `(N, G)` out (d loss
    / d gate pre-activations), `dh` `(B, P)` (in: d h_n; out: d h_0), `dc` `(B, H)` (in:
    d c_n; out: d c_0), `dy_carry` `(B, P)` (in: d of the last output on the masked path;
    scratch), `g` `(B, P)` and `a` `(H,)` scratch, and the training forward's `gates`
    `(N, G)` and `cs` `(N + B, H)`. Optional: `zs` `(N, G)` (the forward's pre-activations,
    when a gate needs them), `dy` (d loss / d y: packed rows `(N, P)`, or with `lddy` > 0
    dense rows `(t, b)` at `t * dy_step + b * lddy`, as a batch-major `(B, T, P)` gradient
    read in place with `lddy` = T * P, `dy_step` = P), `dhs` `(N, P)` out and `dm` `(B, H)`
    scratch (with projection), `hm` `(B, P)` scratch (with four recurrent dropout masks)."""

    cdef BackwardBuffers io
    cdef int typenum
    cdef Py_ssize_t B, H, P, rows, slots, zs_rows, dhs_rows, dy_size
    cdef readonly object dz, dh, dc, dy_carry, g, a, gates, cs, zs, dy, dhs, dm, hm

    def __init__(self, dz, dh, dc, dy_carry, g, a, gates, cs, *, zs=None, dy=None, dhs=None,
                 dm=None, hm=None, Py_ssize_t lddy=0, Py_ssize_t dy_step=0):
        cdef int t = (cnp.PyArray_TYPE(<cnp.ndarray> dz) if cnp.PyArray_Check(dz)
                      else cnp.NPY_FLOAT64)
        if t != cnp.NPY_FLOAT32:
            t = cnp.NPY_FLOAT64
        self.typenum = t
        self.io.dz = _data(dz, "dz", t, 2, True, False)
        self.io.dh = _data(dh, "dh", t, 2, True, False)
        self.io.dc = _data(dc, "dc", t, 2, True, False)
        self.io.dy_carry = _data(dy_carry, "dy_carry", t, 2, True, False)
        self.io.g = _data(g, "g", t, 2, True, False)
        self.io.a = _data(a, "a", t, 1, True, False)
        self.io.gates = _data(gates, "gates", t, 2, False, False)
        self.io.cs = _data(cs, "cs", t, 2, False, False)
        self.io.zs = _data(zs, "zs", t, 2, False, True)
        self.io.dy = _data(dy, "dy", t, 2, False, True)
        self.io.dhs = _data(dhs, "dhs", t, 2, True, True)
        self.io.dm = _data(dm, "dm", t, 2, True, True)
        self.io.hm = _data(hm, "hm", t, 2, True, True)
        self.rows, self.H = _dim(dz, 0), _dim(dz, 1) // 4
        self.B, self.P = _dim(dh, 0), _dim(dh, 1)
        self.slots = _dim(cs, 0)
        _expect(dz, "dz", -1, 4 * self.H)
        _expect(dc, "dc", self.B, self.H)
        _expect(dy_carry, "dy_carry", self.B, self.P)
        _expect(g, "g", self.B, self.P)
        if _dim(a, 0) != self.H:
            raise ValueError(f"Argument `a` must have shape ({self.H},), received {a.shape}.")
        _expect(gates, "gates", self.rows, 4 * self.H)
        _expect(cs, "cs", -1, self.H)
        _expect(zs, "zs", self.rows, 4 * self.H)
        _expect(dy, "dy", -1, self.P)
        _expect(dhs, "dhs", self.rows, self.P)
        _expect(dm, "dm", self.B, self.H)
        _expect(hm, "hm", self.B, self.P)
        self.dy_size = _dim(dy, 0) * self.P
        _stride(lddy, "lddy")
        _stride(dy_step, "dy_step")
        self.io.lddy, self.io.dy_step = lddy, dy_step
        self.dz = dz
        self.dh = dh
        self.dc = dc
        self.dy_carry = dy_carry
        self.g = g
        self.a = a
        self.gates = gates
        self.cs = cs
        self.zs = zs
        self.dy = dy
        self.dhs = dhs
        self.dm = dm
        self.hm = hm


cdef class TeamGradients:
    """The weight gradients the packed backward's team adds as it goes (float32): `dw`
    `(D, G)`, `du` `(P, G)` and `db` `(G,)` or None, out (zeroed by the team), from `x`
    `(N, D)` the input rows and `h_prev` `(N, P)` each row's previous state."""

    cdef WeightGrads wg
    cdef Py_ssize_t G, P, rows
    cdef readonly object dw, du, x, h_prev, db

    def __init__(self, dw, du, x, h_prev, *, db=None):
        cdef int t = cnp.NPY_FLOAT32
        self.wg.dw = <float*> _data(dw, "dw", t, 2, True, False)
        self.wg.du = <float*> _data(du, "du", t, 2, True, False)
        self.wg.x = <const float*> _data(x, "x", t, 2, False, False)
        self.wg.h_prev = <const float*> _data(h_prev, "h_prev", t, 2, False, False)
        self.wg.db = <float*> _data(db, "db", t, 1, True, True)
        self.wg.D = _dim(dw, 0)
        self.G, self.P, self.rows = _dim(dw, 1), _dim(du, 0), _dim(x, 0)
        _expect(du, "du", -1, self.G)
        _expect(x, "x", -1, self.wg.D)
        _expect(h_prev, "h_prev", self.rows, self.P)
        if db is not None and _dim(db, 0) != self.G:
            raise ValueError(f"Argument `db` must have shape ({self.G},), received {db.shape}.")
        self.dw = dw
        self.du = du
        self.x = x
        self.h_prev = h_prev
        self.db = db


cdef int _backward_fits(BackwardArrays a, RecurrentWeights weights, Steps steps,
                        TeamGradients sums) except -1:
    """Checks that `backward`'s arguments agree: no kernel reads or writes outside an
    array."""
    cdef Py_ssize_t N = steps.sh.N, B = a.B, T = steps.sh.T
    _dtypes_agree(a.typenum, weights.typenum)
    _weights_fit(weights, B, a.H, a.P, steps)
    if not steps.op.training:
        raise ValueError("Argument `steps` must be the training forward's (training=True).")
    if a.rows != N:
        raise ValueError(f"Argument `dz` must have {N} rows (sum(batch_sizes)), received "
                         f"{a.rows}.")
    if a.slots != N + B:
        raise ValueError(f"Argument `cs` must have {N + B} rows (training state slots), "
                         f"received {a.slots}.")
    if weights.w.projection != NULL and (a.io.dhs == NULL or a.io.dm == NULL):
        raise ValueError("A projection needs `dhs` and `dm`.")
    if weights.R == 4 and a.io.hm == NULL:
        raise ValueError("Four recurrent dropout masks need `hm`.")
    if a.io.zs == NULL and not INPUT_DERIVATIVE_CODES.isdisjoint(steps.activations[:4].tolist()):
        raise ValueError("Argument `zs` must be given: a gate's activation (swish) needs its "
                         "pre-activations for its derivative.")
    if a.io.dy != NULL:
        _reaches(a.dy_size, "dy", N * a.P if a.io.lddy == 0 else
                 (T - 1) * a.io.dy_step + (B - 1) * a.io.lddy + a.P)
    if weights.w.packed != NULL:
        _reaches(weights.packed_floats, "packed", pl_packed_t_size(a.H, a.P))
    if sums is not None:
        if weights.w.packed == NULL:
            raise ValueError("Argument `sums` needs the packed path (`packed` in the weights).")
        if sums.G != 4 * a.H or sums.P != a.P or sums.rows != N:
            raise ValueError(f"Argument `sums` must hold dw (D, {4 * a.H}), du ({a.P}, "
                             f"{4 * a.H}), x ({N}, D) and h_prev ({N}, {a.P}).")
    return 0


def backward(BackwardArrays arrays not None, RecurrentWeights weights not None,
             Steps steps not None, int team=1, bint team_if_awake=False,
             TeamGradients sums=None):
    """Backpropagates through all steps of a packed batch, filling dz (see the Design note).

    The weight gradients are then GEMMs over all N rows at once (pylstm.ops), unless the
    team adds them (`sums`).

    Args:
        arrays: the `BackwardArrays` it reads and fills.
        weights: the forward's `RecurrentWeights`, with `packed` `(packed_t_size(H, P),)`
            float32 for the packed path: the per-step product `dz_t @ recurrent_kernel^T` on
            the transposed kernel packed into it (_packed_products.h). Without, one BLAS
            product per step on the calling thread.
        steps: the training forward's `Steps`.
        team, team_if_awake: the packed path's team, as in `forward`.
        sums: the packed path only: the `TeamGradients` the team adds, each member its own
            units' columns, every WGRAD_ROWS rows while dz is in cache.

    Raises:
        TypeError: an array of another dtype.
        ValueError: arrays, weights and steps that do not fit together.
    """
    cdef Shape sh = steps.sh
    cdef _BackwardTeam run
    cdef pl_barrier alone
    cdef Share me
    cdef int items = (weights.H + 4 * pl_vec_width() - 1) // (4 * pl_vec_width())
    cdef int size = _team_size(team, items)
    _backward_fits(arrays, weights, steps, sums)
    sh.B, sh.H, sh.P, sh.R, sh.D = arrays.B, weights.H, weights.P, weights.R, 0
    if weights.w.packed != NULL:
        run.sh, run.op, run.w, run.io = sh, steps.op, weights.w, arrays.io
        if sums is not None:
            run.wg = sums.wg
        else:
            run.wg.dw = run.wg.du = run.wg.db = NULL
            run.wg.x = run.wg.h_prev = NULL
            run.wg.D = 0
        with nogil:
            pl_team_run(size, _backward_member, &run, team_if_awake)
        return
    alone.count = alone.sense = 0
    alone.nt = 1
    me = _share(&sh, weights.w.projection != NULL, 4 * pl_vec_width(), 0, items, &alone)
    with nogil:
        if arrays.typenum == cnp.NPY_FLOAT32:
            _backward(<float*> arrays.io.dz, &arrays.io, &sh, &steps.op, &weights.w, &me, NULL)
        else:
            _backward(<double*> arrays.io.dz, &arrays.io, &sh, &steps.op, &weights.w, &me,
                      NULL)


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
