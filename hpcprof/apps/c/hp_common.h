/* Shared by the hpcprof C proxy apps: the working precision and a monotonic clock.
 * Build with -DHP_FLOAT64 or -DHP_FLOAT32 to choose `real`. */
#ifndef HP_COMMON_H
#define HP_COMMON_H
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef HP_FLOAT32
typedef float real;
#else
typedef double real;
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif
