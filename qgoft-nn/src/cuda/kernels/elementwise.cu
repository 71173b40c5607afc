// Elementwise kernels, bias and loss helpers. All reductions run in a fixed
// order (one thread per output, or one block with a fixed tree), so results
// are bitwise reproducible.

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

extern "C" __global__ void add(const float* a, const float* b, float* out, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

extern "C" __global__ void mul(const float* a, const float* b, float* out, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}

// y <- y + alpha x
extern "C" __global__ void axpy(float alpha, const float* x, float* y, size_t n) {
    GRID_STRIDE(i, n) y[i] = y[i] + alpha * x[i];
}

extern "C" __global__ void relu(const float* x, float* out, size_t n) {
    GRID_STRIDE(i, n) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// dL/dx = dL/dy where x > 0, else 0.
extern "C" __global__ void relu_backward(const float* x, const float* g, float* out, size_t n) {
    GRID_STRIDE(i, n) out[i] = x[i] > 0.0f ? g[i] : 0.0f;
}

// out[r, c] = x[r, c] + bias[c] for a row-major rows x cols matrix.
extern "C" __global__ void add_bias(const float* x, const float* bias, float* out, size_t n, unsigned cols) {
    GRID_STRIDE(i, n) out[i] = x[i] + bias[i % cols];
}

// out[c] = sum over rows r (in order) of g[r, c].
extern "C" __global__ void column_sums(const float* g, float* out, unsigned rows, unsigned cols) {
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (unsigned r = 0; r < rows; ++r) s += g[(size_t)r * cols + c];
    out[c] = s;
}

// Softmax cross-entropy, one thread per row of the rows x classes logits:
// loss[r] = logsumexp(z_r) - z_r[label_r],
// grad[r, k] = (softmax(z_r)_k - [k == label_r]) * inv_rows.
extern "C" __global__ void softmax_xent(const float* logits, const unsigned* labels, float* loss, float* grad,
                                        unsigned rows, unsigned classes, float inv_rows) {
    unsigned r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* z = logits + (size_t)r * classes;
    float* g = grad + (size_t)r * classes;
    float m = z[0];
    for (unsigned k = 1; k < classes; ++k) m = fmaxf(m, z[k]);
    float s = 0.0f;
    for (unsigned k = 0; k < classes; ++k) s += expf(z[k] - m);
    float lse = m + logf(s);
    unsigned label = labels[r];
    loss[r] = lse - z[label];
    for (unsigned k = 0; k < classes; ++k) {
        float p = expf(z[k] - lse);
        g[k] = (p - (k == label ? 1.0f : 0.0f)) * inv_rows;
    }
}

// out[0] = scale * sum of x[0 .. n-1], one block of 256 threads: strided
// partial sums, then a fixed tree.
extern "C" __global__ void sum_all(const float* x, size_t n, float scale, float* out) {
    __shared__ float part[256];
    float s = 0.0f;
    for (size_t i = threadIdx.x; i < n; i += 256) s += x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = 128; w > 0; w >>= 1) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = scale * part[0];
}
