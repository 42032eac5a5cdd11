// SPDX-License-Identifier: MPL-2.0
// Frame preprocessing on the GPU: colour conversion, separable bilinear resize
// (optionally antialiased) and normalisation, writing the model's input tensor.
//
// Two passes, as on the CPU:
//   1. `vertical`: for every output row and every frame column, convert the frame
//      pixels that the row's vertical taps read to RGB and blend them; one thread
//      per (column, output row), all three channels. The intermediate is
//      3 x out_h x frame_w floats (12 MB for 1080p -> 512 rows): it stays in L2.
//   2. `horizontal_<dtype>`: for every output pixel, blend the intermediate along
//      the row with the horizontal taps, normalise, convert to the output dtype;
//      one thread per (output column, output row, channel).
// A separable pair reads Kv + Kh samples per output instead of Kv * Kh for a fused
// 2-D filter (5 + 5 against 25 for a 2.1x antialiased shrink), and both passes
// read memory with consecutive threads on consecutive addresses, so they run
// at memory bandwidth.
//
// Compiled at run time with NVRTC (no headers: half and bfloat16 results are
// written as their bit patterns).

struct Frame {
    int format;        // PixelFormat code (see frame.rs)
    int width, height;
    int bpp, ro, go, bo;  // packed RGB: bytes per pixel, byte offsets of R, G, B
    int stride0, stride1, stride2;
    long long off0, off1, off2;
    float y_scale, y_offset, r_v, g_u, g_v, b_u;
};

#define FMT_NV12 0
#define FMT_I420 1
#define FMT_GRAY8 10

__device__ __forceinline__ float clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }

__device__ __forceinline__ float3 load_rgb(const unsigned char* __restrict__ f, const Frame& d, int x, int y) {
    if (d.format == FMT_NV12 || d.format == FMT_I420) {
        float yy = ((float)f[d.off0 + (long long)y * d.stride0 + x] - d.y_offset) * d.y_scale;
        int cx = x >> 1, cy = y >> 1;
        float cb, cr;
        if (d.format == FMT_NV12) {
            const unsigned char* uv = f + d.off1 + (long long)cy * d.stride1 + 2 * cx;
            cb = (float)uv[0] - 128.0f;
            cr = (float)uv[1] - 128.0f;
        } else {
            cb = (float)f[d.off1 + (long long)cy * d.stride1 + cx] - 128.0f;
            cr = (float)f[d.off2 + (long long)cy * d.stride2 + cx] - 128.0f;
        }
        return make_float3(clamp01(yy + d.r_v * cr), clamp01(yy + d.g_u * cb + d.g_v * cr),
                           clamp01(yy + d.b_u * cb));
    }
    const unsigned char* p = f + d.off0 + (long long)y * d.stride0 + (long long)x * d.bpp;
    if (d.format == FMT_GRAY8) {
        float v = (float)p[0] / 255.0f;
        return make_float3(v, v, v);
    }
    return make_float3((float)p[d.ro] / 255.0f, (float)p[d.go] / 255.0f, (float)p[d.bo] / 255.0f);
}

extern "C" __global__ void vertical(const unsigned char* __restrict__ frame, Frame d,
                                    const int* __restrict__ row_start, const float* __restrict__ row_w,
                                    int kv, int out_h, float* __restrict__ tmp) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y;
    if (x >= d.width || y >= out_h) return;
    int start = row_start[y];
    float r = 0.0f, g = 0.0f, b = 0.0f;
    for (int k = 0; k < kv; ++k) {
        float w = row_w[y * kv + k];
        float3 px = load_rgb(frame, d, x, start + k);
        r += w * px.x;
        g += w * px.y;
        b += w * px.z;
    }
    long long plane = (long long)out_h * d.width;
    long long at = (long long)y * d.width + x;
    tmp[at] = r;
    tmp[plane + at] = g;
    tmp[2 * plane + at] = b;
}

struct Norm {
    float scale[3];
    float bias[3];
};

__device__ __forceinline__ float horizontal_value(const float* __restrict__ tmp, int frame_w, int out_h,
                                                  const int* __restrict__ col_start,
                                                  const float* __restrict__ col_w, int kh, Norm n,
                                                  int x, int y, int c) {
    const float* row = tmp + ((long long)c * out_h + y) * frame_w + col_start[x];
    float acc = 0.0f;
    for (int k = 0; k < kh; ++k) acc += col_w[x * kh + k] * row[k];
    return acc * n.scale[c] + n.bias[c];
}

__device__ __forceinline__ unsigned short to_f16_bits(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

__device__ __forceinline__ unsigned short to_bf16_bits(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (unsigned short)(u >> 16);
}

#define HORIZONTAL(NAME, T, CONVERT)                                                              \
    extern "C" __global__ void NAME(const float* __restrict__ tmp, int frame_w, int out_h, int out_w, \
                                    const int* __restrict__ col_start, const float* __restrict__ col_w, \
                                    int kh, Norm n, T* __restrict__ out) {                        \
        int x = blockIdx.x * blockDim.x + threadIdx.x;                                            \
        int y = blockIdx.y;                                                                       \
        int c = blockIdx.z;                                                                       \
        if (x >= out_w) return;                                                                   \
        float v = horizontal_value(tmp, frame_w, out_h, col_start, col_w, kh, n, x, y, c);        \
        out[((long long)c * out_h + y) * out_w + x] = CONVERT(v);                                 \
    }

#define AS_F32(v) (v)
HORIZONTAL(horizontal_f32, float, AS_F32)
HORIZONTAL(horizontal_f16, unsigned short, to_f16_bits)
HORIZONTAL(horizontal_bf16, unsigned short, to_bf16_bits)
