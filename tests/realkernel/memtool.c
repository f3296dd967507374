/* memtool: the guest workload of the realkernel tests (built by tests/realkernel/vm.py).
 *
 *   memtool POLICY TOTAL_MB HOT_MB SECONDS [PAUSE_US]
 *
 * POLICY is the task mempolicy the memory is allocated under: "wi" (MPOL_WEIGHTED_INTERLEAVE
 * over nodes 0-1, i.e. the global weights in /sys/kernel/mm/mempolicy/weighted_interleave),
 * "il" (MPOL_INTERLEAVE), "bindN" (MPOL_BIND to node N) or "local". TOTAL_MB of anonymous
 * memory is mapped (THP off for the mapping: ratios are per 4 KiB page) and touched page by
 * page, then the policy goes back to default so that only DAMOS moves pages afterwards. It then
 * prints one line and flushes it:
 *
 *   READY pid=<pid> start=<address> pages=<total pages> hot_pages=<pages> page=<bytes>
 *
 * and, for SECONDS seconds (or until killed), writes one byte of every page of the first
 * HOT_MB MiB in a loop (HOT_MB 0: just sleeps), pausing PAUSE_US microseconds after each pass
 * (default 0; leaves CPU time to others while the set stays hot). The tests read the page
 * placement themselves with move_pages(pid, ...).
 *
 * The TCG accessed-bit trick: QEMU-TCG sets a PTE's Accessed bit only when it refills its
 * soft TLB, and x86 Linux clears A bits for DAMON without flushing the TLB, so a loop over a
 * resident set would look idle to DAMON. After every pass, mprotect() on a 64-page dummy
 * mapping (twice) makes Linux flush this mm's whole TLB (the range exceeds
 * tlb_single_page_flush_ceiling), so the next pass sets A bits again. On real hardware it
 * costs two syscalls per pass. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MPOL_DEFAULT 0
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_WEIGHTED_INTERLEAVE 6

static int set_policy(const char *policy) {
    unsigned long mask = 3; /* nodes 0 and 1 */
    if (!strcmp(policy, "local")) return 0;
    if (!strcmp(policy, "wi")) return syscall(SYS_set_mempolicy, MPOL_WEIGHTED_INTERLEAVE, &mask, 64);
    if (!strcmp(policy, "il")) return syscall(SYS_set_mempolicy, MPOL_INTERLEAVE, &mask, 64);
    if (!strncmp(policy, "bind", 4) && policy[4] >= '0' && policy[4] <= '9') {
        mask = 1UL << atoi(policy + 4);
        return syscall(SYS_set_mempolicy, MPOL_BIND, &mask, 64);
    }
    fprintf(stderr, "memtool: unknown policy %s (wi, il, bindN, local)\n", policy);
    exit(2);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: memtool POLICY TOTAL_MB HOT_MB SECONDS [PAUSE_US]\n");
        return 2;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t total = strtoul(argv[2], NULL, 0) << 20, hot = strtoul(argv[3], NULL, 0) << 20;
    double seconds = atof(argv[4]);
    long pause_us = argc == 6 ? atol(argv[5]) : 0;
    if (hot > total) {
        fprintf(stderr, "memtool: HOT_MB exceeds TOTAL_MB\n");
        return 2;
    }
    if (set_policy(argv[1])) {
        perror("memtool: set_mempolicy");
        return 1;
    }
    char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("memtool: mmap");
        return 1;
    }
    madvise(p, total, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < total; i += page) p[i] = 1;
    if (syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0)) {
        perror("memtool: set_mempolicy(MPOL_DEFAULT)");
        return 1;
    }
    size_t dlen = 64 * page;
    char *dummy = mmap(NULL, dlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dummy == MAP_FAILED) {
        perror("memtool: mmap");
        return 1;
    }
    for (size_t i = 0; i < dlen; i += page) dummy[i] = 1;
    printf("READY pid=%d start=0x%lx pages=%zu hot_pages=%zu page=%ld\n", getpid(),
           (unsigned long)p, total / page, hot / page, page);
    fflush(stdout);
    double end = now() + seconds;
    while (now() < end) {
        if (!hot) {
            usleep(100000);
            continue;
        }
        for (size_t i = 0; i < hot; i += page) p[i]++;
        mprotect(dummy, dlen, PROT_READ);
        mprotect(dummy, dlen, PROT_READ | PROT_WRITE);
        if (pause_us > 0) usleep(pause_us);
    }
    return 0;
}
