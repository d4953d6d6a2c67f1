// The ``cpp`` backend's kernels (see cpp.py for why and how it is built): the binning into tiles, the
// tiled rasterizer, forward, analytic backward and the per-Gaussian reduction, in float32, written so
// that gcc auto-vectorizes the pixel loops (the EWA projection is in projection.cpp). The rules are those of
// the dense reference (torch_ref.py) and of the numba kernels
// (numba.py, numba_projection.py), pixel for pixel:
//
//   alpha = min(alpha_max, o exp(-0.5 d^T C d)), skipped below alpha_min; d = pixel centre (+0.5) - mean;
//   a pixel stops at the first Gaussian that would take its transmittance below t_min (that one is
//   not blended); rgb = sum w c + (1 - A) background, depth = sum w z / A (0 where A <= 1e-6), with
//   A = sum w computed as 1 - T (the same up to rounding, and one per-pixel sum fewer in the forward).
//
// Layout: every tile is TS x TS pixels (TS = 16 or 32, cpp.py's tile_size chooses by image size); a
// Gaussian visits only the rows of its alpha >= alpha_min box inside the tile, and each row in steps of LANES pixels starting at the box's left edge, so a box of
// up to 8 pixels is one step. The per-pixel state of a tile lives in small arrays whose rows are
// padded to STRIDE = TS + LANES, so a step that starts near the right edge stays inside the array;
// lanes outside the box are masked (they write back what they read). Every lane computes the same
// branch-free arithmetic, which is what lets gcc turn a step into a few vector instructions.
//
// Arrays come in as raw addresses (the Python side allocates them contiguous, in the right dtype,
// and checks that); no torch headers, so the build stays short.

