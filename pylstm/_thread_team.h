/* The thread team of the float32 LSTM core: one parallel region per call, a barrier per step,
 * and a load balancer that splits the units between members by their measured speed.
 *
 * pl_team_run runs the work on nt - 1 helper POSIX threads and on the caller. Helpers are
 * started on first use and kept: after a run they spin PL_LINGER_NS for the next one, then
 * sleep (no core spins after a call beyond that), and a fork()ed child starts its own. A
 * helper woken on another member's CPU moves to one of its own (pl_leave_shared_cpu, Linux).
 * The barrier spins briefly, then yields the core, so a descheduled partner costs a time
 * slice, not a spinning core. Without POSIX threads (Windows), the team is the caller alone.
 *
 * The team knows nothing of LSTMs: a member asks pl_share for its items (panels of units, or
 * groups of them) and reports how many units they hold, which the balancer weighs its speed by.
 */
#ifndef PYLSTM_THREAD_TEAM_H
#define PYLSTM_THREAD_TEAM_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PL_MAX_THREADS 64

/* Load balance: a team splits the work in proportion to each member's measured speed
 * (cores of one machine need not be equally fast, and the others would wait for the slowest
 * at every step). pl_weight holds the estimates, pl_weight_run the ones a run uses (read by
 * every member, so all compute the same split). Which thread computes a unit never changes
 * its arithmetic: results stay the same bits whatever the split. */
static double pl_weight[PL_MAX_THREADS];
static double pl_weight_run[PL_MAX_THREADS];
static int pl_weight_nt;
static long long pl_busy_ns[PL_MAX_THREADS];
static int pl_units[PL_MAX_THREADS];

/* Makes pl_weight the estimates of teams of nt (tests set uneven weights through it). */
static inline void pl_weight_nt_set(int nt) { pl_weight_nt = nt; }

/* Items [*i0, *i1) of n for thread tid of nt, in proportion to pl_weight_run. */
static inline void pl_split(int n, int tid, int nt, int* i0, int* i1)
{
    double total = 0.0, before = 0.0;
    if (nt <= 1) {
        *i0 = 0;
        *i1 = n;
        return;
    }
    for (int t = 0; t < nt; t++) {
        total += pl_weight_run[t];
        if (t < tid)
            before += pl_weight_run[t];
    }
    *i0 = tid == 0 ? 0 : (int)(n * (before / total) + 0.5);
    *i1 = tid == nt - 1 ? n : (int)(n * ((before + pl_weight_run[tid]) / total) + 0.5);
}

/* Thread tid's items [*i0, *i1) of the ceil(H / width) items of `width` units each (panels of
 * the forward, column groups of the backward); records its units for the balancer. */
static inline void pl_share(int H, int width, int tid, int nt, int* i0, int* i1)
{
    pl_split((H + width - 1) / width, tid, nt, i0, i1);
    if (nt > 1) {
        const int ua = *i0 * width < H ? *i0 * width : H;
        const int ub = *i1 * width < H ? *i1 * width : H;
        pl_units[tid] = ub - ua;
    }
}

/* Thread team ---------------------------------------------------------------------------- */

typedef struct {
    int count;
    int sense;
    int nt;
} pl_barrier;

typedef void (*pl_work_fn)(void* arg, int tid, int nt, pl_barrier* bar);

/* The CPU each member of the current run is on (-1: not known), published at its start. */
static int pl_member_cpu[PL_MAX_THREADS];

