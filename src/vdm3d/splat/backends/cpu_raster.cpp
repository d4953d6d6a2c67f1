// The ``cpp`` backend's kernels (see cpp.py for why and how it is built): the binning into tiles, the
// tiled rasterizer, forward, analytic backward and the per-Gaussian reduction, in float32, written so
// that gcc auto-vectorizes the pixel loops; and, at the end of the file, the EWA projection with its
// backward (float32, vectorized across Gaussians). The rules are those of the dense reference (torch_ref.py) and of the numba kernels
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
// and checks that); pybind11 alone is included so the build stays short (no torch headers).

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <vector>

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

template <class T>
T* ptr(uintptr_t a) {
    return reinterpret_cast<T*>(a);
}

// One camera's tile lists (numba.py's TileLists): tile t holds gauss[offsets[t] : offsets[t + 1]], its
// Gaussians front to back; boxes[4 i : 4 i + 4] is Gaussian i's inclusive pixel box x0, x1, y0, y1 (only
// read for the Gaussians in some list). Made by ``bin``, held by Python between the forward and the backward.
struct Bins {
    int tile = 16, width = 0, height = 0, tiles_x = 0, n_tiles = 0;
    std::vector<int64_t> offsets;
    std::vector<int32_t> gauss;
    std::vector<int32_t> boxes;
};

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

// ---------------------------------------------------------------------------------------------------------
// EWA projection, forward and backward: numba_projection.py's kernels line for line, in float32 like
// torch_ref. The forward's loop over Gaussians is branch-free (selects, no early exits) so that gcc runs
// eight Gaussians per AVX2 instruction; ``GCC ivdep``, not ``omp simd``, whose per-lane copies of the
// local arrays kept gcc from vectorizing. The backward's loops too (see cpp.py). ``cam`` is
// numba_projection._camera_table's row: the w2c rows 0-2 (12 values), fx, fy, cx, cy, the camera centre (3).
// ``scales``, ``opac``, ``r_ext`` are numba_projection._per_gaussian's arrays in float32 (numpy's vectorized exp/log).

using real = float;  // the projection's arithmetic

constexpr real SH_C0 = 0.28209479177387814, SH_C1 = 0.4886025119029199;
constexpr real SH_C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                             0.5462742152960396};
constexpr real SH_C3[7] = {-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                             -0.4570457994644658, 1.445305721320277, -0.5900435899266435};

// Y_k(x, y, z) for k < (D + 1)^2, in the basis and signs of vdm3d.splat.sh, and with ``grad`` their
// partial derivatives.
template <int D, bool GRAD>
[[gnu::always_inline]] inline void sh_basis(real x, real y, real z, real* Y, real* Yx, real* Yy, real* Yz) {
    constexpr int n = (D + 1) * (D + 1);
    if (GRAD)
        for (int k = 0; k < n; ++k) Yx[k] = Yy[k] = Yz[k] = 0.0;
    Y[0] = SH_C0;
    if (D >= 1) {
        Y[1] = -SH_C1 * y;
        Y[2] = SH_C1 * z;
        Y[3] = -SH_C1 * x;
        if (GRAD) {
            Yy[1] = -SH_C1;
            Yz[2] = SH_C1;
            Yx[3] = -SH_C1;
        }
    }
    if (D >= 2) {
        const real xx = x * x, yy = y * y, zz = z * z;
        Y[4] = SH_C2[0] * x * y;
        Y[5] = SH_C2[1] * y * z;
        Y[6] = SH_C2[2] * (2 * zz - xx - yy);
        Y[7] = SH_C2[3] * x * z;
        Y[8] = SH_C2[4] * (xx - yy);
        if (GRAD) {
            Yx[4] = SH_C2[0] * y, Yy[4] = SH_C2[0] * x;
            Yy[5] = SH_C2[1] * z, Yz[5] = SH_C2[1] * y;
            Yx[6] = -2 * SH_C2[2] * x, Yy[6] = -2 * SH_C2[2] * y, Yz[6] = 4 * SH_C2[2] * z;
            Yx[7] = SH_C2[3] * z, Yz[7] = SH_C2[3] * x;
            Yx[8] = 2 * SH_C2[4] * x, Yy[8] = -2 * SH_C2[4] * y;
        }
    }
    if (D >= 3) {
        const real xx = x * x, yy = y * y, zz = z * z;
        Y[9] = SH_C3[0] * y * (3 * xx - yy);
        Y[10] = SH_C3[1] * x * y * z;
        Y[11] = SH_C3[2] * y * (4 * zz - xx - yy);
        Y[12] = SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy);
        Y[13] = SH_C3[4] * x * (4 * zz - xx - yy);
        Y[14] = SH_C3[5] * z * (xx - yy);
        Y[15] = SH_C3[6] * x * (xx - 3 * yy);
        if (GRAD) {
            Yx[9] = 6 * SH_C3[0] * x * y, Yy[9] = SH_C3[0] * (3 * xx - 3 * yy);
            Yx[10] = SH_C3[1] * y * z, Yy[10] = SH_C3[1] * x * z, Yz[10] = SH_C3[1] * x * y;
            Yx[11] = -2 * SH_C3[2] * x * y, Yy[11] = SH_C3[2] * (4 * zz - xx - 3 * yy), Yz[11] = 8 * SH_C3[2] * y * z;
            Yx[12] = -6 * SH_C3[3] * x * z, Yy[12] = -6 * SH_C3[3] * y * z;
            Yz[12] = SH_C3[3] * (6 * zz - 3 * xx - 3 * yy);
            Yx[13] = SH_C3[4] * (4 * zz - 3 * xx - yy), Yy[13] = -2 * SH_C3[4] * x * y, Yz[13] = 8 * SH_C3[4] * x * z;
            Yx[14] = 2 * SH_C3[5] * x * z, Yy[14] = -2 * SH_C3[5] * y * z, Yz[14] = SH_C3[5] * (xx - yy);
            Yx[15] = SH_C3[6] * (3 * xx - 3 * yy), Yy[15] = -6 * SH_C3[6] * x * y;
        }
    }
}