#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace vdm3d_raster {
namespace {

constexpr int LANES = 8;
constexpr int N_GRAD = 10;  // per-pair slots: means2d (2), conic (3), color (3), depth (1), opacity (1)

// 2^x for x <= 0: x = n + r with n an integer and |r| <= 1/2 (exact), 2^r by a degree-6 polynomial
// fitted for relative error (Lawson's minimax iteration: 1.9e-9, under float32's rounding; the float32
// evaluation's error is 1e-7, as expf's polynomial before it), 2^n from the exponent bits. Written out
// instead of calling exp2f so that the loops around it vectorize without a vector math library; base 2
// because the rasterizer folds -log2(e) / 2 into the conic once per Gaussian, which leaves no range
// reduction by ln 2 to do per pixel.
constexpr float ROUNDER = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds |x| < 2^22 to an integer

// 2^r for |r| <= 1/2 by Horner's rule; T is float or a vector of floats (same operations, same bits).
template <class T>
inline T exp2_poly(T r) {
    T p = T{} + 1.53458124e-4f;
    p = p * r + 1.33999309e-3f;
    p = p * r + 9.61848907e-3f;
    p = p * r + 5.55032864e-2f;
    p = p * r + 2.40226462e-1f;
    p = p * r + 6.93147182e-1f;
    return p * r + 1.0f;
}

inline float exp2_nonpos(float x) {
    x = std::max(x, -125.0f);  // 2^n stays a normal float and so does the result (no denormal assists)
    const float n = (x + ROUNDER) - ROUNDER;  // x rounded to an integer (ties to even)
    const float p = exp2_poly(x - n);
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// The same function on LANES floats at once, written with GCC's vector extensions (also clang's) for the
// rasterizer backward, whose ten per-lane sums the auto-vectorizer kept on the stack (a load and a store
// each per 8-pixel step); as vector variables they stay in registers. Operation for operation the scalar
// code above, so that the backward recomputes the forward's alpha bit for bit.
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef float vf_unaligned __attribute__((vector_size(4 * LANES), aligned(4)));
typedef int32_t vi_unaligned __attribute__((vector_size(4 * LANES), aligned(4)));

inline vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline vi load(const int32_t* p) { return *reinterpret_cast<const vi_unaligned*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
inline vf splat(float x) { return vf{} + x; }

// The sum of the 8 lanes as a tree (lanes j + 4, then j + 2, then j + 1): three shuffles and three adds,
// where a left-to-right sum (what gcc must emit for a loop over the lanes) is seven extracts and seven
// dependent adds; the backward reduces ten of these per (tile, Gaussian) pair.
inline float lane_sum(vf v) {
    v += __builtin_shuffle(v, vi{4, 5, 6, 7, 0, 1, 2, 3});
    v += __builtin_shuffle(v, vi{2, 3, 0, 1, 6, 7, 4, 5});
    v += __builtin_shuffle(v, vi{1, 0, 3, 2, 5, 4, 7, 6});
    return v[0];
}

inline vf exp2_nonpos(vf x) {
    x = x < -125.0f ? splat(-125.0f) : x;
    const vf n = (x + ROUNDER) - ROUNDER;
    const vf p = exp2_poly(x - n);
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    vf scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// exp(-power / 2) = 2^(K power): the rasterizer evaluates K power = dx (qa dx + qb dy) + qc dy^2 with the
// conic's a, 2 b, c scaled by K once per Gaussian.
constexpr float K_EXP2 = -0.72134752044448170f;  // -log2(e) / 2

struct Scene {
    const float* means2d;    // [N, 2]
    const float* conics;     // [N, 3]: a, b, c of d^T C d = a dx^2 + 2 b dx dy + c dy^2
    const float* opacities;  // [N]
    const float* colors;     // [N, 3]
    const float* depths;     // [N]
    const int64_t* offsets;  // [tiles + 1]
    const int32_t* gauss;    // [pairs], front to back within each tile
    const int32_t* boxes;    // [N, 4]: x0, x1, y0, y1 (inclusive pixel box)
    int width, height, tiles_x;
    float alpha_max, alpha_min, t_min;
};

struct Box {
    int x0, x1, y0, y1;  // in tile coordinates, clipped to the tile
};

// Ask for the cache lines of the Gaussian a few pairs ahead in the walk (its index is known, its data
// sits in six arrays at a random place): the loads then overlap with the current pair's pixels.
inline void prefetch_gaussian(const Scene& s, int i) {
    __builtin_prefetch(s.boxes + 4 * static_cast<int64_t>(i));
    __builtin_prefetch(s.means2d + 2 * static_cast<int64_t>(i));
    __builtin_prefetch(s.conics + 3 * static_cast<int64_t>(i));
    __builtin_prefetch(s.opacities + i);
    __builtin_prefetch(s.colors + 3 * static_cast<int64_t>(i));
    __builtin_prefetch(s.depths + i);
}

constexpr int PREFETCH_AHEAD = 2;

inline Box tile_box(const Scene& s, int i, int ox, int oy, int tw, int th) {
    const int32_t* b = s.boxes + 4 * static_cast<int64_t>(i);
    return {std::max(b[0], ox) - ox, std::min(b[1], ox + tw - 1) - ox, std::max(b[2], oy) - oy,
            std::min(b[3], oy + th - 1) - oy};
}

template <int TS>
struct ForwardTile {
    static constexpr int STRIDE = TS + LANES, CELLS = TS * STRIDE;
    alignas(64) float T[CELLS];  // negated once the pixel's walk has ended (|T| is its final value)
    alignas(64) float r[CELLS];
    alignas(64) float g[CELLS];
    alignas(64) float b[CELLS];
    alignas(64) float z[CELLS];
    alignas(64) int32_t stop[CELLS];  // one past the position of the last blended Gaussian
};

template <int TS>
void forward_tile(const Scene& s, int t, const float* bg, float* out_rgb, float* out_depth, float* out_alpha,
                  float* T_final, int32_t* last) {
    const int64_t start = s.offsets[t], end = s.offsets[t + 1];
    const int ox = (t % s.tiles_x) * TS, oy = (t / s.tiles_x) * TS;
    const int tw = std::min(TS, s.width - ox), th = std::min(TS, s.height - oy);
    ForwardTile<TS> st;
    constexpr int STRIDE = ForwardTile<TS>::STRIDE;
    for (int c = 0; c < ForwardTile<TS>::CELLS; ++c) {
        st.T[c] = 1.0f;
        st.r[c] = st.g[c] = st.b[c] = st.z[c] = 0.0f;
        st.stop[c] = static_cast<int32_t>(start);
    }
    int row_live[TS];
    for (int ly = 0; ly < TS; ++ly) row_live[ly] = ly < th ? tw : 0;
    int n_live = tw * th;
    const float amax = s.alpha_max, amin = s.alpha_min, tmin = s.t_min;
    for (int64_t k = start; k < end && n_live > 0; ++k) {
        if (k + PREFETCH_AHEAD < end) prefetch_gaussian(s, s.gauss[k + PREFETCH_AHEAD]);
        const int i = s.gauss[k];
        const Box bx = tile_box(s, i, ox, oy, tw, th);
        const float mx = s.means2d[2 * i] - (ox + 0.5f), my = s.means2d[2 * i + 1] - (oy + 0.5f);
        const float qa = K_EXP2 * s.conics[3 * i], qb = 2.0f * K_EXP2 * s.conics[3 * i + 1];
        const float qc = K_EXP2 * s.conics[3 * i + 2];
        const float o = s.opacities[i];
        const float c0 = s.colors[3 * i], c1 = s.colors[3 * i + 1], c2 = s.colors[3 * i + 2], zi = s.depths[i];
        const int32_t next = static_cast<int32_t>(k + 1);
        for (int ly = bx.y0; ly <= bx.y1; ++ly) {
            if (row_live[ly] == 0) continue;
            const float dy = ly - my;
            const float bdy = qb * dy, cdy2 = qc * dy * dy;
            int ended = 0;
            for (int xs = bx.x0; xs <= bx.x1; xs += LANES) {
                const int c = ly * STRIDE + xs, lim = bx.x1 - xs;
                float* __restrict__ Tp = st.T + c;
                float* __restrict__ rp = st.r + c;
                float* __restrict__ gp = st.g + c;
                float* __restrict__ bp = st.b + c;
                float* __restrict__ zp = st.z + c;
                int32_t* __restrict__ sp = st.stop + c;
                for (int j = 0; j < LANES; ++j) {
                    const float dx = static_cast<float>(xs + j) - mx;
                    const float alpha = std::min(amax, o * exp2_nonpos(dx * (qa * dx + bdy) + cdy2));
                    const float Tc = Tp[j];
                    const float Tn = Tc * (1.0f - alpha);
                    const bool valid = (j <= lim) & (alpha >= amin) & (Tc > 0.0f);
                    const bool ends = valid & (Tn < tmin);
                    const bool blend = valid & !ends;
                    const float wgt = blend ? alpha * Tc : 0.0f;
                    rp[j] += wgt * c0;
                    gp[j] += wgt * c1;
                    bp[j] += wgt * c2;
                    zp[j] += wgt * zi;
                    Tp[j] = blend ? Tn : (ends ? -Tc : Tc);
                    sp[j] = blend ? next : sp[j];
                    ended += ends;
                }
            }
            row_live[ly] -= ended;
            n_live -= ended;
        }
    }
    for (int ly = 0; ly < th; ++ly) {
        for (int lx = 0; lx < tw; ++lx) {
            const int c = ly * STRIDE + lx;
            const int64_t p = static_cast<int64_t>(oy + ly) * s.width + ox + lx;
            const float a = 1.0f - std::fabs(st.T[c]), rest = 1.0f - a;
            out_rgb[3 * p] = st.r[c] + rest * bg[0];
            out_rgb[3 * p + 1] = st.g[c] + rest * bg[1];
            out_rgb[3 * p + 2] = st.b[c] + rest * bg[2];
            out_depth[p] = a > 1e-6f ? st.z[c] / a : 0.0f;
            out_alpha[p] = a;
            T_final[p] = std::fabs(st.T[c]);
            last[p] = st.stop[c];
        }
    }
}

template <int TS>
struct BackwardTile {
    static constexpr int STRIDE = TS + LANES, CELLS = TS * STRIDE;
    alignas(64) float T[CELLS];  // after the current Gaussian, walking back
    alignas(64) float S[CELLS];  // sum of g_j w_j over the blended Gaussians behind the current one
    alignas(64) float vr[CELLS];
    alignas(64) float vg[CELLS];
    alignas(64) float vb[CELLS];
    alignas(64) float vz[CELLS];  // cotangent of sum w z
    alignas(64) float va[CELLS];  // cotangent of sum w (alpha), after the finish's chain rule
    alignas(64) int32_t stop[CELLS];
};

template <int TS>
void backward_tile(const Scene& s, int t, const float* bg, const float* alpha_img, const float* depth_img,
                   const float* T_final, const int32_t* last, const float* v_rgb, const float* v_depth,
                   const float* v_alpha, float* v_pairs) {
    const int64_t start = s.offsets[t], end_all = s.offsets[t + 1];
    const int ox = (t % s.tiles_x) * TS, oy = (t / s.tiles_x) * TS;
    const int tw = std::min(TS, s.width - ox), th = std::min(TS, s.height - oy);
    BackwardTile<TS> st;
    constexpr int STRIDE = BackwardTile<TS>::STRIDE;
    std::memset(&st, 0, sizeof st);  // padding lanes: defined values (they are masked)
    int64_t row_end[TS], end = start;
    for (int ly = 0; ly < TS; ++ly) row_end[ly] = start;
    for (int ly = 0; ly < th; ++ly) {
        for (int lx = 0; lx < tw; ++lx) {
            const int c = ly * STRIDE + lx;
            const int64_t p = static_cast<int64_t>(oy + ly) * s.width + ox + lx;
            st.T[c] = T_final[p];
            st.stop[c] = last[p];
            row_end[ly] = std::max<int64_t>(row_end[ly], last[p]);
            const float r = v_rgb[3 * p], g = v_rgb[3 * p + 1], b = v_rgb[3 * p + 2];
            float va = v_alpha[p] - (r * bg[0] + g * bg[1] + b * bg[2]);  // rgb = ... + (1 - A) bg
            float vz = 0.0f;
            const float a = alpha_img[p];
            if (a > 1e-6f) {  // depth = sum w z / A
                vz = v_depth[p] / a;
                va -= vz * depth_img[p];
            }
            st.vr[c] = r;
            st.vg[c] = g;
            st.vb[c] = b;
            st.vz[c] = vz;
            st.va[c] = va;
        }
        end = std::max(end, row_end[ly]);
    }
    for (int64_t k = end; k < end_all; ++k)  // behind every pixel's last blended Gaussian: no gradient
        for (int q = 0; q < N_GRAD; ++q) v_pairs[N_GRAD * k + q] = 0.0f;
    const float amax = s.alpha_max, amin = s.alpha_min;
    for (int64_t k = end - 1; k >= start; --k) {
        if (k - PREFETCH_AHEAD >= start) prefetch_gaussian(s, s.gauss[k - PREFETCH_AHEAD]);
        const int i = s.gauss[k];
        const Box bx = tile_box(s, i, ox, oy, tw, th);
        const float mx = s.means2d[2 * i] - (ox + 0.5f), my = s.means2d[2 * i + 1] - (oy + 0.5f);
        const float ca = s.conics[3 * i], cb = s.conics[3 * i + 1], cc = s.conics[3 * i + 2];
        const float o = s.opacities[i];
        const float qa = K_EXP2 * ca, qb = 2.0f * K_EXP2 * cb, qc = K_EXP2 * cc;  // as the forward's
        const float c0 = s.colors[3 * i], c1 = s.colors[3 * i + 1], c2 = s.colors[3 * i + 2], zi = s.depths[i];
        // Per-lane sums, reduced once per pair: vp dx, vp dy, vp dx^2, vp dx dy, vp dy^2 (vp = dL/dpower),
        // w v_r, w v_g, w v_b, w v_z, dL/dalpha G.
        vf acc[N_GRAD] = {};
        const int32_t kk = static_cast<int32_t>(k);
        const vf lane_f = {0, 1, 2, 3, 4, 5, 6, 7};
        const vi lane_i = {0, 1, 2, 3, 4, 5, 6, 7};
        for (int ly = bx.y0; ly <= bx.y1; ++ly) {
            if (k >= row_end[ly]) continue;  // every pixel of this row ended in front of this Gaussian
            const float dy = ly - my;
            const float bdy = qb * dy, cdy2 = qc * dy * dy;
            for (int xs = bx.x0; xs <= bx.x1; xs += LANES) {
                const int c = ly * STRIDE + xs, lim = bx.x1 - xs;
                const vf dx = (static_cast<float>(xs) + lane_f) - mx;
                const vf G = exp2_nonpos(dx * (qa * dx + bdy) + cdy2);
                const vf raw = o * G;
                const vf alpha = amax < raw ? splat(amax) : raw;
                const vi valid = (lane_i <= lim) & (kk < load(st.stop + c)) & (alpha >= amin);
                const vf inv = 1.0f / (1.0f - alpha);
                const vf Tc = load(st.T + c), Sc = load(st.S + c);
                const vf r = load(st.vr + c), g = load(st.vg + c), b = load(st.vb + c), z = load(st.vz + c);
                const vf Tb = Tc * inv;
                const vf w = alpha * Tb;
                const vf gw = r * c0 + g * c1 + b * c2 + z * zi + load(st.va + c);
                const vf v_a = gw * Tb - Sc * inv;
                store(st.S + c, valid ? Sc + gw * w : Sc);
                store(st.T + c, valid ? Tb : Tc);
                const vf wv = valid ? w : splat(0.0f);
                acc[5] += wv * r;
                acc[6] += wv * g;
                acc[7] += wv * b;
                acc[8] += wv * z;
                const vi grad = valid & (raw <= amax);  // clamped: no gradient through alpha
                const vf vp = grad ? -0.5f * alpha * v_a : splat(0.0f);
                acc[9] += grad ? v_a * G : splat(0.0f);
                const vf vpdx = vp * dx;
                acc[0] += vpdx;
                acc[1] += vp * dy;
                acc[2] += vpdx * dx;
                acc[3] += vpdx * dy;
                acc[4] += vp * dy * dy;
            }
        }
        float sum[N_GRAD];
        for (int q = 0; q < N_GRAD; ++q) sum[q] = lane_sum(acc[q]);
        float* out = v_pairs + N_GRAD * k;
        // power = a dx^2 + 2 b dx dy + c dy^2 with dx = px - mx: d power / d mx = -2 (a dx + b dy)
        out[0] = -2.0f * (ca * sum[0] + cb * sum[1]);
        out[1] = -2.0f * (cb * sum[0] + cc * sum[1]);
        out[2] = sum[2];
        out[3] = 2.0f * sum[3];
        out[4] = sum[4];
        for (int q = 5; q < N_GRAD; ++q) out[q] = sum[q];
    }
}

// The tile sizes the kernels are compiled for (``bin`` refuses others).
template <class F>
void by_tile(int tile, F&& f) {
    if (tile == 32)
        f(std::integral_constant<int, 32>{});
    else
        f(std::integral_constant<int, 16>{});
}

Scene make_scene(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
                 const Bins& bins, float alpha_max, float alpha_min, float t_min) {
    return {ptr<const float>(means2d), ptr<const float>(conics), ptr<const float>(opacities), ptr<const float>(colors),
            ptr<const float>(depths), bins.offsets.data(), bins.gauss.data(), bins.boxes.data(),
            bins.width, bins.height, bins.tiles_x, alpha_max, alpha_min, t_min};
}

}  // namespace

// numba.py's _depth_order and _bin_kernel (the same order and boxes, rule for rule): the visible Gaussians
// sorted front to back by a stable LSD radix sort (8 bits a pass) on the float32 depths' bit patterns (their
// order is the depths' order: every visible depth is at least the near plane, so positive), then appended
// to the list of every tile their box overlaps. The box holds the pixels whose centres (i + 0.5) lie within
// [m - e, m + e], widened by a hair against rounding, in float64 as numba computes it.
std::shared_ptr<Bins> bin(uintptr_t means2d_addr, uintptr_t extents_addr, uintptr_t depths_addr, uintptr_t visible_addr,
                          int n, int width, int height, int tile) {
    if (tile != 16 && tile != 32) throw std::invalid_argument("bin: the tile must be 16 or 32 pixels");
    const int TS = tile, log2_ts = tile == 32 ? 5 : 4;  // box corners are >= 0: a shift divides by the tile
    const float* means2d = ptr<const float>(means2d_addr);
    const float* extents = ptr<const float>(extents_addr);
    const uint32_t* keys = ptr<const uint32_t>(depths_addr);
    const uint8_t* visible = ptr<const uint8_t>(visible_addr);
    auto B = std::make_shared<Bins>();
    B->tile = tile, B->width = width, B->height = height, B->tiles_x = (width + TS - 1) / TS;
    const int tiles_y = (height + TS - 1) / TS;
    B->n_tiles = B->tiles_x * tiles_y;
    // The visible Gaussians as (depth bits << 32 | index): the sort moves keys and indices together and
    // reads them in sequence (indirect key loads, keys[order[j]], cost more than the wider moves).
    std::vector<uint64_t> items(n), tmp;
    int m = 0;
    for (int i = 0; i < n; ++i) {  // branch-free: about half of them are visible, in no order
        items[m] = static_cast<uint64_t>(keys[i]) << 32 | static_cast<uint32_t>(i);
        m += visible[i] != 0;
    }
    items.resize(m);
    // Boxes, and how many Gaussians each tile gets, in index order (the means and extents read in sequence).
    B->boxes.resize(4 * static_cast<size_t>(n));
    std::vector<int64_t>& offsets = B->offsets;
    offsets.assign(B->n_tiles + 1, 0);
    for (int j = 0; j < m; ++j) {
        const int g = static_cast<int32_t>(items[j]);
        const double mx = means2d[2 * g], my = means2d[2 * g + 1], ex = extents[2 * g], ey = extents[2 * g + 1];
        // clamped in float64 first, so that a huge extent cannot overflow the conversion to int
        const double x0 = std::max(std::ceil(mx - ex - 0.5 - 1e-3), 0.0), x1 = std::min(std::floor(mx + ex - 0.5 + 1e-3), width - 1.0);
        const double y0 = std::max(std::ceil(my - ey - 0.5 - 1e-3), 0.0), y1 = std::min(std::floor(my + ey - 0.5 + 1e-3), height - 1.0);
        int32_t* box = B->boxes.data() + 4 * static_cast<int64_t>(g);
        if (!(x0 <= x1 && y0 <= y1)) {
            box[0] = 0, box[1] = -1, box[2] = 0, box[3] = -1;  // empty
            continue;
        }
        box[0] = static_cast<int32_t>(x0), box[1] = static_cast<int32_t>(x1);
        box[2] = static_cast<int32_t>(y0), box[3] = static_cast<int32_t>(y1);
        for (int ty = box[2] >> log2_ts; ty <= box[3] >> log2_ts; ++ty)
            for (int tx = box[0] >> log2_ts; tx <= box[1] >> log2_ts; ++tx) ++offsets[ty * B->tiles_x + tx + 1];
    }
    tmp.resize(m);
    for (int shift = 32; shift < 64 && m > 0; shift += 8) {
        int64_t count[257] = {};
        for (int j = 0; j < m; ++j) ++count[((items[j] >> shift) & 255) + 1];
        if (count[1 + ((items[0] >> shift) & 255)] == m) continue;  // one byte value: nothing moves
        for (int k = 0; k < 256; ++k) count[k + 1] += count[k];
        for (int j = 0; j < m; ++j) tmp[count[(items[j] >> shift) & 255]++] = items[j];
        items.swap(tmp);
    }
    for (int t = 0; t < B->n_tiles; ++t) offsets[t + 1] += offsets[t];
    B->gauss.resize(offsets[B->n_tiles]);
    std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
    for (int j = 0; j < m; ++j) {
        const int g = static_cast<int32_t>(items[j]);
        const int32_t* box = B->boxes.data() + 4 * static_cast<int64_t>(g);
        if (box[1] < box[0]) continue;
        for (int ty = box[2] >> log2_ts; ty <= box[3] >> log2_ts; ++ty)
            for (int tx = box[0] >> log2_ts; tx <= box[1] >> log2_ts; ++tx) B->gauss[cursor[ty * B->tiles_x + tx]++] = g;
    }
    return B;
}

void forward(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
             const Bins& bins, float alpha_max, float alpha_min, float t_min, uintptr_t background, uintptr_t out_rgb,
             uintptr_t out_depth, uintptr_t out_alpha, uintptr_t T_final, uintptr_t last, int threads) {
    const Scene s = make_scene(means2d, conics, opacities, colors, depths, bins, alpha_max, alpha_min, t_min);
    by_tile(bins.tile, [&](auto ts) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
        for (int t = 0; t < bins.n_tiles; ++t)
            forward_tile<decltype(ts)::value>(s, t, ptr<const float>(background), ptr<float>(out_rgb),
                                              ptr<float>(out_depth), ptr<float>(out_alpha), ptr<float>(T_final),
                                              ptr<int32_t>(last));
    });
}

// The gradients [N, ...] of the five per-Gaussian inputs (every entry written): each tile writes its pairs'
// slots (in this thread's own scratch), then they are added up per Gaussian in pair order (deterministic,
// whatever the thread count).
void backward(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
              const Bins& bins, float alpha_max, float alpha_min, float t_min, uintptr_t background,
              uintptr_t alpha_img, uintptr_t depth_img, uintptr_t T_final, uintptr_t last, uintptr_t v_rgb,
              uintptr_t v_depth, uintptr_t v_alpha, int n, uintptr_t v_means2d, uintptr_t v_conics,
              uintptr_t v_opacities, uintptr_t v_colors, uintptr_t v_depths, int threads) {
    const Scene s = make_scene(means2d, conics, opacities, colors, depths, bins, alpha_max, alpha_min, t_min);
    static thread_local std::vector<float> v_pairs;
    const int64_t pairs = static_cast<int64_t>(bins.gauss.size());
    v_pairs.resize(static_cast<size_t>(pairs) * N_GRAD);
    float* vp = v_pairs.data();
    by_tile(bins.tile, [&](auto ts) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
        for (int t = 0; t < bins.n_tiles; ++t)
            backward_tile<decltype(ts)::value>(s, t, ptr<const float>(background), ptr<const float>(alpha_img),
                                               ptr<const float>(depth_img), ptr<const float>(T_final),
                                               ptr<const int32_t>(last), ptr<const float>(v_rgb),
                                               ptr<const float>(v_depth), ptr<const float>(v_alpha), vp);
    });
    float* m = ptr<float>(v_means2d);
    float* cn = ptr<float>(v_conics);
    float* op = ptr<float>(v_opacities);
    float* col = ptr<float>(v_colors);
    float* dep = ptr<float>(v_depths);
    std::fill(m, m + 2 * n, 0.0f);
    std::fill(cn, cn + 3 * n, 0.0f);
    std::fill(op, op + n, 0.0f);
    std::fill(col, col + 3 * n, 0.0f);
    std::fill(dep, dep + n, 0.0f);
    for (int64_t k = 0; k < pairs; ++k) {
        const int64_t i = bins.gauss[k];
        const float* g = vp + N_GRAD * k;
        m[2 * i] += g[0];
        m[2 * i + 1] += g[1];
        cn[3 * i] += g[2];
        cn[3 * i + 1] += g[3];
        cn[3 * i + 2] += g[4];
        col[3 * i] += g[5];
        col[3 * i + 1] += g[6];
        col[3 * i + 2] += g[7];
        dep[i] += g[8];
        op[i] += g[9];
    }
}

}  // namespace vdm3d_raster
