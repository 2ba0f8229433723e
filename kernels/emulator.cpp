// CPU entry point of the emulated tile kernel: compiles tile_kernel.cu through cuda_emu.h and
// exposes one C function for ctypes (backend/renderers/emulated_renderer.py).
#include <mutex>

#include "tile_kernel.cu"

namespace {
std::mutex launch_mutex;  // the emulator's scheduler and built-in variables are process-wide
std::string last_error;
}  // namespace

extern "C" const char* nf_emulator_last_error() { return last_error.c_str(); }

extern "C" int nf_emulator_slot_stride() { return nf::kSlotStride; }

// Same arguments as nf_tile_kernel, then the emulator's thread order (0 increasing, 1 decreasing);
// launches the grid the host would. Returns 0, or 1 with nf_emulator_last_error() saying why.
extern "C" int nf_emulator_render(const float* planes, const float* filtered, int height, int width,
                                  const float* lights, int n_lights, float camera_x, float camera_y, float camera_z, const float* background,
                                  const int* lut, const nf::weight_t* slots, const float* feature_mean,
                                  const float* feature_std, float* out, int reverse_thread_order) {
    std::lock_guard<std::mutex> lock(launch_mutex);
    const dim3 grid((width + NF_TILE - 1) / NF_TILE, (height + NF_TILE - 1) / NF_TILE);
    try {
        cuda_emu::launch(grid, dim3(nf::kThreads), [&] {
            nf_tile_kernel(planes, filtered, height, width, lights, n_lights, camera_x, camera_y, camera_z,
                           background, lut, slots, feature_mean, feature_std, out);
        }, reverse_thread_order != 0);
    } catch (const std::exception& e) {
        last_error = e.what();
        return 1;
    }
    return 0;
}