static inline long long pl_now_ns(void)
{
    struct timespec ts;
#if defined(_WIN32)
    timespec_get(&ts, TIME_UTC);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#if defined(_WIN32)

static inline void pl_barrier_wait(pl_barrier* bar, int* local_sense)
{
    (void)bar;
    (void)local_sense;
}

static inline void pl_barrier_arrive(pl_barrier* bar, int* local_sense)
{
    (void)bar;
    (void)local_sense;
}

static inline void pl_barrier_finish(pl_barrier* bar, int local_sense)
{
    (void)bar;
    (void)local_sense;
}

static inline int pl_team_run(int nt, pl_work_fn fn, void* arg, int only_awake)
{
    pl_barrier bar = {0, 0, 1};
    (void)nt;
    (void)only_awake;
    fn(arg, 0, 1, &bar);
    return 1;
}

#else

#include <pthread.h>
#include <sched.h>

#include "_affinity.h"

static inline void pl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static __thread long long pl_wait_ns;   /* this thread's time waiting at barriers in a run */

/* Sense-reversing barrier: spins 2^12 pauses, then yields.
 * Split in two: pl_barrier_arrive (this thread's writes are done) and pl_barrier_finish
 * (wait for the others), so that a thread can do work that needs nobody else's in between. */
static inline void pl_barrier_arrive(pl_barrier* bar, int* local_sense)
{
    const int sense = !*local_sense;
    *local_sense = sense;
    if (bar->nt <= 1)
        return;
    if (__atomic_add_fetch(&bar->count, 1, __ATOMIC_ACQ_REL) == bar->nt) {
        __atomic_store_n(&bar->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->sense, sense, __ATOMIC_RELEASE);
    }
}

static inline void pl_barrier_finish(pl_barrier* bar, int local_sense)
{
    if (bar->nt <= 1 || __atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) == local_sense)
        return;
    const long long start = pl_now_ns();
    unsigned spins = 0;
    while (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) != local_sense) {
        if (spins < 4096) {
            spins++;
            pl_cpu_relax();
        } else {
            sched_yield();
        }
    }
    pl_wait_ns += pl_now_ns() - start;
}

static inline void pl_barrier_wait(pl_barrier* bar, int* local_sense)
{
    pl_barrier_arrive(bar, local_sense);
    pl_barrier_finish(bar, *local_sense);
}

/* The team's helper threads persist between runs (starting a thread costs more than waking
 * a sleeping one, which costs more than finding it spinning). After a run they spin
 * PL_LINGER_NS for the next one, then sleep on a condition variable. One run at a time per process: a caller that finds the
 * team busy (another Python thread inside the core) runs alone, with the same results.
 * A small run (`only_awake`) takes the team only while every helper is still spinning from
 * the run before (a loop of calls); otherwise it runs alone and pokes the sleeping helpers
 * awake for the next call, so that an occasional small call does not wait for a wake-up. */
#define PL_LINGER_NS 50000

typedef struct {
    pthread_mutex_t lock;       /* guards the sleep/wake of helpers */
    pthread_cond_t wake;
    pthread_mutex_t busy;       /* held by the caller running a team */
    int started;                /* helper threads alive in this process */
    unsigned generation;        /* one more for each run */
    int acks;                   /* helpers done with the current run */
    int awake;                  /* helpers not asleep on `wake` */
    unsigned pokes;             /* one more each time sleeping helpers are sent to spin */
    pl_work_fn fn;
    void* arg;
    int nt;
    pl_barrier bar;
    int atfork_registered;
} pl_pool_t;

static pl_pool_t pl_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                            PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, NULL, NULL, 1,
                            {0, 0, 1}, 0};

typedef struct {
    int tid;
    unsigned seen;              /* the generation before the helper's first run */
    unsigned pokes;             /* and the pokes */
} pl_helper_start;

static pl_helper_start pl_helper_starts[PL_MAX_THREADS];

/* Runs member tid's share and records its busy time (run time less barrier waits). */
static inline void pl_member_run(int tid)
{
    const long long start = pl_now_ns();
    pl_wait_ns = 0;
    pl_pool.fn(pl_pool.arg, tid, pl_pool.nt, &pl_pool.bar);
    pl_busy_ns[tid] = pl_now_ns() - start - pl_wait_ns;
}

/* After a run: each member's speed (units per busy ns) updates its weight (moving average),
 * for runs long enough to time (1 ms of work). */
static inline void pl_update_weights(int nt)
{
    double rate[PL_MAX_THREADS], mean = 0.0;
    for (int t = 0; t < nt; t++) {
        if (pl_busy_ns[t] < 1000000 / nt || pl_units[t] <= 0)
            return;
        rate[t] = (double)pl_units[t] / (double)pl_busy_ns[t];
        mean += rate[t] / nt;
    }
    for (int t = 0; t < nt; t++) {
        double w = 0.7 * pl_weight[t] + 0.3 * rate[t] / mean;
        pl_weight[t] = w < 0.25 ? 0.25 : (w > 4.0 ? 4.0 : w);
    }
}

