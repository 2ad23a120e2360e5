/* The float32 recurrent product of the LSTM core over packed weights, and the thread team that
 * runs a whole sequence in one parallel region.
 *
 * Why: OpenBLAS packs its operands inside each of the T per-step sgemm calls, and its threads
 * are woken and joined at every step. Here recurrent_kernel (P, 4H) is packed once per call
 * into panels of PL_V units, each panel holding the four gates' columns of those units for
 * every k:
 *
 *     panel q (q = 0 .. Q-1, Q = ceil(H / PL_V)), (P, 4, PL_V) floats (any alignment):
 *         panel_q[k][g][v] = recurrent_kernel[k, g*H + q*PL_V + v]   (0 past unit H-1)
 *
 * so a thread that owns a range of whole panels computes all four gates of its own units,
 * runs their gate math and writes its part of h_t with no other thread involved; the threads
 * meet once per step, at a barrier, before reading h_t. Each thread packs its own panels,
 * which then stay in its core's L2 for the whole sequence (1 MiB per core here).
 *
 * pl_rec_tile: z[r, g*H + u] += sum_k h[r, k] * panel[k][g][u - u0] for MR rows and one panel,
 * accumulated in registers (GCC/Clang vector extensions: AVX-512 gives PL_V = 16, other
 * targets 8) in order k = 0 .. P-1. Every element's arithmetic is the same whatever the row
 * block, the panel's thread and the thread count: results do not depend on the thread count.
 *
 * Thread team: pl_team_run runs the work on nt - 1 helper POSIX threads and on the caller.
 * Helpers are started on first use and kept: after a run they spin 50 us for the next one,
 * then sleep (no core spins after a call beyond that), and a fork()ed child starts its own.
 * The barrier spins briefly, then yields the core, so a descheduled partner costs a time
 * slice, not a spinning core. Without POSIX threads (Windows), the team is the caller alone.
 */
#ifndef PYLSTM_RECURRENT_H
#define PYLSTM_RECURRENT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define PL_V 16
#else
#define PL_V 8
#endif
#define PL_MAX_THREADS 64

static inline int pl_vec_width(void) { return PL_V; }

#if (defined(__GNUC__) || defined(__clang__)) && !defined(PL_NO_VECTOR_EXTENSIONS)
#define PL_VECTOR_EXTENSIONS 1
typedef float pl_vf __attribute__((vector_size(PL_V * sizeof(float))));

static inline pl_vf pl_loadu(const float* p) { pl_vf v; memcpy(&v, p, sizeof v); return v; }
static inline void pl_storeu(float* p, pl_vf v) { memcpy(p, &v, sizeof v); }
#endif

/* Floats in the packed buffer of a (P, 4H) recurrent kernel (or a (D, 4H) kernel). */
static inline size_t pl_packed_size(int H, int P)
{
    return (size_t)((H + PL_V - 1) / PL_V) * (size_t)P * 4 * PL_V;
}

/* Packs panels [q0, q1) of recurrent_kernel u (P, 4H) into packed (layout above); the same
 * for a kernel (D, 4H) with P = D. */
static inline void pl_pack(float* packed, const float* u, int H, int P, int q0, int q1)
{
    const size_t G = 4 * (size_t)H;
    for (int q = q0; q < q1; q++) {
        const int u0 = q * PL_V;
        const int width = H - u0 < PL_V ? H - u0 : PL_V;
        float* dst = packed + (size_t)q * P * 4 * PL_V;
        for (int k = 0; k < P; k++)
            for (int g = 0; g < 4; g++) {
                float* d = dst + ((size_t)k * 4 + g) * PL_V;
                memcpy(d, u + k * G + (size_t)g * H + u0, width * sizeof(float));
                for (int v = width; v < PL_V; v++)
                    d[v] = 0.0f;
            }
    }
}

