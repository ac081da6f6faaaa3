/* The probe's `loop` scenario as a host process, for the "CPL3 compute vs host" benchmark:
 * exactly the same instructions (imul; add; dec; jnz on a 64-bit LCG state), timed with rdtsc.
 * build: cc -O2 -o /tmp/host-loop guests/probe/tools/host-loop.c
 * usage: /tmp/host-loop [iters]   -> "HOST loop iters=N cycles=C" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>

int main(int argc, char **argv) {
    uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000000ULL;
    uint64_t start = __rdtsc(), state = start, n = iters;
    if (n) {
        __asm__ volatile("1: imul %2, %0\n\tadd %3, %0\n\tdec %1\n\tjnz 1b"
                         : "+r"(state), "+r"(n)
                         : "r"(6364136223846793005ULL), "r"(1442695040888963407ULL));
    }
    uint64_t cycles = __rdtsc() - start;
    printf("HOST loop iters=%llu cycles=%llu\n", (unsigned long long)iters, (unsigned long long)cycles);
    return state == 42; /* keep `state` live */
}
