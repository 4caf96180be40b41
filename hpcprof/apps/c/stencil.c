/* 7-point Jacobi stencil proxy on an N^3 grid with fixed boundary values.
 * Build with -DHP_FLOAT64 or -DHP_FLOAT32. Usage: stencil N SWEEPS
 * Each sweep updates the (N-2)^3 interior points with 7 FLOPs each:
 * v = (u[x-1] + u[x+1] + u[y-1] + u[y+1] + u[z-1] + u[z+1] + f) * (1/6).
 * The same sweeps are repeated in double outside hpcprof_kernel as the reference. */
#include "hp_common.h"
#include <string.h>

#define IDX(i, j, k) (((size_t)(i) * n + (j)) * n + (k))

__attribute__((noinline)) void hpcprof_kernel(int n, int sweeps, real *u, real *v, const real *f) {
    const real sixth = (real)1 / (real)6;
    for (int t = 0; t < sweeps; t++) {
        for (int i = 1; i < n - 1; i++)
            for (int j = 1; j < n - 1; j++)
                for (int k = 1; k < n - 1; k++)
                    v[IDX(i, j, k)] = (u[IDX(i - 1, j, k)] + u[IDX(i + 1, j, k)] +
                                       u[IDX(i, j - 1, k)] + u[IDX(i, j + 1, k)] +
                                       u[IDX(i, j, k - 1)] + u[IDX(i, j, k + 1)] + f[IDX(i, j, k)]) *
                                      sixth;
        real *tmp = u;
        u = v;
        v = tmp;
    }
}

static void reference(int n, int sweeps, double *u, double *v, const double *f) {
    for (int t = 0; t < sweeps; t++) {
        for (int i = 1; i < n - 1; i++)
            for (int j = 1; j < n - 1; j++)
                for (int k = 1; k < n - 1; k++)
                    v[IDX(i, j, k)] = (u[IDX(i - 1, j, k)] + u[IDX(i + 1, j, k)] +
                                       u[IDX(i, j - 1, k)] + u[IDX(i, j + 1, k)] +
                                       u[IDX(i, j, k - 1)] + u[IDX(i, j, k + 1)] + f[IDX(i, j, k)]) /
                                      6.0;
        double *tmp = u;
        u = v;
        v = tmp;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: stencil N SWEEPS\n");
        return 2;
    }
    int n = atoi(argv[1]);
    int sweeps = atoi(argv[2]);
    size_t nn = (size_t)n * n * n;
    real *u = malloc(nn * sizeof(real)), *v = malloc(nn * sizeof(real));
    real *f = malloc(nn * sizeof(real));
    double *ud = malloc(nn * sizeof(double)), *vd = malloc(nn * sizeof(double));
    double *fd = malloc(nn * sizeof(double));
    if (!u || !v || !f || !ud || !vd || !fd) return 3;
    for (size_t p = 0; p < nn; p++) {
        u[p] = (real)(p % 13) / (real)13;
        f[p] = (real)(p % 7) / (real)70;
        ud[p] = (double)u[p];
        fd[p] = (double)f[p];
    }
    memcpy(v, u, nn * sizeof(real));
    memcpy(vd, ud, nn * sizeof(double));
    double t0 = now();
    hpcprof_kernel(n, sweeps, u, v, f);
    double t1 = now();
    reference(n, sweeps, ud, vd, fd);
    const real *res = (sweeps % 2) ? v : u;
    const double *ref = (sweeps % 2) ? vd : ud;
    double err = 0.0, scale = 0.0;
    for (size_t p = 0; p < nn; p++) {
        err = fmax(err, fabs((double)res[p] - ref[p]));
        scale = fmax(scale, fabs(ref[p]));
    }
    printf("hpcprof: check_error=%.6e kernel_s=%.6e\n", scale > 0 ? err / scale : err, t1 - t0);
    free(u); free(v); free(f); free(ud); free(vd); free(fd);
    return 0;
}
