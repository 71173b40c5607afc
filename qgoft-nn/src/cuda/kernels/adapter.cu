// Adapter kernels: the staged rotation R = P_K ... P_1 S applied to the rows
// of a row-major batch, its backward pass, and the qGOFT penalty.
//
// A stage is five unsigned integers (first, stride, gap, len, offset): the
// planes (first + t*stride, first + t*stride + gap), t = 0 .. len-1, with
// blocks offset .. offset+len-1. A block is four floats [a, b, c, e] acting
// on a plane (i, j) as (x_i, x_j) <- (a x_i + b x_j, c x_i + e x_j).
//
// Thread layout: one thread block per row (grid-stride over rows), the row in
// shared memory (or in a global work area when it does not fit), one thread
// per plane of a stage, __syncthreads() between stages. Thread t of a block
// always handles the planes t, t + blockDim.x, ... of every stage, so the
// per-block partial parameter gradients are accumulated by one thread each in
// a fixed order: no atomics, bitwise reproducible results.

#define STAGE_WORDS 5

// Strict blocks from angle parameters: theta = p (map 0) or pi * tanh(p)
// (map 1); block [[cos, -sin], [sin, cos]].
extern "C" __global__ void blocks_from_angles(const float* params, float* blocks, unsigned num, int pitanh) {
    unsigned p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= num) return;
    float theta = pitanh ? 3.14159265358979323846f * tanhf(params[p]) : params[p];
    float s, c;
    sincosf(theta, &s, &c);
    blocks[4 * p + 0] = c;
    blocks[4 * p + 1] = -s;
    blocks[4 * p + 2] = s;
    blocks[4 * p + 3] = c;
}

// One stage on the row `u`: the block (forward) or its transpose.
__device__ __forceinline__ void apply_stage(float* u, const unsigned* st, const float* blocks, int transpose) {
    unsigned first = st[0], stride = st[1], gap = st[2], len = st[3], offset = st[4];
    for (unsigned t = threadIdx.x; t < len; t += blockDim.x) {
        unsigned i = first + t * stride;
        unsigned j = i + gap;
        const float* b = blocks + 4 * (size_t)(offset + t);
        float xi = u[i], xj = u[j];
        if (transpose) {
            u[i] = b[0] * xi + b[2] * xj;
            u[j] = b[1] * xi + b[3] * xj;
        } else {
            u[i] = b[0] * xi + b[1] * xj;
            u[j] = b[2] * xi + b[3] * xj;
        }
    }
}

// y_r = R^T x_r = S P_1^T ... P_K^T x_r (forward == 0, the adapter), or
// y_r = R x_r = P_K ... P_1 S x_r (forward == 1, the merge W R^T row-wise).
// x and y may alias. `work` holds gridDim.x rows of d floats and is used only
// when use_shared == 0.
extern "C" __global__ void rotate_rows(const float* x, float* y, unsigned n, unsigned d, const unsigned* stages,
                                       unsigned num_stages, const float* blocks, const float* scale, int has_scale,
                                       int forward, int use_shared, float* work) {
    extern __shared__ float smem[];
    float* u = use_shared ? smem : work + (size_t)blockIdx.x * d;
    for (unsigned r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = x + (size_t)r * d;
        float* yr = y + (size_t)r * d;
        for (unsigned i = threadIdx.x; i < d; i += blockDim.x) {
            float v = xr[i];
            u[i] = (forward && has_scale) ? v * scale[i] : v;
        }
        __syncthreads();
        for (unsigned q = 0; q < num_stages; ++q) {
            unsigned k = forward ? q : num_stages - 1 - q;
            apply_stage(u, stages + STAGE_WORDS * k, blocks, !forward);
            __syncthreads();
        }
        for (unsigned i = threadIdx.x; i < d; i += blockDim.x) {
            float v = u[i];
            yr[i] = (!forward && has_scale) ? v * scale[i] : v;
        }
        __syncthreads();
    }
}

