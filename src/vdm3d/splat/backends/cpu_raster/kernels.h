// What module.cpp binds: the entry points of the kernels, defined in raster.cpp (binning, rasterizer) and
// projection.cpp (EWA projection), and the tile lists they pass between them. The kernels are split over
// several translation units so that a first build compiles them in parallel (see cpp.py's SOURCES); every
// name here is hidden (not exported from the module's shared library, so calls need no PLT).

#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace vdm3d_raster __attribute__((visibility("hidden"))) {

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

// The entry points (their rules where they are defined): raster.cpp's binning and rasterizer, forward and
// backward, then projection.cpp's EWA projection, forward and backward.
std::shared_ptr<Bins> bin(uintptr_t means2d_addr, uintptr_t extents_addr, uintptr_t depths_addr, uintptr_t visible_addr,
                          int n, int width, int height, int tile);

void forward(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
             const Bins& bins, float alpha_max, float alpha_min, float t_min, uintptr_t background, uintptr_t out_rgb,
             uintptr_t out_depth, uintptr_t out_alpha, uintptr_t T_final, uintptr_t last, int threads);

void backward(uintptr_t means2d, uintptr_t conics, uintptr_t opacities, uintptr_t colors, uintptr_t depths,
              const Bins& bins, float alpha_max, float alpha_min, float t_min, uintptr_t background,
              uintptr_t alpha_img, uintptr_t depth_img, uintptr_t T_final, uintptr_t last, uintptr_t v_rgb,
              uintptr_t v_depth, uintptr_t v_alpha, int n, uintptr_t v_means2d, uintptr_t v_conics,
              uintptr_t v_opacities, uintptr_t v_colors, uintptr_t v_depths, int threads);

void project_forward(int n_cams, int n, int K, int degree, uintptr_t means, uintptr_t quats, uintptr_t scales,
                     uintptr_t opac, uintptr_t r_exts, uintptr_t sh, uintptr_t cams, int width, int height,
                     float near, float eps2d, float alpha_min, uintptr_t means2d, uintptr_t conics, uintptr_t depths,
                     uintptr_t opacities, uintptr_t colors, uintptr_t extents, uintptr_t visible, uintptr_t radii);

void project_backward(int n_cams, int n, int K, int degree, uintptr_t means, uintptr_t quats, uintptr_t scales,
                      uintptr_t opac, uintptr_t sh, uintptr_t cams, int width, int height, float near, float eps2d,
                      uintptr_t visible, uintptr_t v_means2d, uintptr_t v_conics, uintptr_t v_depths,
                      uintptr_t v_opacities, uintptr_t v_colors, uintptr_t v_means, uintptr_t v_quats,
                      uintptr_t v_log_scales, uintptr_t v_logits, uintptr_t v_sh);

}  // namespace vdm3d_raster
