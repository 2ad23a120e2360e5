/* Packed products of the float32 LSTM core: the recurrent kernel (and the input kernel) packed
 * once per call into panels of PL_V units, and register-tiled products over them.
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
 * runs their gate math and writes its part of h_t with no other thread involved
 * (_thread_team.h runs the threads). Each thread packs its own panels, which then stay in its
 * core's L2 for the whole sequence.
 *
 * pl_rec_tile: z[r, g*H + u] += sum_k h[r, k] * panel[k][g][u - u0] for MR rows and one panel,
 * accumulated in registers (GCC/Clang vector extensions, PL_V below) in order k = 0 .. P-1. Every element's arithmetic is the same whatever the row
 * block, the panel's thread and the thread count: results do not depend on the thread count.
 */
#ifndef PYLSTM_PACKED_PRODUCTS_H
#define PYLSTM_PACKED_PRODUCTS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* PL_V floats: one vector register of the target (AVX-512, AVX; SSE2 and NEON hold 4). */
#if defined(__AVX512F__)
#define PL_V 16
#elif defined(__AVX__)
#define PL_V 8
#else
#define PL_V 4
#endif
#define PL_MAX_THREADS 64

/* Rows per register tile (PL_MR): a tile holds MR x 4 accumulators and 4 weight vectors in
 * registers. AVX-512 and NEON have 32 vector registers, room for 4 rows; AVX2's 16 hold 2
 * rows without spilling (python -P benchmarks/bench_compare.py with PYLSTM_CPU_LEVEL=avx2
 * measures it). SSE2 keeps 4: without FMA, 2 rows made training slower. */
#if defined(__AVX__) && !defined(__AVX512F__)
#define PL_MR 2
#else
#define PL_MR 4
#endif

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
 * (one load per row and gate instead of one per gate), which makes the tile load-bound
 * (`python -P benchmarks/bench_lstm.py` shows the packed route's speed). */
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
#if PL_MR == 4
    for (; r + 4 <= n; r += 4)
        pl_rec_tile4(z + r * ldz, ldz, gs, init, h + r * ldh, ldh, panel, K);
#else
    for (; r + 2 <= n; r += 2)
        pl_rec_tile2(z + r * ldz, ldz, gs, init, h + r * ldh, ldh, panel, K);
#endif
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
PL_DEFINE_WTILE(2)
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
#if PL_MR == 4
            for (; k + 4 <= K; k += 4)
                pl_wgrad_tile4(dw + k * G + u0, G, H, a + k, lda, dz + u0, G, n);
#else
            for (; k + 2 <= K; k += 2)
                pl_wgrad_tile2(dw + k * G + u0, G, H, a + k, lda, dz + u0, G, n);
#endif
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

#endif
