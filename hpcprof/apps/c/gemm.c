/* Dense GEMM proxy: C += A*B, n x n, i-k-j loop order.
 * Build with -DHP_FLOAT64 or -DHP_FLOAT32. Usage: gemm N
 * The measured work is the function hpcprof_kernel (2*n^3 FLOPs); the self-check
 * (Freivalds' test in double) runs outside it so it never adds FP64 work to the count. */
#include "hp_common.h"

static unsigned long long lcg_state = 12345ULL;
static double uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) * (1.0 / 9007199254740992.0);
}

__attribute__((noinline)) void hpcprof_kernel(int n, const real *a, const real *b, real *c) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            real s = a[(size_t)i * n + k];
            for (int j = 0; j < n; j++) c[(size_t)i * n + j] += s * b[(size_t)k * n + j];
        }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: gemm N\n");
        return 2;
    }
    int n = atoi(argv[1]);
    size_t nn = (size_t)n * n;
    real *a = malloc(nn * sizeof(real)), *b = malloc(nn * sizeof(real));
    real *c = calloc(nn, sizeof(real));
    double *x = malloc(n * sizeof(double)), *y = malloc(n * sizeof(double));
    if (!a || !b || !c || !x || !y) return 3;
    for (size_t i = 0; i < nn; i++) {
        a[i] = (real)uniform();
        b[i] = (real)uniform();
    }
    double t0 = now();
    hpcprof_kernel(n, a, b, c);
    double t1 = now();
    /* Freivalds: compare C x with A (B x), all in double. */
    for (int j = 0; j < n; j++) x[j] = uniform() - 0.5;
    double err = 0.0, scale = 0.0;
    for (int k = 0; k < n; k++) {
        double s = 0.0;
        for (int j = 0; j < n; j++) s += (double)b[(size_t)k * n + j] * x[j];
        y[k] = s;
    }
    for (int i = 0; i < n; i++) {
        double cx = 0.0, abx = 0.0;
        for (int j = 0; j < n; j++) cx += (double)c[(size_t)i * n + j] * x[j];
        for (int k = 0; k < n; k++) abx += (double)a[(size_t)i * n + k] * y[k];
        err = fmax(err, fabs(cx - abx));
        scale = fmax(scale, fabs(abx));
    }
    printf("hpcprof: check_error=%.6e kernel_s=%.6e\n", scale > 0 ? err / scale : err, t1 - t0);
    free(a); free(b); free(c); free(x); free(y);
    return 0;
}
