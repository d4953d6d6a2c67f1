// Tiled rasterizer of the ``cpp`` backend: forward, analytic backward and the per-Gaussian reduction,
// in float32, written so that gcc auto-vectorizes the pixel loops (see cpp.py for why and how it is
// built). The rules are those of the dense reference (torch_ref.py) and of the numba kernels
// (numba.py), pixel for pixel:
//
//   alpha = min(alpha_max, o exp(-0.5 d^T C d)), skipped below alpha_min; d = pixel centre (+0.5) - mean;
//   a pixel stops at the first Gaussian that would take its transmittance below t_min (that one is
//   not blended); rgb = sum w c + (1 - A) background, depth = sum w z / A (0 where A <= 1e-6).
//
// Layout: every tile is TS x TS pixels; a Gaussian visits only the rows of its alpha >= alpha_min box
// inside the tile, and each row in steps of LANES pixels starting at the box's left edge, so a box of
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

namespace {

constexpr int TS = 16;
constexpr int LANES = 8;
constexpr int STRIDE = TS + LANES;
constexpr int CELLS = TS * STRIDE;
constexpr int N_GRAD = 10;  // per-pair slots: means2d (2), conic (3), color (3), depth (1), opacity (1)

// exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to r^7
// (relative error below 1e-8, under float32's rounding), 2^n from the exponent bits. Written out
// instead of calling expf so that the loops around it vectorize without a vector math library.
inline float exp_nonpos(float x) {
    x = std::max(x, -87.0f);  // 2^n stays a normal float
    const float n = std::floor(x * 1.44269504f + 0.5f);
    float r = x - n * 0.693359375f;  // ln 2 in two parts (Cody-Waite), exact first product
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

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

inline Box tile_box(const Scene& s, int i, int ox, int oy, int tw, int th) {
    const int32_t* b = s.boxes + 4 * static_cast<int64_t>(i);
    return {std::max(b[0], ox) - ox, std::min(b[1], ox + tw - 1) - ox, std::max(b[2], oy) - oy,
            std::min(b[3], oy + th - 1) - oy};
}

struct ForwardTile {
    alignas(64) float T[CELLS];
    alignas(64) float r[CELLS];
    alignas(64) float g[CELLS];
    alignas(64) float b[CELLS];
    alignas(64) float z[CELLS];
    alignas(64) float w[CELLS];
    alignas(64) float live[CELLS];  // 1 until the pixel's walk ends
    alignas(64) int32_t stop[CELLS];  // one past the position of the last blended Gaussian
};

void forward_tile(const Scene& s, int t, const float* bg, float* out_rgb, float* out_depth, float* out_alpha,
                  float* T_final, int32_t* last) {
    const int64_t start = s.offsets[t], end = s.offsets[t + 1];
    const int ox = (t % s.tiles_x) * TS, oy = (t / s.tiles_x) * TS;
    const int tw = std::min(TS, s.width - ox), th = std::min(TS, s.height - oy);
    ForwardTile st;
    for (int c = 0; c < CELLS; ++c) {
        st.T[c] = 1.0f;
        st.r[c] = st.g[c] = st.b[c] = st.z[c] = st.w[c] = 0.0f;
        st.live[c] = 1.0f;
        st.stop[c] = static_cast<int32_t>(start);
    }
    int row_live[TS];
    for (int ly = 0; ly < TS; ++ly) row_live[ly] = ly < th ? tw : 0;
    int n_live = tw * th;
    const float amax = s.alpha_max, amin = s.alpha_min, tmin = s.t_min;
    for (int64_t k = start; k < end && n_live > 0; ++k) {
        const int i = s.gauss[k];
        const Box bx = tile_box(s, i, ox, oy, tw, th);
        const float mx = s.means2d[2 * i] - (ox + 0.5f), my = s.means2d[2 * i + 1] - (oy + 0.5f);
        const float ca = s.conics[3 * i], cb = s.conics[3 * i + 1], cc = s.conics[3 * i + 2];
        const float o = s.opacities[i];
        const float c0 = s.colors[3 * i], c1 = s.colors[3 * i + 1], c2 = s.colors[3 * i + 2], zi = s.depths[i];
        const int32_t next = static_cast<int32_t>(k + 1);
        for (int ly = bx.y0; ly <= bx.y1; ++ly) {
            if (row_live[ly] == 0) continue;
            const float dy = ly - my;
            const float bdy = 2.0f * cb * dy, cdy2 = cc * dy * dy;
            int ended = 0;
            for (int xs = bx.x0; xs <= bx.x1; xs += LANES) {
                const int c = ly * STRIDE + xs, lim = bx.x1 - xs;
                float* __restrict__ Tp = st.T + c;
                float* __restrict__ rp = st.r + c;
                float* __restrict__ gp = st.g + c;
                float* __restrict__ bp = st.b + c;
                float* __restrict__ zp = st.z + c;
                float* __restrict__ wp = st.w + c;
                float* __restrict__ lp = st.live + c;
                int32_t* __restrict__ sp = st.stop + c;
                for (int j = 0; j < LANES; ++j) {
                    const float dx = static_cast<float>(xs + j) - mx;
                    const float power = dx * (ca * dx + bdy) + cdy2;
                    const float alpha = std::min(amax, o * exp_nonpos(-0.5f * power));
                    const float Tc = Tp[j];
                    const float Tn = Tc * (1.0f - alpha);
                    const bool valid = (j <= lim) & (alpha >= amin) & (lp[j] != 0.0f);
                    const bool ends = valid & (Tn < tmin);
                    const bool blend = valid & !ends;
                    const float wgt = blend ? alpha * Tc : 0.0f;
                    rp[j] += wgt * c0;
                    gp[j] += wgt * c1;
                    bp[j] += wgt * c2;
                    zp[j] += wgt * zi;
                    wp[j] += wgt;
                    Tp[j] = blend ? Tn : Tc;
                    sp[j] = blend ? next : sp[j];
                    lp[j] = ends ? 0.0f : lp[j];
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
            const float a = st.w[c], rest = 1.0f - a;
            out_rgb[3 * p] = st.r[c] + rest * bg[0];
            out_rgb[3 * p + 1] = st.g[c] + rest * bg[1];
            out_rgb[3 * p + 2] = st.b[c] + rest * bg[2];
            out_depth[p] = a > 1e-6f ? st.z[c] / a : 0.0f;
            out_alpha[p] = a;
            T_final[p] = st.T[c];
            last[p] = st.stop[c];
        }
    }
}

struct BackwardTile {
    alignas(64) float T[CELLS];  // after the current Gaussian, walking back
    alignas(64) float S[CELLS];  // sum of g_j w_j over the blended Gaussians behind the current one
    alignas(64) float vr[CELLS];
    alignas(64) float vg[CELLS];
    alignas(64) float vb[CELLS];
    alignas(64) float vz[CELLS];  // cotangent of sum w z
    alignas(64) float va[CELLS];  // cotangent of sum w (alpha), after the finish's chain rule
    alignas(64) int32_t stop[CELLS];
};

void backward_tile(const Scene& s, int t, const float* bg, const float* alpha_img, const float* depth_img,
                   const float* T_final, const int32_t* last, const float* v_rgb, const float* v_depth,
                   const float* v_alpha, float* v_pairs) {
    const int64_t start = s.offsets[t], end_all = s.offsets[t + 1];
    const int ox = (t % s.tiles_x) * TS, oy = (t / s.tiles_x) * TS;
    const int tw = std::min(TS, s.width - ox), th = std::min(TS, s.height - oy);
    BackwardTile st;
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
        const int i = s.gauss[k];
        const Box bx = tile_box(s, i, ox, oy, tw, th);
        const float mx = s.means2d[2 * i] - (ox + 0.5f), my = s.means2d[2 * i + 1] - (oy + 0.5f);
        const float ca = s.conics[3 * i], cb = s.conics[3 * i + 1], cc = s.conics[3 * i + 2];
        const float o = s.opacities[i];
        const float c0 = s.colors[3 * i], c1 = s.colors[3 * i + 1], c2 = s.colors[3 * i + 2], zi = s.depths[i];
        // Per-lane sums, reduced once per pair: vp dx, vp dy, vp dx^2, vp dx dy, vp dy^2 (vp = dL/dpower),
        // w v_r, w v_g, w v_b, w v_z, dL/dalpha G.
        alignas(64) float acc[N_GRAD][LANES] = {};
        const int32_t kk = static_cast<int32_t>(k);
        for (int ly = bx.y0; ly <= bx.y1; ++ly) {
            if (k >= row_end[ly]) continue;  // every pixel of this row ended in front of this Gaussian
            const float dy = ly - my;
            const float bdy = 2.0f * cb * dy, cdy2 = cc * dy * dy;
            for (int xs = bx.x0; xs <= bx.x1; xs += LANES) {
                const int c = ly * STRIDE + xs, lim = bx.x1 - xs;
                float* __restrict__ Tp = st.T + c;
                float* __restrict__ Sp = st.S + c;
                const float* __restrict__ rp = st.vr + c;
                const float* __restrict__ gp = st.vg + c;
                const float* __restrict__ bp = st.vb + c;
                const float* __restrict__ zp = st.vz + c;
                const float* __restrict__ ap = st.va + c;
                const int32_t* __restrict__ sp = st.stop + c;
                for (int j = 0; j < LANES; ++j) {
                    const float dx = static_cast<float>(xs + j) - mx;
                    const float power = dx * (ca * dx + bdy) + cdy2;
                    const float G = exp_nonpos(-0.5f * power);
                    const float raw = o * G;
                    const float alpha = std::min(amax, raw);
                    const bool valid = (j <= lim) & (kk < sp[j]) & (alpha >= amin);
                    const float inv = 1.0f / (1.0f - alpha);
                    const float Tc = Tp[j], Sc = Sp[j];
                    const float Tb = Tc * inv;
                    const float w = alpha * Tb;
                    const float gw = rp[j] * c0 + gp[j] * c1 + bp[j] * c2 + zp[j] * zi + ap[j];
                    const float v_a = gw * Tb - Sc * inv;
                    Sp[j] = valid ? Sc + gw * w : Sc;
                    Tp[j] = valid ? Tb : Tc;
                    const float vmask = valid ? 1.0f : 0.0f;
                    const float wv = vmask * w;
                    acc[5][j] += wv * rp[j];
                    acc[6][j] += wv * gp[j];
                    acc[7][j] += wv * bp[j];
                    acc[8][j] += wv * zp[j];
                    const bool grad = valid & (raw <= amax);  // clamped: no gradient through alpha
                    const float vp = (grad ? -0.5f : 0.0f) * alpha * v_a;
                    const float gm = grad ? 1.0f : 0.0f;
                    acc[9][j] += gm * v_a * G;
                    const float vpdx = vp * dx;
                    acc[0][j] += vpdx;
                    acc[1][j] += vp * dy;
                    acc[2][j] += vpdx * dx;
                    acc[3][j] += vpdx * dy;
                    acc[4][j] += vp * dy * dy;
                }
            }
        }
        float sum[N_GRAD];
        for (int q = 0; q < N_GRAD; ++q) {
            float v = 0.0f;
            for (int j = 0; j < LANES; ++j) v += acc[q][j];
            sum[q] = v;
        }
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

Scene make_scene(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
                 uintptr_t offsets, uintptr_t gauss, uintptr_t boxes, int width, int height, int tiles_x,
                 float alpha_max, float alpha_min, float t_min) {
    return {reinterpret_cast<const float*>(means2d), reinterpret_cast<const float*>(conics),
            reinterpret_cast<const float*>(opacities), reinterpret_cast<const float*>(colors),
            reinterpret_cast<const float*>(depths), reinterpret_cast<const int64_t*>(offsets),
            reinterpret_cast<const int32_t*>(gauss), reinterpret_cast<const int32_t*>(boxes),
            width, height, tiles_x, alpha_max, alpha_min, t_min};
}

template <class T>
T* ptr(uintptr_t a) {
    return reinterpret_cast<T*>(a);
}

void forward(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
             uintptr_t offsets, uintptr_t gauss, uintptr_t boxes, int width, int height, int tiles_x, int n_tiles,
             float alpha_max, float alpha_min, float t_min, uintptr_t background, uintptr_t out_rgb,
             uintptr_t out_depth, uintptr_t out_alpha, uintptr_t T_final, uintptr_t last, int threads) {
    const Scene s = make_scene(means2d, conics, opacities, colors, depths, offsets, gauss, boxes, width, height,
                               tiles_x, alpha_max, alpha_min, t_min);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (int t = 0; t < n_tiles; ++t)
        forward_tile(s, t, ptr<const float>(background), ptr<float>(out_rgb), ptr<float>(out_depth),
                     ptr<float>(out_alpha), ptr<float>(T_final), ptr<int32_t>(last));
}

void backward(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
              uintptr_t offsets, uintptr_t gauss, uintptr_t boxes, int width, int height, int tiles_x, int n_tiles,
              float alpha_max, float alpha_min, float t_min, uintptr_t background, uintptr_t alpha_img,
              uintptr_t depth_img, uintptr_t T_final, uintptr_t last, uintptr_t v_rgb, uintptr_t v_depth,
              uintptr_t v_alpha, uintptr_t v_pairs, int threads) {
    const Scene s = make_scene(means2d, conics, opacities, colors, depths, offsets, gauss, boxes, width, height,
                               tiles_x, alpha_max, alpha_min, t_min);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (int t = 0; t < n_tiles; ++t)
        backward_tile(s, t, ptr<const float>(background), ptr<const float>(alpha_img), ptr<const float>(depth_img),
                      ptr<const float>(T_final), ptr<const int32_t>(last), ptr<const float>(v_rgb),
                      ptr<const float>(v_depth), ptr<const float>(v_alpha), ptr<float>(v_pairs));
}

// Add the per-pair gradients up per Gaussian, in pair order (deterministic, whatever the thread count),
// into outputs that it zeroes first.
void reduce_pairs(uintptr_t gauss_addr, int64_t pairs, int64_t n, uintptr_t v_pairs_addr, uintptr_t v_means2d,
                  uintptr_t v_conics, uintptr_t v_opacities, uintptr_t v_colors, uintptr_t v_depths) {
    const int32_t* gauss = ptr<const int32_t>(gauss_addr);
    const float* vp = ptr<const float>(v_pairs_addr);
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
        const int64_t i = gauss[k];
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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "vdm3d's float32 tiled CPU rasterizer (forward, backward, pair reduction); see cpp.py.";
    m.attr("TILE") = TS;
    m.def("forward", &forward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("backward", &backward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("reduce_pairs", &reduce_pairs, pybind11::call_guard<pybind11::gil_scoped_release>());
}
