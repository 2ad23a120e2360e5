/* Keeping threads that compute side by side on CPUs of their own (Linux).
 *
 * The scheduler often wakes or starts a thread on the CPU of the thread that woke or started
 * it, and does not move either while both stay busy: two threads meant to run in parallel
 * then take turns on one core. pl_leave_cpus moves the calling thread off CPUs its partners
 * are on, to another CPU it may run on, by narrowing its affinity for the move and restoring
 * it at once (restoring does not move it back): its affinity is left as it was. Off Linux it
 * does nothing and the CPU is unknown (-1).
 */
#ifndef PYLSTM_AFFINITY_H
#define PYLSTM_AFFINITY_H

#if defined(__linux__) && defined(_GNU_SOURCE)

#include <sched.h>

static inline int pl_current_cpu(void) { return sched_getcpu(); }

/* If the calling thread runs on one of taken[0, n) (-1 entries ignored), moves it to a CPU
 * of its affinity that is not; returns the CPU it runs on after (-1 if unknown). */
static inline int pl_leave_cpus(const int* taken, int n)
{
    const int cpu = sched_getcpu();
    cpu_set_t allowed, elsewhere;
    int shared = 0;
    for (int i = 0; i < n; i++)
        shared |= taken[i] == cpu;
    if (!shared || cpu < 0 || sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return cpu;
    elsewhere = allowed;
    for (int i = 0; i < n; i++)
        if (taken[i] >= 0 && taken[i] < CPU_SETSIZE)
            CPU_CLR(taken[i], &elsewhere);
    if (CPU_COUNT(&elsewhere) > 0 && sched_setaffinity(0, sizeof(elsewhere), &elsewhere) == 0)
        sched_setaffinity(0, sizeof(allowed), &allowed);
    return sched_getcpu();
}

#else

static inline int pl_current_cpu(void) { return -1; }

static inline int pl_leave_cpus(const int* taken, int n)
{
    (void)taken;
    (void)n;
    return -1;
}

#endif

#endif
