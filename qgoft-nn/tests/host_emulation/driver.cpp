// Runs the kernels under the host emulation (shim.h).
//
// `driver adapter` reads one case from stdin:
//   n d K P quasi has_scale pitanh threads use_shared
//   K lines of a stage: first stride gap len offset
//   params (P or 4P), scale (d, if has_scale), x (n d), gz (n d)
// and prints the lines z, y (merge), gx, gp, gs, pen, pg (penalty gradient
// with lambda = 0.5), each the name then the values.
//
// `driver elementwise` checks the elementwise kernels against loops in
// double precision and prints `worst <relative error>`.
#include "shim.h"
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include "adapter.inc"
#include "elementwise.inc"
using namespace std;

static vector<float> read_floats(size_t k) {
    vector<float> v(k + 1, 0.f);
    for (size_t i = 0; i < k; ++i) cin >> v[i];
    return v;
}

static void print(const char* name, const vector<float>& v, size_t k) {
    printf("%s", name);
    for (size_t i = 0; i < k; ++i) printf(" %.9g", v[i]);
    printf("\n");
}

// Helper kernels (one thread per output) run with few threads per block:
// the emulation pays for every thread it starts.
static unsigned blocks_for(size_t n) { return (unsigned)((n + 7) / 8 + 1); }

static int adapter_case() {
    unsigned n, d, K, P, quasi, has_scale, pitanh, threads, use_shared;
    cin >> n >> d >> K >> P >> quasi >> has_scale >> pitanh >> threads >> use_shared;
    vector<unsigned> st(5 * K + 1);
    for (unsigned i = 0; i < 5 * K; ++i) cin >> st[i];
    size_t W = quasi ? 4 * (size_t)P : P;
    auto params = read_floats(W);
    auto scale = has_scale ? read_floats(d) : vector<float>(1, 0.f);
    auto x = read_floats((size_t)n * d);
    auto gz = read_floats((size_t)n * d);
    if (!cin) return 2;
    vector<float> blocks(4 * (size_t)P + 1);
    if (quasi)
        blocks = params;
    else
        launch(blocks_for(P), 8, 0, [&] { blocks_from_angles(params.data(), blocks.data(), P, pitanh); });
    unsigned grid = n < 1024 ? n : 1024;
    size_t nd = (size_t)n * d;
    vector<float> z(nd + 1), y(nd + 1), gx(nd + 1), work((size_t)grid * 2 * d + 1, NAN);
    size_t sm = use_shared ? (size_t)d * 4 : 0;
    launch(grid, threads, sm, [&] {
        rotate_rows(x.data(), z.data(), n, d, st.data(), K, blocks.data(), scale.data(), has_scale, 0, use_shared,
                    work.data());
    });
    launch(grid, threads, sm, [&] {
        rotate_rows(x.data(), y.data(), n, d, st.data(), K, blocks.data(), scale.data(), has_scale, 1, use_shared,
                    work.data());
    });
    vector<float> partial(grid * W + 1, 0.f), pscale((size_t)grid * d + 1, 0.f), saved((size_t)grid * 2 * P + 1, NAN);
    launch(grid, threads, 2 * sm, [&] {
        adapter_backward(x.data(), gz.data(), gx.data(), n, d, st.data(), K, blocks.data(), P, scale.data(), has_scale,
                         quasi, partial.data(), pscale.data(), saved.data(), use_shared, work.data());
    });
    vector<float> gp(W + 1), gs((size_t)d + 1);
    launch(blocks_for(W), 8, 0,
           [&] { reduce_partials(partial.data(), grid, W, gp.data(), !quasi && pitanh, params.data()); });
    launch(blocks_for(d), 8, 0, [&] { reduce_partials(pscale.data(), grid, d, gs.data(), 0, nullptr); });
    vector<float> terms((size_t)P + 1), pen(1), pg(W + 1, 0.f);
    if (quasi) {  // sum_all needs 256 threads: the emulation's slowest launch
        launch(blocks_for(P), 8, 0, [&] { penalty_terms(blocks.data(), P, terms.data()); });
        launch(1, 256, 0, [&] { sum_all(terms.data(), P, 1.0f, pen.data()); });
        launch(blocks_for(P), 8, 0, [&] { penalty_grad(blocks.data(), P, 0.5f, pg.data()); });
    }
    print("z", z, nd);
    print("y", y, nd);
    print("gx", gx, nd);
    print("gp", gp, W);
    print("gs", gs, has_scale ? d : 0);
    print("pen", pen, 1);
    print("pg", pg, quasi ? W : 0);
    return 0;
}

