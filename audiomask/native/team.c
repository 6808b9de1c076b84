/* am_team_run: run fn(arg, id, T) on a team of T threads (id = 0 … T−1), the caller being 0.
 *
 * PyTorch's CPU build runs its intra-op work on GNU OpenMP, whose idle threads spin for
 * milliseconds after every parallel op; threads of our own would fight them for the cores (on
 * 2 cores that made a 1 ms pass take 6). So when that runtime is loaded (GOMP_parallel is
 * visible in the process) the team is PyTorch's own OpenMP team; otherwise POSIX threads are
 * started for the call. T may come out smaller than asked (OpenMP's choice, or a thread that
 * could not be created): fn gets the real T and must split its work by it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>

#include "native.h"

typedef void (*am_gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static am_gomp_parallel_fn am_gomp_parallel;
static int (*am_omp_thread_num)(void), (*am_omp_num_threads)(void);
static int am_gomp_looked, am_gomp_off;

/* Tests switch the OpenMP team off (1) to run the POSIX-thread path. */
AM_EXPORT void am_team_posix_threads(int32_t on) { __atomic_store_n(&am_gomp_off, on != 0, __ATOMIC_RELAXED); }

static void am_find_gomp(void) {
    if (__atomic_load_n(&am_gomp_looked, __ATOMIC_ACQUIRE)) return;
    am_omp_thread_num = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_thread_num");
    am_omp_num_threads = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_num_threads");
    am_gomp_parallel = (am_gomp_parallel_fn)dlsym(RTLD_DEFAULT, "GOMP_parallel");
    if (!am_omp_thread_num || !am_omp_num_threads) am_gomp_parallel = NULL;
    __atomic_store_n(&am_gomp_looked, 1, __ATOMIC_RELEASE);
}

typedef struct {
    am_team_fn fn;
    void *arg;
    int threads, go;
} am_team;

typedef struct {
    am_team *team;
    int id;
} am_member;

static void am_team_omp(void *p) {
    am_team *t = (am_team *)p;
    t->fn(t->arg, am_omp_thread_num(), am_omp_num_threads());
}

static void *am_team_pthread(void *p) {
    am_member *m = (am_member *)p;
    while (!__atomic_load_n(&m->team->go, __ATOMIC_ACQUIRE)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    m->team->fn(m->team->arg, m->id, m->team->threads);
    return NULL;
}

void am_team_run(am_team_fn fn, void *arg, int threads) {
    if (threads > AM_MAX_TEAM) threads = AM_MAX_TEAM;
    if (threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
    am_team team = {fn, arg, threads, 0};
    am_find_gomp();
    if (am_gomp_parallel && !__atomic_load_n(&am_gomp_off, __ATOMIC_RELAXED)) {
        am_gomp_parallel(am_team_omp, &team, (unsigned)threads, 0);
        return;
    }
    am_member members[AM_MAX_TEAM];
    pthread_t ids[AM_MAX_TEAM];
    int started = 1;
    for (int i = 0; i < threads; ++i) members[i] = (am_member){&team, i};
    for (; started < threads; ++started)
        if (pthread_create(&ids[started], NULL, am_team_pthread, &members[started]) != 0) break;
    team.threads = started; /* the members wait at the gate until this is final */
    __atomic_store_n(&team.go, 1, __ATOMIC_RELEASE);
    am_team_pthread(&members[0]);
    for (int i = 1; i < started; ++i) pthread_join(ids[i], NULL);
}