struct Camera {
    real R[9], t[3], fx, fy, cx, cy, lxn, lxp, lyn, lyp, centre[3];
    Camera(const double* c, int width, int height) {
        for (int r = 0; r < 3; ++r) {
            for (int q = 0; q < 3; ++q) R[3 * r + q] = c[4 * r + q];
            t[r] = c[4 * r + 3];
        }
        fx = c[12], fy = c[13], cx = c[14], cy = c[15];
        const real tan_x = 0.5 * width / fx, tan_y = 0.5 * height / fy;
        lxn = cx / fx + 0.3 * tan_x, lxp = (width - cx) / fx + 0.3 * tan_x;
        lyn = cy / fy + 0.3 * tan_y, lyp = (height - cy) / fy + 0.3 * tan_y;
        for (int r = 0; r < 3; ++r) centre[r] = c[16 + r];
    }
};

// Rotation of the quaternion (normalized here), Sigma = R diag(s^2) R^T (6 entries: 00 01 02 11 12 22).
[[gnu::always_inline]] inline void covariance(const float* q, const float* s, real* Rq, real* qn, real& qnorm, real* Sig) {
    const real w0 = q[0], x0 = q[1], y0 = q[2], z0 = q[3];
    qnorm = std::sqrt(w0 * w0 + x0 * x0 + y0 * y0 + z0 * z0);
    const real w = w0 / qnorm, x = x0 / qnorm, y = y0 / qnorm, z = z0 / qnorm;
    qn[0] = w, qn[1] = x, qn[2] = y, qn[3] = z;
    Rq[0] = 1 - 2 * (y * y + z * z), Rq[1] = 2 * (x * y - w * z), Rq[2] = 2 * (x * z + w * y);
    Rq[3] = 2 * (x * y + w * z), Rq[4] = 1 - 2 * (x * x + z * z), Rq[5] = 2 * (y * z - w * x);
    Rq[6] = 2 * (x * z - w * y), Rq[7] = 2 * (y * z + w * x), Rq[8] = 1 - 2 * (x * x + y * y);
    const real s0 = s[0] * s[0], s1 = s[1] * s[1], s2 = s[2] * s[2];
    Sig[0] = Rq[0] * Rq[0] * s0 + Rq[1] * Rq[1] * s1 + Rq[2] * Rq[2] * s2;
    Sig[1] = Rq[0] * Rq[3] * s0 + Rq[1] * Rq[4] * s1 + Rq[2] * Rq[5] * s2;
    Sig[2] = Rq[0] * Rq[6] * s0 + Rq[1] * Rq[7] * s1 + Rq[2] * Rq[8] * s2;
    Sig[3] = Rq[3] * Rq[3] * s0 + Rq[4] * Rq[4] * s1 + Rq[5] * Rq[5] * s2;
    Sig[4] = Rq[3] * Rq[6] * s0 + Rq[4] * Rq[7] * s1 + Rq[5] * Rq[8] * s2;
    Sig[5] = Rq[6] * Rq[6] * s0 + Rq[7] * Rq[7] * s1 + Rq[8] * Rq[8] * s2;
}