static int elementwise_case() {
    const unsigned R = 37, C = 10;
    const size_t N = (size_t)R * C;
    vector<float> a(N), b(N), o(N), bias(C), cs(C);
    vector<unsigned> lab(R);
    unsigned s = 1;
    auto rnd = [&] {
        s = s * 1103515245u + 12345u;
        return ((s >> 8) & 0xffff) / 32768.0f - 1.0f;
    };
    for (auto& v : a) v = 3 * rnd();
    for (auto& v : b) v = rnd();
    for (auto& v : bias) v = rnd();
    for (unsigned r = 0; r < R; ++r) lab[r] = (r * 7 + 3) % C;
    double worst = 0;
    auto check = [&](double got, double want) { worst = max(worst, fabs(got - want) / max(1.0, fabs(want))); };
    launch(2, 7, 0, [&] { add(a.data(), b.data(), o.data(), N); });
    for (size_t i = 0; i < N; ++i) check(o[i], (double)a[i] + b[i]);
    launch(2, 7, 0, [&] { mul(a.data(), b.data(), o.data(), N); });
    for (size_t i = 0; i < N; ++i) check(o[i], (double)a[i] * b[i]);
    launch(3, 5, 0, [&] { relu(a.data(), o.data(), N); });
    for (size_t i = 0; i < N; ++i) check(o[i], max(a[i], 0.f));
    launch(3, 5, 0, [&] { relu_backward(a.data(), b.data(), o.data(), N); });
    for (size_t i = 0; i < N; ++i) check(o[i], a[i] > 0 ? b[i] : 0);
    launch(3, 5, 0, [&] { add_bias(a.data(), bias.data(), o.data(), N, C); });
    for (size_t i = 0; i < N; ++i) check(o[i], (double)a[i] + bias[i % C]);
    vector<float> y = b;
    launch(3, 5, 0, [&] { axpy(-0.5f, a.data(), y.data(), N); });
    for (size_t i = 0; i < N; ++i) check(y[i], b[i] - 0.5 * a[i]);
    launch(3, 4, 0, [&] { column_sums(a.data(), cs.data(), R, C); });
    for (unsigned c = 0; c < C; ++c) {
        double t = 0;
        for (unsigned r = 0; r < R; ++r) t += a[r * C + c];
        check(cs[c], t);
    }
    vector<float> loss(R), g(N), total(1);
    launch(2, 32, 0, [&] { softmax_xent(a.data(), lab.data(), loss.data(), g.data(), R, C, 1.0f / R); });
    launch(1, 256, 0, [&] { sum_all(loss.data(), R, 1.0f / R, total.data()); });
    double L = 0;
    for (unsigned r = 0; r < R; ++r) {
        double m = -1e300, z = 0;
        for (unsigned k = 0; k < C; ++k) m = max(m, (double)a[r * C + k]);
        for (unsigned k = 0; k < C; ++k) z += exp(a[r * C + k] - m);
        double lse = m + log(z);
        L += lse - a[r * C + lab[r]];
        for (unsigned k = 0; k < C; ++k) check(g[r * C + k], (exp(a[r * C + k] - lse) - (k == lab[r])) / R);
    }
    check(total[0], L / R);
    printf("worst %.9g\n", worst);
    return 0;
}

int main(int argc, char** argv) {
    string what = argc > 1 ? argv[1] : "";
    if (what == "adapter") return adapter_case();
    if (what == "elementwise") return elementwise_case();
    fprintf(stderr, "usage: driver adapter|elementwise\n");
    return 2;
}
