/* STREAM-like triad proxy: a[i] = b[i] + s*c[i], repeated `sweeps` times.
 * Build with -DHP_FLOAT64 or -DHP_FLOAT32. Usage: triad N SWEEPS
 * hpcprof_kernel executes 2*N*SWEEPS FLOPs; the check against a double reference runs
 * outside it. */
#include "hp_common.h"

/* No restrict on purpose: the compiler must keep every sweep. */
__attribute__((noinline)) void hpcprof_kernel(long n, int sweeps, real s, real *a, const real *b,
                                              const real *c) {
    for (int t = 0; t < sweeps; t++)
        for (long i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: triad N SWEEPS\n");
        return 2;
    }
    long n = atol(argv[1]);
    int sweeps = atoi(argv[2]);
    real *a = malloc(n * sizeof(real)), *b = malloc(n * sizeof(real));
    real *c = malloc(n * sizeof(real));
    if (!a || !b || !c) return 3;
    for (long i = 0; i < n; i++) {
        a[i] = (real)0;
        b[i] = (real)(1 + i % 97) / (real)97;
        c[i] = (real)(1 + i % 89) / (real)89;
    }
    real s = (real)3 / (real)7;
    double t0 = now();
    hpcprof_kernel(n, sweeps, s, a, b, c);
    double t1 = now();
    double err = 0.0, scale = 0.0;
    for (long i = 0; i < n; i++) {
        double ref = (double)b[i] + (double)s * (double)c[i];
        err = fmax(err, fabs((double)a[i] - ref));
        scale = fmax(scale, fabs(ref));
    }
    printf("hpcprof: check_error=%.6e kernel_s=%.6e\n", scale > 0 ? err / scale : err, t1 - t0);
    free(a); free(b); free(c);
    return 0;
}