// C = Rc Sigma Rc^T for the camera rotation Rc (6 entries of the symmetric result).
[[gnu::always_inline]] inline void rotate(const Camera& cam, const real* S, real* C) {
    const real* R = cam.R;
    real T[9];  // Rc Sigma
    for (int r = 0; r < 3; ++r) {
        T[3 * r] = R[3 * r] * S[0] + R[3 * r + 1] * S[1] + R[3 * r + 2] * S[2];
        T[3 * r + 1] = R[3 * r] * S[1] + R[3 * r + 1] * S[3] + R[3 * r + 2] * S[4];
        T[3 * r + 2] = R[3 * r] * S[2] + R[3 * r + 1] * S[4] + R[3 * r + 2] * S[5];
    }
    C[0] = T[0] * R[0] + T[1] * R[1] + T[2] * R[2];
    C[1] = T[0] * R[3] + T[1] * R[4] + T[2] * R[5];
    C[2] = T[0] * R[6] + T[1] * R[7] + T[2] * R[8];
    C[3] = T[3] * R[3] + T[4] * R[4] + T[5] * R[5];
    C[4] = T[3] * R[6] + T[4] * R[7] + T[5] * R[8];
    C[5] = T[6] * R[6] + T[7] * R[7] + T[8] * R[8];
}

struct Screen {  // what the forward and the backward both recompute for a Gaussian in a camera
    real x, y, z, zs, rx, ry, rxc, ryc, tx, ty, J00, J02, J11, J12, a, b, c, det_raw, det;
    bool in_front;
};

[[gnu::always_inline]] inline Screen screen(const Camera& cam, real mx, real my, real mz, const real* C, real near, real eps2d) {
    Screen p;
    const real* R = cam.R;
    p.x = R[0] * mx + R[1] * my + R[2] * mz + cam.t[0];
    p.y = R[3] * mx + R[4] * my + R[5] * mz + cam.t[1];
    p.z = R[6] * mx + R[7] * my + R[8] * mz + cam.t[2];
    p.in_front = p.z >= near;
    p.zs = p.in_front ? p.z : 1.0;
    p.rx = p.x / p.zs, p.ry = p.y / p.zs;
    p.rxc = std::min(std::max(p.rx, -cam.lxn), cam.lxp);
    p.ryc = std::min(std::max(p.ry, -cam.lyn), cam.lyp);
    p.tx = p.zs * p.rxc, p.ty = p.zs * p.ryc;
    p.J00 = cam.fx / p.zs, p.J02 = -cam.fx * p.tx / (p.zs * p.zs);
    p.J11 = cam.fy / p.zs, p.J12 = -cam.fy * p.ty / (p.zs * p.zs);
    // cov2d = J C J^T with J = [[J00, 0, J02], [0, J11, J12]]
    p.a = p.J00 * (p.J00 * C[0] + p.J02 * C[2]) + p.J02 * (p.J00 * C[2] + p.J02 * C[5]) + eps2d;
    p.b = p.J00 * (p.J11 * C[1] + p.J12 * C[2]) + p.J02 * (p.J11 * C[4] + p.J12 * C[5]);
    p.c = p.J11 * (p.J11 * C[3] + p.J12 * C[4]) + p.J12 * (p.J11 * C[4] + p.J12 * C[5]) + eps2d;
    p.det_raw = p.a * p.c - p.b * p.b;
    p.det = std::max(p.det_raw, real(1e-12));
    return p;
}

