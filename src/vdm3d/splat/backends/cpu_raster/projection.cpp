// The EWA projection's forward, and the backward's loop over cameras and its per-Gaussian finish; the
// backward's per-camera kernels are compiled in projection_backward_*.cpp (see projection.h).

#include "projection.h"

#include <stdexcept>
#include <type_traits>
#include <vector>

namespace vdm3d_raster {
namespace {

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

}  // namespace

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
    // Degree 3 has no instance for another K: the Python side holds 1, 4, 9 or 16 coefficients per channel and
    // renders at most their degree, so degree 3 always comes with K = 16 (that instance cost every first build
    // 8-9 CPU-s, for no caller).
    if (degree >= 3 && K != 16)
        throw std::invalid_argument("project_backward: SH degree 3 needs K = 16 coefficients per channel");
    static thread_local std::vector<float> acc, sh_out;  // [N_ACC][n] sums; [6][n] direction and colors' cotangent
    acc.assign(static_cast<size_t>(n) * N_ACC, 0.0f);
    sh_out.resize(static_cast<size_t>(n) * 6);
    for (int b = 0; b < n_cams; ++b) {
        const Camera cam(ptr<const double>(cams) + 19 * b, width, height);
        const int64_t o = static_cast<int64_t>(b) * n;
        by_degree(degree, [&](auto d) {
            constexpr int D = decltype(d)::value;
            // <D, D == 3>: degree 3 has the K = 16 instance only (see above), whose address alone is taken here
            auto f = K == (D + 1) * (D + 1) ? project_backward_cam<D, true> : project_backward_cam<D, D == 3>;
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

}  // namespace vdm3d_raster
