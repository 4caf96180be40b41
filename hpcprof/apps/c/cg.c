/* HPCG-like conjugate gradient proxy: 27-point stencil operator on an N^3 grid
 * (diagonal 26, off-diagonal -1, as in HPCG), fixed number of iterations, no preconditioner.
 * Build with -DHP_FLOAT64 or -DHP_FLOAT32. Usage: cg N ITERATIONS
 * FLOPs in hpcprof_kernel: 2*N^3 + ITER*(2*nnz + 10*N^3 + 2), nnz = (3N-2)^3. The 27
 * coefficients are read from memory (as HPCG reads its matrix values), so the compiler
 * cannot fold the -1 entries into subtractions.
 * The right-hand side is A*ones; the check is the true residual in double. */
#include "hp_common.h"

static void spmv(int n, const real *coef, const real *x, real *y) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < n; k++) {
                real sum = (real)0;
                for (int di = -1; di <= 1; di++) {
                    int ii = i + di;
                    if (ii < 0 || ii >= n) continue;
                    for (int dj = -1; dj <= 1; dj++) {
                        int jj = j + dj;
                        if (jj < 0 || jj >= n) continue;
                        for (int dk = -1; dk <= 1; dk++) {
                            int kk = k + dk;
                            if (kk < 0 || kk >= n) continue;
                            real a = coef[(di + 1) * 9 + (dj + 1) * 3 + (dk + 1)];
                            sum += a * x[((size_t)ii * n + jj) * n + kk];
                        }
                    }
                }
                y[((size_t)i * n + j) * n + k] = sum;
            }
}

static real dot(size_t m, const real *a, const real *b) {
    real s = (real)0;
    for (size_t p = 0; p < m; p++) s += a[p] * b[p];
    return s;
}

__attribute__((noinline)) void hpcprof_kernel(int n, int iters, const real *coef, const real *b,
                                              real *x, real *r, real *p, real *ap) {
    size_t m = (size_t)n * n * n;
    for (size_t q = 0; q < m; q++) {
        x[q] = (real)0;
        r[q] = b[q];
        p[q] = b[q];
    }
    real rr = dot(m, r, r);
    for (int it = 0; it < iters; it++) {
        spmv(n, coef, p, ap);
        real alpha = rr / dot(m, p, ap);
        for (size_t q = 0; q < m; q++) x[q] += alpha * p[q];
        for (size_t q = 0; q < m; q++) r[q] -= alpha * ap[q];
        real rr_new = dot(m, r, r);
        real beta = rr_new / rr;
        rr = rr_new;
        for (size_t q = 0; q < m; q++) p[q] = r[q] + beta * p[q];
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cg N ITERATIONS\n");
        return 2;
    }
    int n = atoi(argv[1]);
    int iters = atoi(argv[2]);
    size_t m = (size_t)n * n * n;
    real *b = malloc(m * sizeof(real)), *x = malloc(m * sizeof(real));
    real *r = malloc(m * sizeof(real)), *p = malloc(m * sizeof(real));
    real *ap = malloc(m * sizeof(real));
    real coef[27];
    if (!b || !x || !r || !p || !ap) return 3;
    for (int q = 0; q < 27; q++) coef[q] = (q == 13) ? (real)26 : (real)-1;
    for (size_t q = 0; q < m; q++) x[q] = (real)1;
    spmv(n, coef, x, b);
    double t0 = now();
    hpcprof_kernel(n, iters, coef, b, x, r, p, ap);
    double t1 = now();
    /* True residual ||b - A x|| / ||b|| in double, outside the measured function. */
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < n; k++) {
                double sum = 0.0;
                for (int di = -1; di <= 1; di++)
                    for (int dj = -1; dj <= 1; dj++)
                        for (int dk = -1; dk <= 1; dk++) {
                            int ii = i + di, jj = j + dj, kk = k + dk;
                            if (ii < 0 || ii >= n || jj < 0 || jj >= n || kk < 0 || kk >= n)
                                continue;
                            double a = (di == 0 && dj == 0 && dk == 0) ? 26.0 : -1.0;
                            sum += a * (double)x[((size_t)ii * n + jj) * n + kk];
                        }
                double bi = (double)b[((size_t)i * n + j) * n + k];
                num += (bi - sum) * (bi - sum);
                den += bi * bi;
            }
    printf("hpcprof: check_error=%.6e kernel_s=%.6e\n", sqrt(num / den), t1 - t0);
    free(b); free(x); free(r); free(p); free(ap);
    return 0;
}
