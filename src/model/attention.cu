// SPDX-License-Identifier: MPL-2.0
// Fused multi-head self-attention on tensor cores, flash-attention style: the
// (N x N) scores never reach memory. Reads q, k and v straight from the qkv
// projection's output (B, N, 3*D), heads side by side, the 1/sqrt(head_dim)
// already folded into q, and writes softmax(q k^T) v as (B, N, D), heads side
// by side: the layout the output projection reads.
//
// One block of 4 warps takes 64 query rows of one (image, head); each warp 16
// of them. The block walks the keys 64 at a time through shared memory:
//   S = Q K^T   mma.m16n8k16 (bf16 or f16 in, f32 sums), Q in registers;
//   online softmax in f32 (running max and sum per row, FlashAttention-2);
//   O += P V    P from S's accumulators repacked as the A operand.
// Rows and keys past N, and the head dimension past HD up to a multiple of 16,
// are zeros (keys past N are masked to -inf before the softmax).
//
// Fragment layouts are PTX's for mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, col):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16x8):       c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Each 32-bit register holds two 16-bit values, the lower index in the low half.
//
// Compiled at run time with NVRTC for sm_80 and newer (no headers).

#define ROWS 64   // query rows per block
#define KEYS 64   // keys per tile
#define WARPS 4
#define NEG_INF __int_as_float(0xff800000)

