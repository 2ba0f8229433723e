// The tile kernel: one thread block per T x T screen tile, one thread per pixel
// (docs/formats/gbuffer.md is the spec; backend/renderers/torch_renderer.py is its twin).
//
// A block (1) ORs its covered pixels' UV bins into the tile key, (2) looks the key up in the bank's
// table, (3) copies that slot's packed network into shared memory, then every thread (4) computes
// its pixel's 23 features per light (18 straight from the G-buffer planes, 5 read from the
// pre-filtered planes the host made, backend/prefilter.py), (5) runs the MLP with its
// activations in registers, weights broadcast from shared memory, and (6) sums the lights and
// writes linear RGB plus alpha over the background. No pixel reads a neighbour's shading inputs:
// what subsurface scattering brings from around the pixel is in the pre-filtered planes, and the
// only sync is inside the block. With a border blend (NF_BLEND) the block also ORs its eight
// neighbouring tiles' keys, and its edge pixels run those tiles' networks on their own features.
//
// The bank's shape is fixed at compile time (backend/kernel_build.py passes it), so every layer
// loop unrolls and activations stay in registers:
//   NF_LAYERS          layer widths, e.g. 23,32,32,3 (first 23 = features, last 3 = rgb)
//   NF_TILE            tile edge in pixels (blockDim.x = NF_TILE * NF_TILE)
//   NF_BINS            UV bins per axis of the tile key
//   NF_SOFTPLUS        1: softplus output activation, 0: exp(min(y, 15))
//   NF_WEIGHTS_HALF    1: weights stored and loaded as fp16 (math stays fp32)
//   NF_MIN_BLOCKS      resident blocks per SM asked of ptxas; 1 lets widths up to 64 stay in
//                      registers without spills on sm_75..sm_90 (2 halves the register budget)
//   NF_BLEND           border blend in pixels (gbuffer.md section 4b; 0: off): a pixel this close to
//                      its tile's edge also runs the neighbouring tile's network and mixes the two,
//                      so neighbouring specialists meet without a step. Those networks are read
//                      from global memory (L1/L2), not shared: only edge pixels need them.
//
// The same file compiles for the CPU through kernels/cuda_emu.h (kernels/emulator.cpp).

#ifdef __CUDACC__
#if NF_WEIGHTS_HALF
#include <cuda_fp16.h>
#endif
#else
#include "cuda_emu.h"
#endif

#ifndef NF_LAYERS
#error "define NF_LAYERS, e.g. -DNF_LAYERS=18,32,32,3"
#endif
#ifndef NF_TILE
#define NF_TILE 16
#endif
#ifndef NF_BINS
#define NF_BINS 8
#endif
#ifndef NF_SOFTPLUS
#define NF_SOFTPLUS 0
#endif
#ifndef NF_WEIGHTS_HALF
#define NF_WEIGHTS_HALF 0
#endif
#ifndef NF_MIN_BLOCKS
#define NF_MIN_BLOCKS 1
#endif
#ifndef NF_BLEND
#define NF_BLEND 0
#endif