/* Keeps a loaded value in a register: without it GCC folds the weight loads into the FMAs
 * (one load per row and gate instead of one per gate), which made the tile load-bound at
 * 60-80 % of the FMA peak here; with it 95-100 % (measured, MR = 4, AVX-512). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PL_IN_REGISTER(v) __asm__("" : "+v"(v))
#elif defined(__GNUC__) && defined(__aarch64__)
#define PL_IN_REGISTER(v) __asm__("" : "+w"(v))
#else
#define PL_IN_REGISTER(v) ((void)0)
#endif

#if defined(PL_VECTOR_EXTENSIONS)
/* z[r*ldz + g*gs + v] += sum_k h[r*ldh + k] * panel[k][g][v], for r < MR, g < 4, v < PL_V. */
#define PL_DEFINE_TILE(MR)                                                                  \
static inline void pl_rec_tile##MR(float* z, size_t ldz, size_t gs, const float* init,   \
                                   const float* h, size_t ldh, const float* panel, int P)  \
{                                                                                           \
    pl_vf acc[MR][4];                                                                       \
    for (int r = 0; r < MR; r++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            acc[r][g] = pl_loadu(init != NULL ? init + g * gs : z + r * ldz + g * gs);      \
    const float* w = panel;                                                                 \
    for (int k = 0; k < P; k++, w += 4 * PL_V) {                                            \
        pl_vf wg[4];                                                                        \
        for (int g = 0; g < 4; g++)                                                         \
            wg[g] = pl_loadu(w + g * PL_V);                                                 \
        for (int g = 0; g < 4; g++)                                                         \
            PL_IN_REGISTER(wg[g]);                                                          \
        for (int r = 0; r < MR; r++) {                                                      \
            const float hk = h[r * ldh + k];                                                \
            for (int g = 0; g < 4; g++)                                                     \
                acc[r][g] += hk * wg[g];                                                    \
        }                                                                                   \
    }                                                                                       \
    for (int r = 0; r < MR; r++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            pl_storeu(z + r * ldz + g * gs, acc[r][g]);                                     \
}
#else
/* Compilers without GCC vector extensions (MSVC): the same arithmetic in plain loops. */
#define PL_DEFINE_TILE(MR)                                                                  \
static inline void pl_rec_tile##MR(float* z, size_t ldz, size_t gs, const float* init,   \
                                   const float* h, size_t ldh, const float* panel, int P)  \
{                                                                                           \
    float acc[MR][4][PL_V];                                                                 \
    for (int r = 0; r < MR; r++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            for (int v = 0; v < PL_V; v++)                                                  \
                acc[r][g][v] = init != NULL ? init[g * gs + v] : z[r * ldz + g * gs + v];   \
    for (int k = 0; k < P; k++)                                                             \
        for (int r = 0; r < MR; r++)                                                        \
            for (int g = 0; g < 4; g++)                                                     \
                for (int v = 0; v < PL_V; v++)                                              \
                    acc[r][g][v] += h[r * ldh + k] * panel[(k * 4 + g) * PL_V + v];         \
    for (int r = 0; r < MR; r++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            for (int v = 0; v < PL_V; v++)                                                  \
                z[r * ldz + g * gs + v] = acc[r][g][v];                                     \
}
#endif

PL_DEFINE_TILE(1)
PL_DEFINE_TILE(2)
PL_DEFINE_TILE(3)
PL_DEFINE_TILE(4)

/* Rows [0, n) against one panel: z[r*ldz + g*gs + v] += sum_k h[r*ldh + k] panel[k][g][v];
 * with `init` (a bias, gates gs apart) z starts from it instead of its own values. */
static inline void pl_panel_rows(float* z, size_t ldz, size_t gs, const float* init,
                                 const float* h, size_t ldh, const float* panel, int K, int n)
{
    int r = 0;
    for (; r + 4 <= n; r += 4)
        pl_rec_tile4(z + r * ldz, ldz, gs, init, h + r * ldh, ldh, panel, K);
    float* zr = z + r * ldz;
    const float* hr = h + r * ldh;
    switch (n - r) {
    case 3: pl_rec_tile3(zr, ldz, gs, init, hr, ldh, panel, K); break;
    case 2: pl_rec_tile2(zr, ldz, gs, init, hr, ldh, panel, K); break;
    case 1: pl_rec_tile1(zr, ldz, gs, init, hr, ldh, panel, K); break;
    default: break;
    }
}

/* pl_panel_rows for a panel whose gate vectors g hold only widths[g] < PL_V real columns:
 * through a zero-padded tile, one row at a time. */
static inline void pl_panel_rows_partial(float* z, size_t ldz, size_t gs, const int* widths,
                                         const float* init, const float* h, size_t ldh,
                                         const float* panel, int K, int n)
{
    float tmp[4 * PL_V];
    for (int r = 0; r < n; r++) {
        float* zr = z + r * ldz;
        const float* from = init != NULL ? init : zr;
        for (int g = 0; g < 4; g++) {
            memcpy(tmp + g * PL_V, from + g * gs, widths[g] * sizeof(float));
            for (int v = widths[g]; v < PL_V; v++)
                tmp[g * PL_V + v] = 0.0f;
        }
        pl_rec_tile1(tmp, 4 * PL_V, PL_V, NULL, h + r * ldh, ldh, panel, K);
        for (int g = 0; g < 4; g++)
            memcpy(zr + g * gs, tmp + g * PL_V, widths[g] * sizeof(float));
    }
}

/* Rows of z (n, 4H) += h (n, K; rows ldh apart) @ w (K, 4H) for the units of panels [q0, q1),
 * w packed as above (recurrent_kernel with K = P, or kernel with K = D). With `bias` (4H,),
 * z = bias + h @ w instead (z's own values unread). */
static inline void pl_rec_product(float* z, const float* bias, const float* h, size_t ldh,
                                  const float* packed, int n, int H, int K, int q0, int q1)
{
    const size_t G = 4 * (size_t)H;
    for (int q = q0; q < q1; q++) {
        const int u0 = q * PL_V;
        const float* panel = packed + (size_t)q * K * 4 * PL_V;
        if (u0 + PL_V <= H) {
            pl_panel_rows(z + u0, G, H, bias != NULL ? bias + u0 : NULL, h, ldh, panel, K, n);
        } else {
            const int widths[4] = {H - u0, H - u0, H - u0, H - u0};
            pl_panel_rows_partial(z + u0, G, H, widths, bias != NULL ? bias + u0 : NULL, h,
                                  ldh, panel, K, n);
        }
    }
}

/* pl_rec_product over many rows (the input product of a whole sequence), in blocks of rows
 * that stay in cache while every panel passes over them. Each element's arithmetic is that of
 * pl_rec_product, whatever the blocks. */
static inline void pl_gemm_rows(float* z, const float* bias, const float* x, size_t ldx,
                                const float* packed, size_t n, int H, int K, int q0, int q1)
{
    const size_t G = 4 * (size_t)H;
    for (size_t r0 = 0; r0 < n; r0 += 256) {
        const int rows = n - r0 < 256 ? (int)(n - r0) : 256;
        pl_rec_product(z + r0 * G, bias, x + r0 * ldx, ldx, packed, rows, H, K, q0, q1);
    }
}

/* Backward: d h_{t-1} = dz_t @ recurrent_kernel^T (n, 4H) @ (4H, P). Its output columns come
 * in groups of 4 PL_V, and the transposed kernel is packed by group:
 *
 *     group c (c = 0 .. C-1, C = ceil(P / (4 PL_V))), (4H, 4, PL_V) floats:
 *         panel_c[j][g][v] = recurrent_kernel[c*4*PL_V + g*PL_V + v, j]   (0 past row P-1)
 *
 * so the same tiles compute it, the four "gates" of a tile being four column vectors. */
static inline size_t pl_packed_t_size(int H, int P)
{
    return (size_t)((P + 4 * PL_V - 1) / (4 * PL_V)) * 4 * (size_t)H * 4 * PL_V;
}

/* Packs groups [c0, c1) of the transposed recurrent_kernel u (P, 4H) into packed. */
static inline void pl_pack_t(float* packed, const float* u, int H, int P, int c0, int c1)
{
    const size_t G = 4 * (size_t)H;
    for (int c = c0; c < c1; c++) {
        float* dst = packed + (size_t)c * G * 4 * PL_V;
        for (int col = 0; col < 4 * PL_V; col++) {
            const int k = c * 4 * PL_V + col;
            if (k < P) {
                const float* row = u + k * G;
                for (size_t j = 0; j < G; j++)
                    dst[j * 4 * PL_V + col] = row[j];
            } else {
                for (size_t j = 0; j < G; j++)
                    dst[j * 4 * PL_V + col] = 0.0f;
            }
        }
    }
}

/* Columns of groups [c0, c1) of out (n, P) = dz (n, 4H) @ recurrent_kernel^T. */
static inline void pl_rec_grad(float* out, const float* dz, const float* packed_t, int n, int H,
                               int P, int c0, int c1)
{
    const size_t G = 4 * (size_t)H;
    const int k0 = c0 * 4 * PL_V;
    const int k1 = c1 * 4 * PL_V < P ? c1 * 4 * PL_V : P;
    if (k1 <= k0)
        return;
    for (int r = 0; r < n; r++)
        memset(out + (size_t)r * P + k0, 0, (size_t)(k1 - k0) * sizeof(float));
    for (int c = c0; c < c1; c++) {
        const int col0 = c * 4 * PL_V;
        const float* panel = packed_t + (size_t)c * G * 4 * PL_V;
        if (col0 + 4 * PL_V <= P) {
            pl_panel_rows(out + col0, P, PL_V, NULL, dz, G, panel, (int)G, n);
        } else {
            int widths[4];
            for (int g = 0; g < 4; g++) {
                const int w = P - col0 - g * PL_V;
                widths[g] = w < 0 ? 0 : (w > PL_V ? PL_V : w);
            }
            pl_panel_rows_partial(out + col0, P, PL_V, widths, NULL, dz, G, panel, (int)G, n);
        }
    }
}

/* Weight gradients: dw (K, 4H) += a^T dz over a block of n rows, a (n, K) with rows lda apart
 * (the inputs x_t or the states h_{t-1}), dz (n, 4H), for the units [ua, ub) of each gate:
 *
 *     dw[k, g*H + u] += sum_r a[r, k] * dz[r, g*H + u]     (r = 0 .. n-1 in order)
 *
 * so a team member that computed dz for its units adds their weight gradients while dz is
 * still in its cache, with no other member involved. A tile holds MR rows k of dw times the
 * four gates' vectors of PL_V units in registers, as pl_rec_tile does with roles swapped.
 * Every element's arithmetic depends only on the row blocks, not on the units' thread. */
#if defined(PL_VECTOR_EXTENSIONS)
#define PL_DEFINE_WTILE(MR)                                                                 \
static inline void pl_wgrad_tile##MR(float* dw, size_t ldw, size_t gs, const float* a,    \
                                     size_t lda, const float* dz, size_t ldz, int n)       \
{                                                                                           \
    pl_vf acc[MR][4];                                                                       \
    for (int m = 0; m < MR; m++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            acc[m][g] = pl_loadu(dw + m * ldw + g * gs);                                    \
    for (int r = 0; r < n; r++) {                                                           \
        pl_vf dg[4];                                                                        \
        for (int g = 0; g < 4; g++)                                                         \
            dg[g] = pl_loadu(dz + r * ldz + g * gs);                                        \
        for (int g = 0; g < 4; g++)                                                         \
            PL_IN_REGISTER(dg[g]);                                                          \
        for (int m = 0; m < MR; m++) {                                                      \
            const float am = a[r * lda + m];                                                \
            for (int g = 0; g < 4; g++)                                                     \
                acc[m][g] += am * dg[g];                                                    \
        }                                                                                   \
    }                                                                                       \
    for (int m = 0; m < MR; m++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            pl_storeu(dw + m * ldw + g * gs, acc[m][g]);                                    \
}
#else
#define PL_DEFINE_WTILE(MR)                                                                 \
static inline void pl_wgrad_tile##MR(float* dw, size_t ldw, size_t gs, const float* a,    \
                                     size_t lda, const float* dz, size_t ldz, int n)       \
{                                                                                           \
    float acc[MR][4][PL_V];                                                                 \
    for (int m = 0; m < MR; m++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            for (int v = 0; v < PL_V; v++)                                                  \
                acc[m][g][v] = dw[m * ldw + g * gs + v];                                    \
    for (int r = 0; r < n; r++)                                                             \
        for (int m = 0; m < MR; m++)                                                        \
            for (int g = 0; g < 4; g++)                                                     \
                for (int v = 0; v < PL_V; v++)                                              \
                    acc[m][g][v] += a[r * lda + m] * dz[r * ldz + g * gs + v];              \
    for (int m = 0; m < MR; m++)                                                            \
        for (int g = 0; g < 4; g++)                                                         \
            for (int v = 0; v < PL_V; v++)                                                  \
                dw[m * ldw + g * gs + v] = acc[m][g][v];                                    \
}
#endif

PL_DEFINE_WTILE(1)
PL_DEFINE_WTILE(4)

/* dw (K, 4H) += a (n, K; rows lda apart)^T @ dz (n, 4H) for the units [ua, ub) (ua a
 * multiple of PL_V); with db (4H,) also db += the column sums of dz over those units. */
static inline void pl_weight_grad(float* dw, float* db, const float* a, size_t lda, int K,
                                  const float* dz, int n, int H, int ua, int ub)
{
    const size_t G = 4 * (size_t)H;
    for (int u0 = ua; u0 < ub; u0 += PL_V) {
        if (u0 + PL_V <= H) {
            int k = 0;
            for (; k + 4 <= K; k += 4)
                pl_wgrad_tile4(dw + k * G + u0, G, H, a + k, lda, dz + u0, G, n);
            for (; k < K; k++)
                pl_wgrad_tile1(dw + k * G + u0, G, H, a + k, lda, dz + u0, G, n);
        } else {
            /* the last, partial panel: the same sums one value at a time */
            for (int k = 0; k < K; k++)
                for (int g = 0; g < 4; g++)
                    for (int u = u0; u < ub; u++) {
                        float acc = dw[k * G + g * H + u];
                        for (int r = 0; r < n; r++)
                            acc += a[r * lda + k] * dz[r * G + g * H + u];
                        dw[k * G + g * H + u] = acc;
                    }
        }
    }
    if (db != NULL)
        for (int r = 0; r < n; r++)
            for (int g = 0; g < 4; g++) {
                float* dbg = db + (size_t)g * H;
                const float* dzg = dz + r * G + (size_t)g * H;
                for (int u = ua; u < ub; u++)
                    dbg[u] += dzg[u];
            }
}

/* Load balance: a team splits the work in proportion to each member's measured speed
 * (cores of one machine need not be equally fast: on this 2-vCPU VM one ran 15 % slower, the
 * other waiting for it at every step). pl_weight holds the estimates, pl_weight_run the ones
 * a run uses (read by every member, so all compute the same split). Which thread computes a
 * unit never changes its arithmetic: results stay the same bits whatever the split. */
static double pl_weight[PL_MAX_THREADS];
static double pl_weight_run[PL_MAX_THREADS];
static int pl_weight_nt;
static long long pl_busy_ns[PL_MAX_THREADS];
static int pl_units[PL_MAX_THREADS];

/* Makes pl_weight the estimates of teams of nt (tests set uneven weights through it). */
static inline void pl_weight_nt_set(int nt) { pl_weight_nt = nt; }

/* Items [*i0, *i1) of n for thread tid of nt, in proportion to pl_weight_run. */
static inline void pl_split(int n, int tid, int nt, int* i0, int* i1)
{
    double total = 0.0, before = 0.0;
    if (nt <= 1) {
        *i0 = 0;
        *i1 = n;
        return;
    }
    for (int t = 0; t < nt; t++) {
        total += pl_weight_run[t];
        if (t < tid)
            before += pl_weight_run[t];
    }
    *i0 = tid == 0 ? 0 : (int)(n * (before / total) + 0.5);
    *i1 = tid == nt - 1 ? n : (int)(n * ((before + pl_weight_run[tid]) / total) + 0.5);
}

/* Forward: thread tid's panels [*q0, *q1) of the H units. */
static inline void pl_share_panels(int H, int tid, int nt, int* q0, int* q1)
{
    pl_split((H + PL_V - 1) / PL_V, tid, nt, q0, q1);
    if (nt > 1)
        pl_units[tid] = (*q1 * PL_V < H ? *q1 * PL_V : H) - (*q0 * PL_V < H ? *q0 * PL_V : H);
}

/* Backward: thread tid's column groups [*c0, *c1) (groups of 4 PL_V units, no projection). */
static inline void pl_share_groups(int H, int tid, int nt, int* c0, int* c1)
{
    const int W = 4 * PL_V;
    pl_split((H + W - 1) / W, tid, nt, c0, c1);
    if (nt > 1)
        pl_units[tid] = (*c1 * W < H ? *c1 * W : H) - (*c0 * W < H ? *c0 * W : H);
}

/* Thread team ---------------------------------------------------------------------------- */

typedef struct {
    int count;
    int sense;
    int nt;
} pl_barrier;

typedef void (*pl_work_fn)(void* arg, int tid, int nt, pl_barrier* bar);

#if defined(_WIN32)

static inline void pl_barrier_wait(pl_barrier* bar, int* local_sense)
{
    (void)bar;
    (void)local_sense;
}

static inline void pl_barrier_arrive(pl_barrier* bar, int* local_sense)
{
    (void)bar;
    (void)local_sense;
}

static inline void pl_barrier_finish(pl_barrier* bar, int local_sense)
{
    (void)bar;
    (void)local_sense;
}

static inline int pl_team_run(int nt, pl_work_fn fn, void* arg, int only_awake)
{
    pl_barrier bar = {0, 0, 1};
    (void)nt;
    (void)only_awake;
    fn(arg, 0, 1, &bar);
    return 1;
}

#else

#include <pthread.h>
#include <sched.h>
#include <time.h>

static inline void pl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static __thread long long pl_wait_ns;   /* this thread's time waiting at barriers in a run */

static inline long long pl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sense-reversing barrier: spins about 2^12 pauses (tens of microseconds), then yields.
 * Split in two: pl_barrier_arrive (this thread's writes are done) and pl_barrier_finish
 * (wait for the others), so that a thread can do work that needs nobody else's in between. */
static inline void pl_barrier_arrive(pl_barrier* bar, int* local_sense)
{
    const int sense = !*local_sense;
    *local_sense = sense;
    if (bar->nt <= 1)
        return;
    if (__atomic_add_fetch(&bar->count, 1, __ATOMIC_ACQ_REL) == bar->nt) {
        __atomic_store_n(&bar->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->sense, sense, __ATOMIC_RELEASE);
    }
}

static inline void pl_barrier_finish(pl_barrier* bar, int local_sense)
{
    if (bar->nt <= 1 || __atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) == local_sense)
        return;
    const long long start = pl_now_ns();
    unsigned spins = 0;
    while (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) != local_sense) {
        if (spins < 4096) {
            spins++;
            pl_cpu_relax();
        } else {
            sched_yield();
        }
    }
    pl_wait_ns += pl_now_ns() - start;
}

static inline void pl_barrier_wait(pl_barrier* bar, int* local_sense)
{
    pl_barrier_arrive(bar, local_sense);
    pl_barrier_finish(bar, *local_sense);
}

/* The team's helper threads persist between runs (starting a thread took 70-90 us here,
 * waking a sleeping one 15-50 us). After a run they spin PL_LINGER_NS for the next one, then
 * sleep on a condition variable. One run at a time per process: a caller that finds the
 * team busy (another Python thread inside the core) runs alone, with the same results.
 * A small run (`only_awake`) takes the team only while every helper is still spinning from
 * the run before (a loop of calls); otherwise it runs alone and pokes the sleeping helpers
 * awake for the next call, so that an occasional small call does not wait for a wake-up. */
#define PL_LINGER_NS 50000

typedef struct {
    pthread_mutex_t lock;       /* guards the sleep/wake of helpers */
    pthread_cond_t wake;
    pthread_mutex_t busy;       /* held by the caller running a team */
    int started;                /* helper threads alive in this process */
    unsigned generation;        /* one more for each run */
    int acks;                   /* helpers done with the current run */
    int awake;                  /* helpers not asleep on `wake` */
    unsigned pokes;             /* one more each time sleeping helpers are sent to spin */
    pl_work_fn fn;
    void* arg;
    int nt;
    pl_barrier bar;
    int atfork_registered;
} pl_pool_t;

static pl_pool_t pl_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                            PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, NULL, NULL, 1,
                            {0, 0, 1}, 0};

typedef struct {
    int tid;
    unsigned seen;              /* the generation before the helper's first run */
    unsigned pokes;             /* and the pokes */
} pl_helper_start;

static pl_helper_start pl_helper_starts[PL_MAX_THREADS];

/* Runs member tid's share and records its busy time (run time less barrier waits). */
static inline void pl_member_run(int tid)
{
    const long long start = pl_now_ns();
    pl_wait_ns = 0;
    pl_pool.fn(pl_pool.arg, tid, pl_pool.nt, &pl_pool.bar);
    pl_busy_ns[tid] = pl_now_ns() - start - pl_wait_ns;
}

/* After a run: each member's speed (units per busy ns) updates its weight (moving average),
 * for runs long enough to time (1 ms of work). */
static inline void pl_update_weights(int nt)
{
    double rate[PL_MAX_THREADS], mean = 0.0;
    for (int t = 0; t < nt; t++) {
        if (pl_busy_ns[t] < 1000000 / nt || pl_units[t] <= 0)
            return;
        rate[t] = (double)pl_units[t] / (double)pl_busy_ns[t];
        mean += rate[t] / nt;
    }
    for (int t = 0; t < nt; t++) {
        double w = 0.7 * pl_weight[t] + 0.3 * rate[t] / mean;
        pl_weight[t] = w < 0.25 ? 0.25 : (w > 4.0 ? 4.0 : w);
    }
}

static void* pl_helper_main(void* p)
{
    const pl_helper_start* start = (const pl_helper_start*)p;
    const int tid = start->tid;
    unsigned seen = start->seen;
    unsigned pokes = start->pokes;
    for (;;) {
        unsigned g;
        long long spin_end = pl_now_ns() + PL_LINGER_NS;
        int spins = 0;
        while ((g = __atomic_load_n(&pl_pool.generation, __ATOMIC_ACQUIRE)) == seen) {
            const unsigned poked = __atomic_load_n(&pl_pool.pokes, __ATOMIC_ACQUIRE);
            if (++spins % 256 == 0 && poked != pokes) {
                pokes = poked;
                spin_end = pl_now_ns() + PL_LINGER_NS;      /* poked: spin longer */
            } else if (spins % 256 == 0 && pl_now_ns() > spin_end) {
                pthread_mutex_lock(&pl_pool.lock);
                __atomic_sub_fetch(&pl_pool.awake, 1, __ATOMIC_ACQ_REL);
                while ((g = __atomic_load_n(&pl_pool.generation, __ATOMIC_ACQUIRE)) == seen
                       && pl_pool.pokes == pokes)
                    pthread_cond_wait(&pl_pool.wake, &pl_pool.lock);
                __atomic_add_fetch(&pl_pool.awake, 1, __ATOMIC_ACQ_REL);
                pokes = pl_pool.pokes;
                pthread_mutex_unlock(&pl_pool.lock);
                break;
            }
            pl_cpu_relax();
        }
        if (g == seen)
            continue;           /* poked, not given work: spin again for the next run */
        seen = g;
        if (tid < pl_pool.nt)
            pl_member_run(tid);
        __atomic_add_fetch(&pl_pool.acks, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* In a child after fork() the helpers do not exist: start afresh. */
static void pl_pool_after_fork_child(void)
{
    pthread_mutex_t fresh_mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    pl_pool.lock = fresh_mutex;
    pl_pool.busy = fresh_mutex;
    pl_pool.wake = fresh_cond;
    pl_pool.started = 0;
    pl_pool.awake = 0;
}

/* Calls of a loop come at most this far apart (end of one run to the start of the next). */
#define PL_LOOP_GAP_NS 200000
static long long pl_small_run_end;      /* when the last small run alone ended */

/* Sends sleeping helpers back to spinning, and spinning ones PL_LINGER_NS more. */
static inline void pl_pool_poke(void)
{
    pthread_mutex_lock(&pl_pool.lock);
    __atomic_add_fetch(&pl_pool.pokes, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&pl_pool.wake);
    pthread_mutex_unlock(&pl_pool.lock);
}

/* Runs fn(arg, tid, nt, bar) on nt threads, the caller being tid 0; returns the team size
 * (smaller than asked, down to 1, if threads could not be started or the team is busy, or
 * with `only_awake` if a helper was asleep). */
static inline int pl_team_run(int nt, pl_work_fn fn, void* arg, int only_awake)
{
    pl_barrier alone = {0, 0, 1};
    if (nt > PL_MAX_THREADS)
        nt = PL_MAX_THREADS;
    if (nt <= 1 || pthread_mutex_trylock(&pl_pool.busy) != 0) {
        fn(arg, 0, 1, &alone);
        return 1;
    }
    if (!pl_pool.atfork_registered) {
        pthread_atfork(NULL, NULL, pl_pool_after_fork_child);
        pl_pool.atfork_registered = 1;
    }
    while (pl_pool.started < nt - 1) {
        const int t = pl_pool.started + 1;
        pthread_t thread;
        pthread_attr_t attr;
        int failed;
        pl_helper_starts[t].tid = t;
        pl_helper_starts[t].seen = pl_pool.generation;
        pl_helper_starts[t].pokes = __atomic_load_n(&pl_pool.pokes, __ATOMIC_ACQUIRE);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        failed = pthread_create(&thread, &attr, pl_helper_main, &pl_helper_starts[t]);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        __atomic_add_fetch(&pl_pool.awake, 1, __ATOMIC_ACQ_REL);
        pl_pool.started = t;
    }
    if (nt > pl_pool.started + 1)
        nt = pl_pool.started + 1;
    if (only_awake && nt > 1 &&
            __atomic_load_n(&pl_pool.awake, __ATOMIC_ACQUIRE) < pl_pool.started) {
        /* Alone; if the small run before this one ended moments ago (a loop of calls), wake
         * the helpers at the end, so that the next call finds them spinning. Not at the
         * start: a woken helper spinning beside this run slowed it (it can share its core),
         * and an occasional call wakes no one. */
        const long long begin = pl_now_ns();
        const int in_loop =
            begin - __atomic_load_n(&pl_small_run_end, __ATOMIC_RELAXED) < PL_LOOP_GAP_NS;
        pthread_mutex_unlock(&pl_pool.busy);
        fn(arg, 0, 1, &alone);
        __atomic_store_n(&pl_small_run_end, pl_now_ns(), __ATOMIC_RELAXED);
        if (in_loop)
            pl_pool_poke();
        return 1;
    }
    pl_pool.fn = fn;
    pl_pool.arg = arg;
    pl_pool.nt = nt;
    pl_pool.bar.count = 0;
    pl_pool.bar.sense = 0;
    pl_pool.bar.nt = nt;
    pl_pool.acks = 0;
    if (pl_weight_nt != nt) {
        for (int t = 0; t < nt; t++)
            pl_weight[t] = 1.0;
        pl_weight_nt = nt;
    }
    for (int t = 0; t < nt; t++)
        pl_weight_run[t] = pl_weight[t];
    pthread_mutex_lock(&pl_pool.lock);
    __atomic_add_fetch(&pl_pool.generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pl_pool.wake);
    pthread_mutex_unlock(&pl_pool.lock);
    pl_member_run(0);
    {
        unsigned spins = 0;
        while (__atomic_load_n(&pl_pool.acks, __ATOMIC_ACQUIRE) < pl_pool.started) {
            if (spins < 4096) {
                spins++;
                pl_cpu_relax();
            } else {
                sched_yield();
            }
        }
    }
    pl_update_weights(nt);
    pthread_mutex_unlock(&pl_pool.busy);
    return nt;
}

#endif

#endif