template <int D>
void project_forward_cam(int n, int K, const float* means, const float* quats, const float* scales,
                         const float* opac, const float* r_exts, const float* sh, const Camera& cam, int width,
                         int height, real near, real eps2d, real alpha_min, float* means2d, float* conics,
                         float* depths, float* opacities, float* colors, float* extents, uint8_t* visible,
                         int32_t* radii) {
    constexpr int NC = (D + 1) * (D + 1);
#pragma GCC ivdep
    for (int i = 0; i < n; ++i) {
        real Rq[9], qn[4], qnorm, Sig[6], C[6], Y[16];
        covariance(quats + 4 * i, scales + 3 * i, Rq, qn, qnorm, Sig);
        rotate(cam, Sig, C);
        const real mx = means[3 * i], my = means[3 * i + 1], mz = means[3 * i + 2];
        const Screen p = screen(cam, mx, my, mz, C, near, eps2d);
        const real u = cam.fx * p.x / p.zs + cam.cx, v = cam.fy * p.y / p.zs + cam.cy;
        means2d[2 * i] = u, means2d[2 * i + 1] = v;
        conics[3 * i] = p.c / p.det, conics[3 * i + 1] = -p.b / p.det, conics[3 * i + 2] = p.a / p.det;
        depths[i] = p.z;
        const real dx = mx - cam.centre[0], dy = my - cam.centre[1], dz = mz - cam.centre[2];
        const real norm = std::max(std::sqrt(dx * dx + dy * dy + dz * dz), real(1e-12));
        sh_basis<D, false>(dx / norm, dy / norm, dz / norm, Y, nullptr, nullptr, nullptr);
        real r0 = 0.5, r1 = 0.5, r2 = 0.5;
        const float* s = sh + 3 * K * static_cast<int64_t>(i);
#pragma GCC unroll 16
        for (int k = 0; k < NC; ++k) {
            r0 += Y[k] * s[3 * k];
            r1 += Y[k] * s[3 * k + 1];
            r2 += Y[k] * s[3 * k + 2];
        }
        colors[3 * i] = std::max(r0, real(0)), colors[3 * i + 1] = std::max(r1, real(0)), colors[3 * i + 2] = std::max(r2, real(0));
        const real o = opac[i];
        const real ex = r_exts[i] * std::sqrt(p.a), ey = r_exts[i] * std::sqrt(p.c);
        const bool on_image = (u + ex > 0) & (u - ex < width) & (v + ey > 0) & (v - ey < height);
        const bool vis = p.in_front & (o >= alpha_min) & on_image & std::isfinite(u) & std::isfinite(v);
        visible[i] = vis;
        opacities[i] = vis ? o : 0.0;
        extents[2 * i] = vis ? ex : 0.0, extents[2 * i + 1] = vis ? ey : 0.0;
        radii[i] = vis ? static_cast<int32_t>(std::ceil(std::max(static_cast<float>(ex), static_cast<float>(ey)))) : 0;
    }
}

constexpr int N_ACC = 11;  // per-Gaussian sums over cameras: v_mean (3), v_Sigma symmetrized (6), v_logit, touched