/* A helper woken from sleep may be placed on the CPU of another member of the run (often
 * its waker's), where the two would take turns at every barrier: it moves off the CPUs of
 * the members before it (_affinity.h). */
static inline void pl_leave_shared_cpu(int tid)
{
    int taken[PL_MAX_THREADS];
    for (int t = 0; t < tid; t++)
        taken[t] = __atomic_load_n(&pl_member_cpu[t], __ATOMIC_ACQUIRE);
    __atomic_store_n(&pl_member_cpu[tid], pl_leave_cpus(taken, tid), __ATOMIC_RELEASE);
}

static void* pl_helper_main(void* p)
{
    const pl_helper_start* start = (const pl_helper_start*)p;
    const int tid = start->tid;
    unsigned seen = start->seen;
    unsigned pokes = start->pokes;
    for (;;) {
        unsigned g;
        long long spin_end = pl_now_ns() + PL_LINGER_NS;
        int spins = 0;
        while ((g = __atomic_load_n(&pl_pool.generation, __ATOMIC_ACQUIRE)) == seen) {
            const unsigned poked = __atomic_load_n(&pl_pool.pokes, __ATOMIC_ACQUIRE);
            if (++spins % 256 == 0 && poked != pokes) {
                pokes = poked;
                spin_end = pl_now_ns() + PL_LINGER_NS;      /* poked: spin longer */
            } else if (spins % 256 == 0 && pl_now_ns() > spin_end) {
                pthread_mutex_lock(&pl_pool.lock);
                __atomic_sub_fetch(&pl_pool.awake, 1, __ATOMIC_ACQ_REL);
                while ((g = __atomic_load_n(&pl_pool.generation, __ATOMIC_ACQUIRE)) == seen
                       && pl_pool.pokes == pokes)
                    pthread_cond_wait(&pl_pool.wake, &pl_pool.lock);
                __atomic_add_fetch(&pl_pool.awake, 1, __ATOMIC_ACQ_REL);
                pokes = pl_pool.pokes;
                pthread_mutex_unlock(&pl_pool.lock);
                break;
            }
            pl_cpu_relax();
        }
        if (g == seen)
            continue;           /* poked, not given work: spin again for the next run */
        seen = g;
        if (tid < pl_pool.nt) {
            pl_leave_shared_cpu(tid);
            pl_member_run(tid);
        }
        __atomic_add_fetch(&pl_pool.acks, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* In a child after fork() the helpers do not exist: start afresh. */
static void pl_pool_after_fork_child(void)
{
    pthread_mutex_t fresh_mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    pl_pool.lock = fresh_mutex;
    pl_pool.busy = fresh_mutex;
    pl_pool.wake = fresh_cond;
    pl_pool.started = 0;
    pl_pool.awake = 0;
}

/* Calls of a loop come at most this far apart (end of one run to the start of the next). */
#define PL_LOOP_GAP_NS 200000
static long long pl_small_run_end;      /* when the last small run alone ended */

/* Sends sleeping helpers back to spinning, and spinning ones PL_LINGER_NS more. */
static inline void pl_pool_poke(void)
{
    pthread_mutex_lock(&pl_pool.lock);
    __atomic_add_fetch(&pl_pool.pokes, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&pl_pool.wake);
    pthread_mutex_unlock(&pl_pool.lock);
}

/* Starts helper threads until the pool has nt - 1 (fewer if the system refuses one); the
 * caller holds pl_pool.busy. */
static inline void pl_pool_grow(int nt)
{
    if (!pl_pool.atfork_registered) {
        pthread_atfork(NULL, NULL, pl_pool_after_fork_child);
        pl_pool.atfork_registered = 1;
    }
    while (pl_pool.started < nt - 1) {
        const int t = pl_pool.started + 1;
        pthread_t thread;
        pthread_attr_t attr;
        int failed;
        pl_helper_starts[t].tid = t;
        pl_helper_starts[t].seen = pl_pool.generation;
        pl_helper_starts[t].pokes = __atomic_load_n(&pl_pool.pokes, __ATOMIC_ACQUIRE);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        failed = pthread_create(&thread, &attr, pl_helper_main, &pl_helper_starts[t]);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        __atomic_add_fetch(&pl_pool.awake, 1, __ATOMIC_ACQ_REL);
        pl_pool.started = t;
    }
}

/* A small run while a helper sleeps: alone, releasing pl_pool.busy first. If the small run
 * before this one ended moments ago (a loop of calls), the helpers are woken at the end, so
 * that the next call finds them spinning. Not at the start: a woken helper spinning beside
 * this run slows it (it can share its core), and an occasional call wakes no one. */
static inline void pl_run_alone_small(pl_work_fn fn, void* arg)
{
    pl_barrier alone = {0, 0, 1};
    const long long begin = pl_now_ns();
    const int in_loop =
        begin - __atomic_load_n(&pl_small_run_end, __ATOMIC_RELAXED) < PL_LOOP_GAP_NS;
    pthread_mutex_unlock(&pl_pool.busy);
    fn(arg, 0, 1, &alone);
    __atomic_store_n(&pl_small_run_end, pl_now_ns(), __ATOMIC_RELAXED);
    if (in_loop)
        pl_pool_poke();
}

/* The load-balance weights a run of nt uses (all equal for a new team size). */
static inline void pl_weights_for_run(int nt)
{
    if (pl_weight_nt != nt) {
        for (int t = 0; t < nt; t++)
            pl_weight[t] = 1.0;
        pl_weight_nt = nt;
    }
    for (int t = 0; t < nt; t++)
        pl_weight_run[t] = pl_weight[t];
}

/* Before a run: the caller's CPU is known, the helpers' not yet. */
static inline void pl_publish_caller_cpu(int nt)
{
    __atomic_store_n(&pl_member_cpu[0], pl_current_cpu(), __ATOMIC_RELEASE);
    for (int t = 1; t < nt; t++)
        __atomic_store_n(&pl_member_cpu[t], -1, __ATOMIC_RELEASE);
}

/* Waits until every helper has finished the current run. */
static inline void pl_pool_wait_acks(void)
{
    unsigned spins = 0;
    while (__atomic_load_n(&pl_pool.acks, __ATOMIC_ACQUIRE) < pl_pool.started) {
        if (spins < 4096) {
            spins++;
            pl_cpu_relax();
        } else {
            sched_yield();
        }
    }
}

/* Runs fn(arg, tid, nt, bar) on nt threads, the caller being tid 0; returns the team size
 * (smaller than asked, down to 1, if threads could not be started or the team is busy, or
 * with `only_awake` if a helper was asleep). */
static inline int pl_team_run(int nt, pl_work_fn fn, void* arg, int only_awake)
{
    pl_barrier alone = {0, 0, 1};
    if (nt > PL_MAX_THREADS)
        nt = PL_MAX_THREADS;
    if (nt <= 1 || pthread_mutex_trylock(&pl_pool.busy) != 0) {
        fn(arg, 0, 1, &alone);
        return 1;
    }
    pl_pool_grow(nt);
    if (nt > pl_pool.started + 1)
        nt = pl_pool.started + 1;
    if (only_awake && nt > 1 &&
            __atomic_load_n(&pl_pool.awake, __ATOMIC_ACQUIRE) < pl_pool.started) {
        pl_run_alone_small(fn, arg);
        return 1;
    }
    pl_pool.fn = fn;
    pl_pool.arg = arg;
    pl_pool.nt = nt;
    pl_pool.bar.count = 0;
    pl_pool.bar.sense = 0;
    pl_pool.bar.nt = nt;
    pl_pool.acks = 0;
    pl_weights_for_run(nt);
    pl_publish_caller_cpu(nt);
    pthread_mutex_lock(&pl_pool.lock);
    __atomic_add_fetch(&pl_pool.generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pl_pool.wake);
    pthread_mutex_unlock(&pl_pool.lock);
    pl_member_run(0);
    pl_pool_wait_acks();
    pl_update_weights(nt);
    pthread_mutex_unlock(&pl_pool.busy);
    return nt;
}

#endif

#endif
