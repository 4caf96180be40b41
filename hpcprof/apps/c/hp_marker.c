/* Region shim for callgrind, loaded by the Python kernels through ctypes. One source, two
 * uses, built once by hpcprof.build.build_marker:
 *
 * 1. Counting (the callgrind backend): callgrind runs with
 *    --zero-before=hpcprof_region_start --dump-before=hpcprof_region_stop, so the counts it
 *    dumps are exactly those between the two calls (the measured region), without
 *    interpreter start-up, set-up or the float64 self-check.
 *    Python reaches C through libffi, whose call trampoline switches stacks; callgrind does
 *    not see a function entry there. So ctypes calls hpcprof_enter/hpcprof_leave, and these
 *    make an ordinary call to the marker functions that callgrind watches. Built with -O0 so
 *    that the calls stay calls (no inlining, no tail jumps).
 * 2. Traffic (hpcprof bound --measure, hpcprof.traffic): callgrind runs with
 *    --collect-atstart=no and hpcprof_toggle issues callgrind's TOGGLE_COLLECT client
 *    request at the region's start and end. The request needs valgrind's callgrind.h; where
 *    it is missing hpcprof_toggle_available() says 0 and the toggle is not offered. */
__attribute__((noinline)) void hpcprof_region_start(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void hpcprof_region_stop(void) { __asm__ volatile("" ::: "memory"); }

void hpcprof_enter(void) {
    hpcprof_region_start();
    __asm__ volatile("" ::: "memory");
}

void hpcprof_leave(void) {
    hpcprof_region_stop();
    __asm__ volatile("" ::: "memory");
}

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HP_HAVE_CALLGRIND_H 1
#endif
#endif

#ifdef HP_HAVE_CALLGRIND_H
int hpcprof_toggle_available(void) { return 1; }
void hpcprof_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
#else
int hpcprof_toggle_available(void) { return 0; }
void hpcprof_toggle(void) {}
#endif