template <int D, bool K_IS_NC>
void project_backward_cam(int n, int K_arg, const float* means, const float* quats, const float* scales,
                          const float* opac, const float* sh, const Camera cam_arg, real near, real eps2d,
                          const uint8_t* visible, const float* v_means2d, const float* v_conics, const float* v_depths,
                          const float* v_opacities, const float* v_colors, float* acc, float* v_sh, float* sh_out,
                          bool first) {
    constexpr int NC = (D + 1) * (D + 1);
    const int K = K_IS_NC ? NC : K_arg;  // a constant stride lets gcc vectorize the v_sh rows (second loop)
    const Camera cam = cam_arg;  // a local copy: the stores below cannot alias it, which lets the loop vectorize
#pragma GCC ivdep
    for (int i = 0; i < n; ++i) {
        const real g0 = v_means2d[2 * i], g1 = v_means2d[2 * i + 1];
        const real q0 = v_conics[3 * i], q1 = v_conics[3 * i + 1], q2 = v_conics[3 * i + 2];
        const real gz = v_depths[i], go = v_opacities[i];
        const real gc0 = v_colors[3 * i], gc1 = v_colors[3 * i + 1], gc2 = v_colors[3 * i + 2];
        // Contributions are linear in the cotangents: a Gaussian without any in this camera gets none
        // (selected, not multiplied, so a degenerate one cannot leak NaN).
        // (A float comparison, not a bool of bools: gcc vectorizes the selects on it.)
        const bool has = std::fabs(g0) + std::fabs(g1) + std::fabs(q0) + std::fabs(q1) + std::fabs(q2) + std::fabs(gz) +
                             std::fabs(go) + std::fabs(gc0) + std::fabs(gc1) + std::fabs(gc2) != 0;
        real Rq[9], qn[4], qnorm, Sig[6], C[6], Y[16], Yx[16], Yy[16], Yz[16];
        covariance(quats + 4 * i, scales + 3 * i, Rq, qn, qnorm, Sig);
        rotate(cam, Sig, C);
        const real o = opac[i];
        // opacity = visible ? sigmoid(logit) : 0 (a product with the 0/1 mask: a select on the byte made gcc
        // predicate the load of ``opac`` on it, a mask conversion AVX-512 lacks, and give up on the loop)
        const real v_logit = go * real(visible[i]) * o * (1.0f - o);
        const real mx = means[3 * i], my = means[3 * i + 1], mz = means[3 * i + 2];
        // Colors -> SH coefficients and the viewing direction.
        const real dx = mx - cam.centre[0], dy = my - cam.centre[1], dz = mz - cam.centre[2];
        const real raw_norm = std::sqrt(dx * dx + dy * dy + dz * dz);
        const real norm = std::max(raw_norm, real(1e-12));
        const real d0 = dx / norm, d1 = dy / norm, d2 = dz / norm;
        sh_basis<D, true>(d0, d1, d2, Y, Yx, Yy, Yz);
        // the runtime stride here: gcc loads strided elements one by one, while with the constant 3 NC it
        // tries an interleaved group of 48 and gives up
        const float* s = sh + 3 * K_arg * static_cast<int64_t>(i);
        real r0 = 0.5, r1 = 0.5, r2 = 0.5;
#pragma GCC unroll 16
        for (int k = 0; k < NC; ++k) {
            r0 += Y[k] * s[3 * k];
            r1 += Y[k] * s[3 * k + 1];
            r2 += Y[k] * s[3 * k + 2];
        }
        const real vc0 = r0 >= 0.0 ? gc0 : 0.0, vc1 = r1 >= 0.0 ? gc1 : 0.0, vc2 = r2 >= 0.0 ? gc2 : 0.0;
        real vd0 = 0.0, vd1 = 0.0, vd2 = 0.0;
#pragma GCC unroll 16
        for (int k = 0; k < NC; ++k) {
            const real s_k = s[3 * k] * vc0 + s[3 * k + 1] * vc1 + s[3 * k + 2] * vc2;
            vd0 += Yx[k] * s_k;
            vd1 += Yy[k] * s_k;
            vd2 += Yz[k] * s_k;
        }
        // v_sh += Y vc is left to the second loop (its 48-float rows of stores keep this one from vectorizing)
        sh_out[i] = d0, sh_out[n + i] = d1, sh_out[2 * n + i] = d2;
        sh_out[3 * n + i] = has ? vc0 : 0.0f, sh_out[4 * n + i] = has ? vc1 : 0.0f, sh_out[5 * n + i] = has ? vc2 : 0.0f;
        const real dot = d0 * vd0 + d1 * vd1 + d2 * vd2;
        const bool unit = raw_norm >= real(1e-12);
        real vm0 = (unit ? vd0 - d0 * dot : vd0) / norm;
        real vm1 = (unit ? vd1 - d1 * dot : vd1) / norm;
        real vm2 = (unit ? vd2 - d2 * dot : vd2) / norm;
        // Conic (c, -b, a) / det -> a, b, c of the dilated 2D covariance.
        const Screen p = screen(cam, mx, my, mz, C, near, eps2d);
        real va = q2 / p.det, vb = -q1 / p.det, vc = q0 / p.det;
        const real v_det = p.det_raw >= real(1e-12) ? -(q0 * p.c - q1 * p.b + q2 * p.a) / (p.det * p.det) : 0.0;
        va += v_det * p.c;
        vb += v_det * (-2.0 * p.b);
        vc += v_det * p.a;
        // v_J = (V + V^T) J C with V = [[va, vb], [0, vc]]; rows of J: (J00, 0, J02), (0, J11, J12).
        const real JC00 = p.J00 * C[0] + p.J02 * C[2], JC02 = p.J00 * C[2] + p.J02 * C[5];
        const real JC11 = p.J11 * C[3] + p.J12 * C[4], JC12 = p.J11 * C[4] + p.J12 * C[5];
        const real JC10 = p.J11 * C[1] + p.J12 * C[2], JC01 = p.J00 * C[1] + p.J02 * C[4];
        const real vJ00 = 2.0 * va * JC00 + vb * JC10;
        const real vJ02 = 2.0 * va * JC02 + vb * JC12;
        const real vJ11 = vb * JC01 + 2.0 * vc * JC11;
        const real vJ12 = vb * JC02 + 2.0 * vc * JC12;
        // v_C = J^T V J, symmetrized: W = 2 va j0 j0^T + vb (j0 j1^T + j1 j0^T) + 2 vc j1 j1^T.
        const real j0[3] = {p.J00, 0.0, p.J02}, j1[3] = {0.0, p.J11, p.J12};
        real W[9];
        for (int r = 0; r < 3; ++r)
            for (int q = 0; q < 3; ++q)
                W[3 * r + q] = 2.0 * va * j0[r] * j0[q] + vb * (j0[r] * j1[q] + j1[r] * j0[q]) + 2.0 * vc * j1[r] * j1[q];
        // C = Rc Sigma Rc^T -> v_Sigma (symmetrized) += Rc^T W Rc
        const real* R = cam.R;
        real WR[9];
        for (int r = 0; r < 3; ++r)
            for (int q = 0; q < 3; ++q) WR[3 * r + q] = W[3 * r] * R[q] + W[3 * r + 1] * R[3 + q] + W[3 * r + 2] * R[6 + q];
        real vS[6];
        vS[0] = R[0] * WR[0] + R[3] * WR[3] + R[6] * WR[6];
        vS[1] = R[0] * WR[1] + R[3] * WR[4] + R[6] * WR[7];
        vS[2] = R[0] * WR[2] + R[3] * WR[5] + R[6] * WR[8];
        vS[3] = R[1] * WR[1] + R[4] * WR[4] + R[7] * WR[7];
        vS[4] = R[1] * WR[2] + R[4] * WR[5] + R[7] * WR[8];
        vS[5] = R[2] * WR[2] + R[5] * WR[5] + R[8] * WR[8];
        // Jacobian and pixel mean -> camera point.
        const real zs = p.zs, zs2 = zs * zs, fx = cam.fx, fy = cam.fy;
        real vx = g0 * fx / zs, vy = g1 * fy / zs;
        real vzs = -(g0 * fx * p.x + g1 * fy * p.y) / zs2 - fx / zs2 * vJ00 - fy / zs2 * vJ11 +
                     2.0 * fx * p.tx / (zs2 * zs) * vJ02 + 2.0 * fy * p.ty / (zs2 * zs) * vJ12;
        const real vtx = -fx / zs2 * vJ02, vty = -fy / zs2 * vJ12;
        const bool free_x = p.rx == p.rxc, free_y = p.ry == p.ryc;  // tx = x, or tx = z * limit
        vx += free_x ? vtx : 0.0;
        vzs += free_x ? 0.0 : vtx * p.rxc;
        vy += free_y ? vty : 0.0;
        vzs += free_y ? 0.0 : vty * p.ryc;
        const real vz = gz + (p.z >= near ? vzs : 0.0f);
        vm0 += R[0] * vx + R[3] * vy + R[6] * vz;
        vm1 += R[1] * vx + R[4] * vy + R[7] * vz;
        vm2 += R[2] * vx + R[5] * vy + R[8] * vz;
        acc[i] += has ? vm0 : 0.0f;
        acc[n + i] += has ? vm1 : 0.0f;
        acc[2 * n + i] += has ? vm2 : 0.0f;
        for (int q = 0; q < 6; ++q) acc[(3 + q) * n + i] += has ? vS[q] : 0.0f;
        acc[9 * n + i] += has ? v_logit : 0.0f;
        acc[10 * n + i] += has ? 1.0f : 0.0f;  // counts the cameras with cotangents
    }
    // v_sh (+)= Y(d) vc, one Gaussian's contiguous row of coefficients at a time (gcc vectorizes the row).
    // The first camera writes every entry (zeros where no cotangent arrives, and in the coefficients above
    // the degree), so v_sh needs no zeroing beforehand: a fill of it (3.8 MB at 20k Gaussians, SH degree 3)
    // cost 0.3-0.5 ms a pass.
    for (int i = 0; i < n; ++i) {
        float* vs = v_sh + 3 * K * static_cast<int64_t>(i);
        const float o3 = sh_out[3 * n + i], o4 = sh_out[4 * n + i], o5 = sh_out[5 * n + i];
        if (o3 == 0 && o4 == 0 && o5 == 0) {  // adds nothing
            if (first) std::fill_n(vs, 3 * K, 0.0f);
            continue;
        }
        real Y[16];
        sh_basis<D, false>(sh_out[i], sh_out[n + i], sh_out[2 * n + i], Y, nullptr, nullptr, nullptr);
        if (first) {
            for (int k = 0; k < NC; ++k) {
                vs[3 * k] = Y[k] * o3;
                vs[3 * k + 1] = Y[k] * o4;
                vs[3 * k + 2] = Y[k] * o5;
            }
            std::fill(vs + 3 * NC, vs + 3 * K, 0.0f);
        } else {
            for (int k = 0; k < NC; ++k) {
                vs[3 * k] += Y[k] * o3;
                vs[3 * k + 1] += Y[k] * o4;
                vs[3 * k + 2] += Y[k] * o5;
            }
        }
    }
}

// After every camera: Sigma = M M^T with M = R_q diag(s) -> scales and the normalized quaternion.
void project_backward_finish(int n, const float* quats, const float* scales, const float* acc, float* v_means,
                             float* v_quats, float* v_log_scales, float* v_logits) {
#pragma GCC ivdep
    for (int i = 0; i < n; ++i) {
        real a[N_ACC];
        for (int q = 0; q < N_ACC; ++q) a[q] = acc[q * n + i];
        real Rq[9], qn[4], qnorm, Sig[6];
        covariance(quats + 4 * i, scales + 3 * i, Rq, qn, qnorm, Sig);
        const float* s = scales + 3 * i;
        const real vSym[9] = {real(a[3]), real(a[4]), real(a[5]), real(a[4]), real(a[6]), real(a[7]), real(a[5]), real(a[7]), real(a[8])};  // v_Sigma + v_Sigma^T
        real vM[9], v[9];
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c)
                vM[3 * r + c] = vSym[3 * r] * Rq[c] * s[c] + vSym[3 * r + 1] * Rq[3 + c] * s[c] +
                                vSym[3 * r + 2] * Rq[6 + c] * s[c];
        const real vs0 = (vM[0] * Rq[0] + vM[3] * Rq[3] + vM[6] * Rq[6]) * s[0];
        const real vs1 = (vM[1] * Rq[1] + vM[4] * Rq[4] + vM[7] * Rq[7]) * s[1];
        const real vs2 = (vM[2] * Rq[2] + vM[5] * Rq[5] + vM[8] * Rq[8]) * s[2];
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) v[3 * r + c] = vM[3 * r + c] * s[c];
        const real w = qn[0], x = qn[1], y = qn[2], z = qn[3];
        const real vw = 2 * (-z * v[1] + y * v[2] + z * v[3] - x * v[5] - y * v[6] + x * v[7]);
        const real vx = 2 * (y * v[1] + z * v[2] + y * v[3] - 2 * x * v[4] - w * v[5] + z * v[6] + w * v[7] - 2 * x * v[8]);
        const real vy = 2 * (-2 * y * v[0] + x * v[1] + w * v[2] + x * v[3] + z * v[5] - w * v[6] + z * v[7] - 2 * y * v[8]);
        const real vz = 2 * (-2 * z * v[0] - w * v[1] + x * v[2] + w * v[3] - 2 * z * v[4] + y * v[5] + x * v[6] + y * v[7]);
        const real dot = w * vw + x * vx + y * vy + z * vz;
        v_means[3 * i] = a[0], v_means[3 * i + 1] = a[1], v_means[3 * i + 2] = a[2];
        v_quats[4 * i] = (vw - w * dot) / qnorm;
        v_quats[4 * i + 1] = (vx - x * dot) / qnorm;
        v_quats[4 * i + 2] = (vy - y * dot) / qnorm;
        v_quats[4 * i + 3] = (vz - z * dot) / qnorm;
        v_log_scales[3 * i] = vs0, v_log_scales[3 * i + 1] = vs1, v_log_scales[3 * i + 2] = vs2;
        v_logits[i] = a[9];
    }
    // Gaussians that no camera saw get exact zeros (a degenerate quaternion must not leak NaN). A second
    // loop: selecting in the first, gcc sank the quaternion's loads under the condition and then could not
    // vectorize them as masked strided loads. The zeros by a bit mask: gcc compiled the select as a branch
    // per Gaussian, mispredicted on the unordered mix of seen and unseen ones.
    typedef uint32_t bits32 __attribute__((may_alias));  // the floats' bits, read after the float stores above
    bits32* q_bits = reinterpret_cast<bits32*>(v_quats);
    bits32* s_bits = reinterpret_cast<bits32*>(v_log_scales);
