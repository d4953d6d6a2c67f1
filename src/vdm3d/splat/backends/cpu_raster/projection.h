// The EWA projection's shared part: the camera, the covariance, the screen-space terms and the SH basis
// that the forward and the backward both compute, and the backward's per-camera kernel, a template over
// the SH degree and whether the coefficient count K is the degree's, instantiated seven times (degree 3
// only for its own K = 16; projection.cpp's project_backward says why). Those instances are most of the
// module's code at -O3 (see cpp.py), so they are compiled in several translation units
// (projection_backward_*.cpp) in parallel; the ``extern template`` declarations at the end keep
// projection.cpp, which calls them, from compiling them again.

#pragma once

#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

// hidden as in kernels.h: a reopened namespace does not take that attribute over, and without it the
// instances below were exported from the module (called through the PLT)
namespace vdm3d_raster __attribute__((visibility("hidden"))) {

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

// The parameters of an instance of project_backward_cam, for its explicit instantiations.
#define VDM3D_PROJECT_BACKWARD_CAM(D, K_IS_NC)                                                             \
    void project_backward_cam<D, K_IS_NC>(                                                                 \
        int n, int K_arg, const float* means, const float* quats, const float* scales, const float* opac,   \
        const float* sh, const Camera cam_arg, real near, real eps2d, const uint8_t* visible,               \
        const float* v_means2d, const float* v_conics, const float* v_depths, const float* v_opacities,     \
        const float* v_colors, float* acc, float* v_sh, float* sh_out, bool first)

extern template VDM3D_PROJECT_BACKWARD_CAM(0, true);
extern template VDM3D_PROJECT_BACKWARD_CAM(0, false);
extern template VDM3D_PROJECT_BACKWARD_CAM(1, true);
extern template VDM3D_PROJECT_BACKWARD_CAM(1, false);
extern template VDM3D_PROJECT_BACKWARD_CAM(2, true);
extern template VDM3D_PROJECT_BACKWARD_CAM(2, false);
extern template VDM3D_PROJECT_BACKWARD_CAM(3, true);

}  // namespace vdm3d_raster
