// SPDX-License-Identifier: MPL-2.0
// What follows a linear layer's matmul on the GPU, in one pass over its output
// instead of candle's two or three: bias + activation (none, exact GELU, GELU's
// tanh form) and bias + residual. Each element is read once, computed in f32
// and rounded once to the tensor's dtype, in place.
//
// Compiled at run time with NVRTC (no headers: half and bfloat16 are handled as
// their bit patterns, as in the preprocessing kernels).

struct F32 {
    typedef float T;
    static __device__ __forceinline__ float load(const T* p, long long i) { return p[i]; }
    static __device__ __forceinline__ void store(T* p, long long i, float v) { p[i] = v; }
};

struct F16 {
    typedef unsigned short T;
    static __device__ __forceinline__ float load(const T* p, long long i) {
        float v;
        asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(p[i]));
        return v;
    }
    static __device__ __forceinline__ void store(T* p, long long i, float v) {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
        p[i] = h;
    }
};

struct BF16 {
    typedef unsigned short T;
    static __device__ __forceinline__ float load(const T* p, long long i) {
        return __uint_as_float(((unsigned int)p[i]) << 16);
    }
    static __device__ __forceinline__ void store(T* p, long long i, float v) {
        unsigned int u = __float_as_uint(v);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            p[i] = (unsigned short)((u >> 16) | 0x40u);  // NaN stays NaN
            return;
        }
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        p[i] = (unsigned short)(u >> 16);
    }
};

#define ACT_NONE 0
#define ACT_GELU 1
#define ACT_GELU_TANH 2

__device__ __forceinline__ float activate(float x, int act) {
    if (act == ACT_GELU) return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    if (act == ACT_GELU_TANH) {
        float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(inner));
    }
    return x;
}

// y[i] = act(y[i] + bias[i % n]) over `total` elements of rows of `n`.
template <class D>
__device__ void bias_act(typename D::T* y, const typename D::T* bias, long long total, int n, int act) {
    long long step = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        D::store(y, i, activate(D::load(y, i) + D::load(bias, i % n), act));
    }
}

// y[i] = (y[i] + bias[i % n]) + residual[i], the order candle's two adds take.
template <class D>
__device__ void bias_residual(typename D::T* y, const typename D::T* bias, const typename D::T* residual,
                              long long total, int n) {
    long long step = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        D::store(y, i, (D::load(y, i) + D::load(bias, i % n)) + D::load(residual, i));
    }
}

#define EPILOGUES(SUFFIX, D)                                                                       \
    extern "C" __global__ void bias_act_##SUFFIX(D::T* y, const D::T* bias, long long total, int n,   \
                                                 int act) {                                        \
        bias_act<D>(y, bias, total, n, act);                                                       \
    }                                                                                              \
    extern "C" __global__ void bias_residual_##SUFFIX(D::T* y, const D::T* bias, const D::T* residual, \
                                                      long long total, int n) {                    \
        bias_residual<D>(y, bias, residual, total, n);                                             \
    }

EPILOGUES(f32, F32)
EPILOGUES(f16, F16)
EPILOGUES(bf16, BF16)