namespace nf {

#if NF_WEIGHTS_HALF
typedef __half weight_t;
__device__ __forceinline__ float to_float(weight_t w) { return __half2float(w); }
#else
typedef float weight_t;
__device__ __forceinline__ float to_float(weight_t w) { return w; }
#endif

constexpr int kThreads = NF_TILE * NF_TILE;
constexpr int kFeatures = 23;
constexpr int kFixedPlanes = 12;  // mask, u, v, normal xyz, position xyz, albedo rgb
constexpr int kFilteredFixed = 3;     // pre-filtered planes: albedo rgb, then per light
constexpr int kFilteredPerLight = 2;  // visibility at the near and the far scattering radius
constexpr int kLightFields = 8;   // position xyz, colour rgb, power, radius
constexpr float kFourPiSquared = 39.47841760435743f;

// Packed parameters of a slot: per layer W [in, out] row-major, then b [out] (docs/formats/bank.md).
template <int IN, int OUT, int... REST>
struct Packed {
    static constexpr int size = IN * OUT + OUT + Packed<OUT, REST...>::size;
};
template <int IN, int OUT>
struct Packed<IN, OUT> {
    static constexpr int size = IN * OUT + OUT;
};

template <int FIRST, int... REST>
struct Shape {
    static constexpr int inputs = FIRST;
};

constexpr int kSlotParams = Packed<NF_LAYERS>::size;
// Rows are padded to 16 bytes by the host so a slot copies as uint4 vectors.
constexpr int kPerVector = 16 / sizeof(weight_t);
constexpr int kSlotStride = (kSlotParams + kPerVector - 1) / kPerVector * kPerVector;
constexpr int kSlotVectors = kSlotStride / kPerVector;
static_assert(kSlotStride * sizeof(weight_t) <= 32768, "one network must fit in 32 KB of shared memory");
static_assert(Shape<NF_LAYERS>::inputs == kFeatures, "the first layer must take the 23 features");

__device__ __forceinline__ float output_activation(float y) {
#if NF_SOFTPLUS
    return fmaxf(y, 0.0f) + log1pf(expf(-fabsf(y)));
#else
    return expf(fminf(y, 15.0f));
#endif
}

// y = x @ W + b, with W and b read from shared memory (every thread reads the same address: broadcast).
template <int IN, int OUT>
__device__ __forceinline__ void dense(const weight_t* __restrict__ w, const float (&x)[IN], float (&y)[OUT]) {
#pragma unroll
    for (int k = 0; k < OUT; ++k) y[k] = to_float(w[IN * OUT + k]);
#pragma unroll
    for (int j = 0; j < IN; ++j) {
#pragma unroll
        for (int k = 0; k < OUT; ++k) y[k] = fmaf(x[j], to_float(w[j * OUT + k]), y[k]);
    }
}

// Runs the remaining layers IN -> OUT -> REST...; ReLU between layers, output activation at the end.
template <int IN, int OUT, int... REST>
__device__ __forceinline__ void mlp(const weight_t* __restrict__ w, const float (&x)[IN], float (&rgb)[3]) {
    float y[OUT];
    dense<IN, OUT>(w, x, y);
    if constexpr (sizeof...(REST) == 0) {
        static_assert(OUT == 3, "the last layer must output rgb");
#pragma unroll
        for (int k = 0; k < 3; ++k) rgb[k] = output_activation(y[k]);
    } else {
#pragma unroll
        for (int k = 0; k < OUT; ++k) y[k] = fmaxf(y[k], 0.0f);
        mlp<OUT, REST...>(w + IN * OUT + OUT, y, rgb);
    }
}

struct Vec3 {
    float x, y, z;
};
__device__ __forceinline__ Vec3 sub(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
__device__ __forceinline__ float dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
__device__ __forceinline__ float length(Vec3 a) { return sqrtf(dot(a, a)); }
__device__ __forceinline__ Vec3 divide(Vec3 a, float s) { return {a.x / s, a.y / s, a.z / s}; }
__device__ __forceinline__ Vec3 normalize(Vec3 a) { return divide(a, fmaxf(length(a), 1e-12f)); }

// UV bin of the tile key: clamp to [0, 1], u == 1 lands in the last bin (gbuffer.md section 3).
__device__ __forceinline__ int uv_bin(float t) {
    const float clamped = fminf(fmaxf(t, 0.0f), 1.0f);
    return min(static_cast<int>(floorf(clamped * static_cast<float>(NF_BINS))), NF_BINS - 1);
}

// A covered pixel's bits of the tile key: its u bin's and its v bin's (g points at its mask plane).
__device__ __forceinline__ int key_bits(const float* __restrict__ g, size_t plane_size) {
    return (1 << uv_bin(__ldg(g + plane_size))) | (1 << (NF_BINS + uv_bin(__ldg(g + 2 * plane_size))));
}

// Border blend (gbuffer.md section 4b): the weight of the neighbouring tile before (side 0) or after
// (side 1) along one axis, for in-tile coordinate c; 1/2 on the edge itself, 0 from NF_BLEND px in.
__device__ __forceinline__ float blend_weight(int c, int side) {
    const float distance = side == 0 ? static_cast<float>(c) + 0.5f : static_cast<float>(NF_TILE - c) - 0.5f;
    return fmaxf(0.0f, 0.5f * (1.0f - distance / static_cast<float>(NF_BLEND)));
}

// The 23 features of gbuffer.md section 2 for the pixel at g (plane stride plane_size) and light k,
// whose pre-filtered planes start at f, and the factor rgb * P / (4 pi^2 d^2) its network output is
// multiplied by.
__device__ __forceinline__ void pixel_features(const float* __restrict__ g, const float* __restrict__ f,
                                               size_t plane_size, const float* __restrict__ light, int k,
                                               float camera_x, float camera_y, float camera_z,
                                               float (&x)[kFeatures], float (&factor)[3]) {
    const float* light_pass = g + (kFixedPlanes + 3 * k) * plane_size;
    const float* wide_visibility = f + (kFilteredFixed + kFilteredPerLight * k) * plane_size;
    const Vec3 normal = normalize({__ldg(g + 3 * plane_size), __ldg(g + 4 * plane_size), __ldg(g + 5 * plane_size)});
    const Vec3 position = {__ldg(g + 6 * plane_size), __ldg(g + 7 * plane_size), __ldg(g + 8 * plane_size)};
    const Vec3 view = normalize(sub({camera_x, camera_y, camera_z}, position));
    const Vec3 to_light = sub({__ldg(light), __ldg(light + 1), __ldg(light + 2)}, position);
    const Vec3 colour = {__ldg(light + 3), __ldg(light + 4), __ldg(light + 5)};
    const float distance = fmaxf(length(to_light), 1e-6f);
    const Vec3 l = divide(to_light, distance);
    const Vec3 h = normalize({l.x + view.x, l.y + view.y, l.z + view.z});
    const float light_scale = __ldg(light + 6) / (kFourPiSquared * distance * distance);
    const float pass_sum = __ldg(light_pass) + __ldg(light_pass + plane_size) + __ldg(light_pass + 2 * plane_size);
    const float visibility = pass_sum / fmaxf((colour.x + colour.y + colour.z) * light_scale, 1e-12f);
    const float values[kFeatures] = {
        __ldg(g + plane_size), __ldg(g + 2 * plane_size),
        normal.x, normal.y, normal.z,
        view.x, view.y, view.z,
        l.x, l.y, l.z,
        dot(normal, l), dot(normal, view), dot(normal, h),
        visibility,
        __ldg(g + 9 * plane_size), __ldg(g + 10 * plane_size), __ldg(g + 11 * plane_size),
        __ldg(wide_visibility), __ldg(wide_visibility + plane_size),
        __ldg(f), __ldg(f + plane_size), __ldg(f + 2 * plane_size)};
#pragma unroll
    for (int j = 0; j < kFeatures; ++j) x[j] = values[j];
    factor[0] = colour.x * light_scale;
    factor[1] = colour.y * light_scale;
    factor[2] = colour.z * light_scale;
}

}  // namespace nf

// planes [12 + 3L, H, W], filtered [3 + 2L, H, W], lights [L, 8], background [3, H, W] or null,
// lut [4^B] int32, slots [S, kSlotStride], feature_mean/std [23], out [H, W, 4]; all float32 unless
// said otherwise.
extern "C" __global__ void __launch_bounds__(nf::kThreads, NF_MIN_BLOCKS)
nf_tile_kernel(const float* __restrict__ planes, const float* __restrict__ filtered, int height, int width,
               const float* __restrict__ lights, int n_lights,
               float camera_x, float camera_y, float camera_z,
               const float* __restrict__ background,
               const int* __restrict__ lut,
               const nf::weight_t* __restrict__ slots,
               const float* __restrict__ feature_mean, const float* __restrict__ feature_std,
               float* __restrict__ out) {
    using namespace nf;
    __shared__ __align__(16) weight_t s_weights[kSlotStride];
    __shared__ float s_mean[kFeatures];
    __shared__ float s_std[kFeatures];
    __shared__ int s_key;

    const int tid = threadIdx.x;
    const int px = blockIdx.x * NF_TILE + tid % NF_TILE;
    const int py = blockIdx.y * NF_TILE + tid / NF_TILE;
    const bool inside = px < width && py < height;
    const size_t plane_size = static_cast<size_t>(height) * width;
    const size_t pixel = static_cast<size_t>(py) * width + px;
    const float* g = planes + pixel;

    // 1. Tile key: OR of the covered pixels' u and v bin bits (with NF_BLEND, the 8 neighbouring
    // tiles' keys too, neighbour n = 3 (dy + 1) + dx + 1; 0 outside the frame).
    if (tid == 0) s_key = 0;
#if NF_BLEND
    __shared__ int s_neighbour_key[9];
    if (tid < 9) s_neighbour_key[tid] = 0;
#endif
    __syncthreads();
    const bool covered = inside && __ldg(g) > 0.5f;
    if (covered) atomicOr(&s_key, key_bits(g, plane_size));
#if NF_BLEND
    for (int n = 0; n < 9; ++n) {
        const int qx = px + (n % 3 - 1) * NF_TILE, qy = py + (n / 3 - 1) * NF_TILE;  // this thread's pixel there
        if (n == 4 || qx < 0 || qy < 0 || qx >= width || qy >= height) continue;
        const float* q = planes + static_cast<size_t>(qy) * width + qx;
        if (__ldg(q) > 0.5f) atomicOr(&s_neighbour_key[n], key_bits(q, plane_size));
    }
#endif
    __syncthreads();
    const int key = s_key;

    // 2. Slot; key 0 (no covered pixel) is not shaded.
    const int slot = key == 0 ? -1 : __ldg(lut + key);
    Vec3 background_rgb = {0.0f, 0.0f, 0.0f};
    if (inside && background != nullptr) {
        background_rgb = {__ldg(background + pixel), __ldg(background + plane_size + pixel),
                          __ldg(background + 2 * plane_size + pixel)};
    }
    float4* out_pixel = reinterpret_cast<float4*>(out) + pixel;
    if (slot < 0) {  // block-uniform: no thread waits at the barrier below
        if (inside) *out_pixel = make_float4(background_rgb.x, background_rgb.y, background_rgb.z, 0.0f);
        return;
    }

    // 3. The slot's network and the feature normalisation into shared memory.
    const uint4* source = reinterpret_cast<const uint4*>(slots + static_cast<size_t>(slot) * kSlotStride);
    uint4* target = reinterpret_cast<uint4*>(s_weights);
    for (int i = tid; i < kSlotVectors; i += kThreads) target[i] = __ldg(source + i);
    if (tid < kFeatures) {
        s_mean[tid] = __ldg(feature_mean + tid);
        s_std[tid] = __ldg(feature_std + tid);
    }
    __syncthreads();
    if (!inside) return;
    if (!covered) {
        *out_pixel = make_float4(background_rgb.x, background_rgb.y, background_rgb.z, 0.0f);
        return;
    }

#if NF_BLEND
    // The neighbours whose network this pixel mixes in. With a band of at most half a tile a pixel is
    // near one edge per axis at most, so three neighbours at most: across its x edge (a), its y edge
    // (b) and their corner (c), each weighted by the product of the two axes' weights. A neighbour
    // that is empty, outside the frame or of the same slot mixes nothing in; what the neighbours do
    // not take stays with this tile's network.
    const int ix = tid % NF_TILE, iy = tid / NF_TILE;
    const int side_x = ix < NF_TILE / 2 ? 0 : 1, side_y = iy < NF_TILE / 2 ? 0 : 1;
    const float edge_x = blend_weight(ix, side_x), edge_y = blend_weight(iy, side_y);
    const int dx = 2 * side_x - 1, dy = 2 * side_y - 1;
    auto neighbour = [&](int n_dy, int n_dx, float weight, int& other_slot) {
        const int neighbour_key = s_neighbour_key[3 * (n_dy + 1) + n_dx + 1];
        const int other = neighbour_key == 0 ? -1 : __ldg(lut + neighbour_key);
        const bool used = weight > 0.0f && other >= 0 && other != slot;
        other_slot = used ? other : -1;
        return used ? weight : 0.0f;
    };
    int slot_a, slot_b, slot_c;
    const float weight_a = neighbour(0, dx, (1.0f - edge_y) * edge_x, slot_a);
    const float weight_b = neighbour(dy, 0, edge_y * (1.0f - edge_x), slot_b);
    const float weight_c = neighbour(dy, dx, edge_y * edge_x, slot_c);
    const float own_weight = 1.0f - weight_a - weight_b - weight_c;
#endif

    // 4-6. Features per light (a further light re-reads the pixel's planes from L1), MLP, sum over lights.
    float radiance[3] = {0.0f, 0.0f, 0.0f};
    for (int k = 0; k < n_lights; ++k) {
        float x[kFeatures];
        float factor[3];  // rgb * light_scale: what the network's output is multiplied by
        pixel_features(g, filtered + pixel, plane_size, lights + k * kLightFields, k, camera_x, camera_y, camera_z,
                       x, factor);
#pragma unroll
        for (int j = 0; j < kFeatures; ++j) x[j] = (x[j] - s_mean[j]) / s_std[j];
        float f[3];
        mlp<NF_LAYERS>(s_weights, x, f);
#if NF_BLEND
#pragma unroll
        for (int c = 0; c < 3; ++c) f[c] *= own_weight;
#pragma unroll 1
        for (int m = 0; m < 3; ++m) {  // not unrolled: one more copy of the MLP's code, not three
            const int other = m == 0 ? slot_a : m == 1 ? slot_b : slot_c;
            const float weight = m == 0 ? weight_a : m == 1 ? weight_b : weight_c;
            if (other < 0) continue;
            float f_other[3];
            mlp<NF_LAYERS>(slots + static_cast<size_t>(other) * kSlotStride, x, f_other);
#pragma unroll
            for (int c = 0; c < 3; ++c) f[c] = fmaf(weight, f_other[c], f[c]);
        }
#endif
#pragma unroll
        for (int c = 0; c < 3; ++c) radiance[c] += factor[c] * f[c];
    }
    *out_pixel = make_float4(radiance[0], radiance[1], radiance[2], 1.0f);
}