// Backward of z_r = S P_1^T ... P_K^T x_r for every row.
//
// Inputs x (n x d) and gz = dL/dz (n x d); output gx = dL/dx (n x d).
// The stage inputs are recomputed in the kernel from x: a forward pass
// without the scaling gives u = P_1^T ... P_K^T x; the backward pass then
// walks the stages 1 .. K, recovering each stage's input from its output by
// the inverse rotation (strict: the inverse of B^T is B) or from the values
// saved by the forward pass (quasi: `saved`, 2 floats per block per thread
// block).
//
// Partial gradients per thread block (all zero on entry):
//   strict: pgrad[blk * P + p]       = sum over the block's rows of dL/dtheta_p
//   quasi:  pgrad[blk * 4P + 4p + m] = dL/d[a, b, c, e]_p
//   pscale[blk * d + i]              = sum of gz_i * u_i (only if has_scale)
// `work` holds gridDim.x * 2d floats, used when use_shared == 0.
extern "C" __global__ void adapter_backward(const float* x, const float* gz, float* gx, unsigned n, unsigned d,
                                            const unsigned* stages, unsigned num_stages, const float* blocks,
                                            unsigned num_blocks, const float* scale, int has_scale, int quasi,
                                            float* pgrad, float* pscale, float* saved, int use_shared, float* work) {
    extern __shared__ float smem[];
    float* u = use_shared ? smem : work + (size_t)blockIdx.x * 2 * d;
    float* g = u + d;
    float* my_saved = saved + (size_t)blockIdx.x * 2 * num_blocks;
    float* my_pgrad = pgrad + (size_t)blockIdx.x * (quasi ? 4 : 1) * num_blocks;
    float* my_pscale = pscale + (size_t)blockIdx.x * d;
    for (unsigned r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = x + (size_t)r * d;
        const float* gr = gz + (size_t)r * d;
        for (unsigned i = threadIdx.x; i < d; i += blockDim.x) u[i] = xr[i];
        __syncthreads();
        // Forward: stages K .. 1, transposed blocks; quasi saves each input.
        for (unsigned q = 0; q < num_stages; ++q) {
            const unsigned* st = stages + STAGE_WORDS * (num_stages - 1 - q);
            unsigned first = st[0], stride = st[1], gap = st[2], len = st[3], offset = st[4];
            for (unsigned t = threadIdx.x; t < len; t += blockDim.x) {
                unsigned i = first + t * stride;
                unsigned j = i + gap;
                unsigned p = offset + t;
                const float* b = blocks + 4 * (size_t)p;
                float xi = u[i], xj = u[j];
                if (quasi) {
                    my_saved[2 * (size_t)p] = xi;
                    my_saved[2 * (size_t)p + 1] = xj;
                }
                u[i] = b[0] * xi + b[2] * xj;
                u[j] = b[1] * xi + b[3] * xj;
            }
            __syncthreads();
        }
        // The scaling: z = S u.
        for (unsigned i = threadIdx.x; i < d; i += blockDim.x) {
            float gi = gr[i];
            if (has_scale) {
                my_pscale[i] += gi * u[i];
                gi *= scale[i];
            }
            g[i] = gi;
        }
        __syncthreads();
        // Backward: stages 1 .. K.
        for (unsigned k = 0; k < num_stages; ++k) {
            const unsigned* st = stages + STAGE_WORDS * k;
            unsigned first = st[0], stride = st[1], gap = st[2], len = st[3], offset = st[4];
            for (unsigned t = threadIdx.x; t < len; t += blockDim.x) {
                unsigned i = first + t * stride;
                unsigned j = i + gap;
                unsigned p = offset + t;
                const float* b = blocks + 4 * (size_t)p;
                float a = b[0], bb = b[1], c = b[2], e = b[3];
                float pi_ = u[i], pj = u[j];
                float qi, qj;
                if (quasi) {
                    qi = my_saved[2 * (size_t)p];
                    qj = my_saved[2 * (size_t)p + 1];
                } else {
                    qi = a * pi_ + bb * pj;
                    qj = c * pi_ + e * pj;
                }
                float gi = g[i], gj = g[j];
                // (p_i, p_j) = (a q_i + c q_j, b q_i + e q_j)
                float ga = gi * qi, gc = gi * qj, gb = gj * qi, ge = gj * qj;
                if (quasi) {
                    float* pg = my_pgrad + 4 * (size_t)p;
                    pg[0] += ga;
                    pg[1] += gb;
                    pg[2] += gc;
                    pg[3] += ge;
                } else {
                    // a = e = cos(theta), b = -sin(theta), c = sin(theta)
                    my_pgrad[p] += -c * (ga + ge) + a * (gc - gb);
                }
                g[i] = a * gi + bb * gj;
                g[j] = c * gi + e * gj;
                u[i] = qi;
                u[j] = qj;
            }
            __syncthreads();
        }
        float* gxr = gx + (size_t)r * d;
        for (unsigned i = threadIdx.x; i < d; i += blockDim.x) gxr[i] = g[i];
        __syncthreads();
    }
}

// out[p] = sum over b = 0 .. parts-1 (in this order) of partial[b * width + p],
// times d theta / d p_raw when chain == 1 (pi * (1 - tanh(p)^2), strict
// pi*tanh angles; `params` holds the raw parameters).
extern "C" __global__ void reduce_partials(const float* partial, unsigned parts, unsigned width, float* out,
                                           int chain, const float* params) {
    unsigned p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= width) return;
    float s = 0.0f;
    for (unsigned b = 0; b < parts; ++b) s += partial[(size_t)b * width + p];
    if (chain) {
        float t = tanhf(params[p]);
        s *= 3.14159265358979323846f * (1.0f - t * t);
    }
    out[p] = s;
}

// Per-block penalty terms (a b + c e)^2.
extern "C" __global__ void penalty_terms(const float* blocks, unsigned num, float* out) {
    unsigned p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= num) return;
    const float* b = blocks + 4 * (size_t)p;
    float s = b[0] * b[1] + b[2] * b[3];
    out[p] = s * s;
}

// grad[4p + .] += lambda * d/d[a, b, c, e] (a b + c e)^2
//              = lambda * 2 (a b + c e) [b, a, e, c].
extern "C" __global__ void penalty_grad(const float* blocks, unsigned num, float lambda, float* grad) {
    unsigned p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= num) return;
    const float* b = blocks + 4 * (size_t)p;
    float f = 2.0f * lambda * (b[0] * b[1] + b[2] * b[3]);
    float* g = grad + 4 * (size_t)p;
    g[0] += f * b[1];
    g[1] += f * b[0];
    g[2] += f * b[3];
    g[3] += f * b[2];
}
