/* Region markers for the callgrind backend, loaded by the Python kernels through ctypes.
 *
 * callgrind runs with --zero-before=hpcprof_region_start --dump-before=hpcprof_region_stop,
 * so the counts it dumps are exactly those between the two calls (the measured region),
 * without interpreter start-up, set-up or the float64 self-check.
 *
 * Python reaches C through libffi, whose call trampoline switches stacks; callgrind does not
 * see a function entry there. So ctypes calls hpcprof_enter/hpcprof_leave, and these make an
 * ordinary call to the marker functions that callgrind watches. Built with -O0 so that the
 * calls stay calls (no inlining, no tail jumps). */
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