#pragma GCC ivdep
    for (int i = 0; i < n; ++i) {
        const uint32_t keep = acc[10 * n + i] != 0.0f ? ~0u : 0u;
        for (int q = 0; q < 4; ++q) q_bits[4 * i + q] &= keep;
        for (int q = 0; q < 3; ++q) s_bits[3 * i + q] &= keep;
    }
}

template <class F>
void by_degree(int degree, F&& f) {
    switch (degree) {
        case 0: f(std::integral_constant<int, 0>{}); break;
        case 1: f(std::integral_constant<int, 1>{}); break;
        case 2: f(std::integral_constant<int, 2>{}); break;
        default: f(std::integral_constant<int, 3>{}); break;
    }
}

// Every camera's outputs ([B, N, ...]) from the float32 parameters and per-Gaussian terms.
void project_forward(int n_cams, int n, int K, int degree, uintptr_t means, uintptr_t quats, uintptr_t scales,
                     uintptr_t opac, uintptr_t r_exts, uintptr_t sh, uintptr_t cams, int width, int height,
                     real near, real eps2d, real alpha_min, uintptr_t means2d, uintptr_t conics, uintptr_t depths,
                     uintptr_t opacities, uintptr_t colors, uintptr_t extents, uintptr_t visible, uintptr_t radii) {
    for (int b = 0; b < n_cams; ++b) {
        const Camera cam(ptr<const double>(cams) + 19 * b, width, height);
        const int64_t o = static_cast<int64_t>(b) * n;
        by_degree(degree, [&](auto d) {
            project_forward_cam<decltype(d)::value>(
                n, K, ptr<const float>(means), ptr<const float>(quats), ptr<const float>(scales),
                ptr<const float>(opac), ptr<const float>(r_exts), ptr<const float>(sh), cam, width, height, near,
                eps2d, alpha_min, ptr<float>(means2d) + 2 * o, ptr<float>(conics) + 3 * o, ptr<float>(depths) + o,
                ptr<float>(opacities) + o, ptr<float>(colors) + 3 * o, ptr<float>(extents) + 2 * o,
                ptr<uint8_t>(visible) + o, ptr<int32_t>(radii) + o);
        });
    }
}

// The parameters' gradients (every entry written, ``v_sh`` included) from the cotangents of the [B, N, ...]
// outputs. Its scratch (per-Gaussian sums over the cameras, the SH rows' inputs) is this thread's own.
void project_backward(int n_cams, int n, int K, int degree, uintptr_t means, uintptr_t quats, uintptr_t scales,
                      uintptr_t opac, uintptr_t sh, uintptr_t cams, int width, int height, real near, real eps2d,
                      uintptr_t visible, uintptr_t v_means2d, uintptr_t v_conics, uintptr_t v_depths,
                      uintptr_t v_opacities, uintptr_t v_colors, uintptr_t v_means, uintptr_t v_quats,
                      uintptr_t v_log_scales, uintptr_t v_logits, uintptr_t v_sh) {
    static thread_local std::vector<float> acc, sh_out;  // [N_ACC][n] sums; [6][n] direction and colors' cotangent
    acc.assign(static_cast<size_t>(n) * N_ACC, 0.0f);
    sh_out.resize(static_cast<size_t>(n) * 6);
    for (int b = 0; b < n_cams; ++b) {
        const Camera cam(ptr<const double>(cams) + 19 * b, width, height);
        const int64_t o = static_cast<int64_t>(b) * n;
        by_degree(degree, [&](auto d) {
            constexpr int D = decltype(d)::value;
            auto f = K == (D + 1) * (D + 1) ? project_backward_cam<D, true> : project_backward_cam<D, false>;
            f(
                n, K, ptr<const float>(means), ptr<const float>(quats), ptr<const float>(scales),
                ptr<const float>(opac), ptr<const float>(sh), cam, near, eps2d, ptr<const uint8_t>(visible) + o,
                ptr<const float>(v_means2d) + 2 * o, ptr<const float>(v_conics) + 3 * o,
                ptr<const float>(v_depths) + o, ptr<const float>(v_opacities) + o, ptr<const float>(v_colors) + 3 * o,
                acc.data(), ptr<float>(v_sh), sh_out.data(), b == 0);
        });
    }
    project_backward_finish(n, ptr<const float>(quats), ptr<const float>(scales), acc.data(),
                            ptr<float>(v_means), ptr<float>(v_quats), ptr<float>(v_log_scales), ptr<float>(v_logits));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "vdm3d's float32 tiled CPU rasterizer (binning, forward, backward) and EWA projection; see cpp.py.";
    auto bytes = [](const auto& v) {  // a copy, for tests: numpy.frombuffer reads it
        return pybind11::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
    };
    pybind11::class_<Bins, std::shared_ptr<Bins>>(m, "Bins")
        .def_property_readonly("offsets", [bytes](const Bins& b) { return bytes(b.offsets); })
        .def_property_readonly("gauss", [bytes](const Bins& b) { return bytes(b.gauss); })
        .def_property_readonly("boxes", [bytes](const Bins& b) { return bytes(b.boxes); });
    m.def("bin", &bin, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("forward", &forward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("backward", &backward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("project_forward", &project_forward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("project_backward", &project_backward, pybind11::call_guard<pybind11::gil_scoped_release>());
}