struct BF16 {
    static __device__ __forceinline__ unsigned int pack(float lo, float hi) {
        unsigned int r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ void mma(float* c, const unsigned int* a, unsigned int b0, unsigned int b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

struct F16 {
    static __device__ __forceinline__ unsigned int pack(float lo, float hi) {
        unsigned int r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ void mma(float* c, const unsigned int* a, unsigned int b0, unsigned int b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

__device__ __forceinline__ unsigned int pair(unsigned short lo, unsigned short hi) {
    return (unsigned int)lo | ((unsigned int)hi << 16);
}

template <int HD, class E>
__device__ void flash(const unsigned short* __restrict__ qkv, unsigned short* __restrict__ out, int n, int heads) {
    constexpr int HDP = (HD + 15) / 16 * 16;  // head dim padded for the k steps
    constexpr int KS = HDP / 16;             // k steps of Q K^T
    constexpr int DT = HD / 8;               // 8-wide column tiles of O
    constexpr int LD = HDP + 8;              // shared row stride (spreads banks)
    __shared__ __align__(16) unsigned short ks[KEYS * LD];
    __shared__ __align__(16) unsigned short vs[KEYS * LD];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int image = blockIdx.y / heads, head = blockIdx.y % heads;
    const int d = heads * HD;
    const long long row_stride = 3LL * d;
    const unsigned short* base = qkv + (long long)image * n * row_stride + head * HD;

    // This warp's 16 query rows as A fragments, zero past N and past HD.
    const int r0 = blockIdx.x * ROWS + warp * 16 + g, r1 = r0 + 8;
    auto q_at = [&](int row, int col) -> unsigned short {
        return (row < n && col < HD) ? base[row * row_stride + col] : (unsigned short)0;
    };
    unsigned int qa[KS][4];
#pragma unroll
    for (int s = 0; s < KS; ++s) {
        const int c = s * 16 + 2 * t;
        qa[s][0] = pair(q_at(r0, c), q_at(r0, c + 1));
        qa[s][1] = pair(q_at(r1, c), q_at(r1, c + 1));
        qa[s][2] = pair(q_at(r0, c + 8), q_at(r0, c + 9));
        qa[s][3] = pair(q_at(r1, c + 8), q_at(r1, c + 9));
    }

    float o[DT][4];
#pragma unroll
    for (int j = 0; j < DT; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = NEG_INF, m1 = NEG_INF;  // running max of rows r0, r1
    float l0 = 0.0f, l1 = 0.0f;            // this thread's part of their sums

    for (int first = 0; first < n; first += KEYS) {
        __syncthreads();  // the previous tile is no longer read
        for (int i = threadIdx.x; i < KEYS * HDP; i += WARPS * 32) {
            const int key = i / HDP, c = i % HDP;
            const bool in = first + key < n && c < HD;
            const long long at = (long long)(first + key) * row_stride + c;
            ks[key * LD + c] = in ? base[d + at] : (unsigned short)0;
            vs[key * LD + c] = in ? base[2 * d + at] : (unsigned short)0;
        }
        __syncthreads();

        // S = Q K^T for 16 rows x 64 keys: 8 tiles of 8 keys.
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            const unsigned short* krow = ks + (nt * 8 + g) * LD + 2 * t;
#pragma unroll
            for (int k = 0; k < KS; ++k) {
                const unsigned int b0 = *(const unsigned int*)(krow + k * 16);
                const unsigned int b1 = *(const unsigned int*)(krow + k * 16 + 8);
                E::mma(s[nt], qa[k], b0, b1);
            }
        }

        // Mask keys past N; the new running max of each row over the quad.
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                if (first + nt * 8 + 2 * t + e >= n) s[nt][e] = s[nt][2 + e] = NEG_INF;
                mx0 = fmaxf(mx0, s[nt][e]);
                mx1 = fmaxf(mx1, s[nt][2 + e]);
            }
        }
#pragma unroll
        for (int mask = 1; mask <= 2; mask <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, mask));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, mask));
        }
        // Rescale what was summed under the old max (exp(-inf) = 0 on the first tile).
        const float c0 = expf(m0 - mx0), c1 = expf(m1 - mx1);
        m0 = mx0;
        m1 = mx1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int j = 0; j < DT; ++j) {
            o[j][0] *= c0;
            o[j][1] *= c0;
            o[j][2] *= c1;
            o[j][3] *= c1;
        }
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                s[nt][e] = expf(s[nt][e] - m0);
                s[nt][2 + e] = expf(s[nt][2 + e] - m1);
                l0 += s[nt][e];
                l1 += s[nt][2 + e];
            }
        }

        // O += P V: 4 chunks of 16 keys; P's C fragments of tiles 2j, 2j+1 are
        // the A fragment of chunk j.
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            unsigned int pa[4] = {
                E::pack(s[2 * j][0], s[2 * j][1]),
                E::pack(s[2 * j][2], s[2 * j][3]),
                E::pack(s[2 * j + 1][0], s[2 * j + 1][1]),
                E::pack(s[2 * j + 1][2], s[2 * j + 1][3]),
            };
            const unsigned short* v0 = vs + (j * 16 + 2 * t) * LD + g;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt) {
                const unsigned short* v = v0 + dt * 8;
                const unsigned int b0 = pair(v[0], v[LD]);
                const unsigned int b1 = pair(v[8 * LD], v[9 * LD]);
                E::mma(o[dt], pa, b0, b1);
            }
        }
    }

    // Each row's sum over the quad, then O / sum in the tensor's dtype.
#pragma unroll
    for (int mask = 1; mask <= 2; mask <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, mask);
        l1 += __shfl_xor_sync(0xffffffffu, l1, mask);
    }
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    unsigned short* dst = out + (long long)image * n * d + head * HD + 2 * t;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
        if (r0 < n) *(unsigned int*)(dst + (long long)r0 * d + dt * 8) = E::pack(o[dt][0] * inv0, o[dt][1] * inv0);
        if (r1 < n) *(unsigned int*)(dst + (long long)r1 * d + dt * 8) = E::pack(o[dt][2] * inv1, o[dt][3] * inv1);
    }
}

#define ATTENTION(NAME, HD, E)                                                                      \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                        \
        NAME(const unsigned short* __restrict__ qkv, unsigned short* __restrict__ out, int n, int heads) { \
        flash<HD, E>(qkv, out, n, heads);                                                           \
    }

ATTENTION(attention_bf16_64, 64, BF16)
ATTENTION(attention_bf16_72, 72, BF16)
ATTENTION(attention_bf16_80, 80, BF16)
ATTENTION(attention_f16_64, 64, F16)
ATTENTION(attention_f16_72, 72, F16)
ATTENTION(attention_f16_80, 80, F16)
