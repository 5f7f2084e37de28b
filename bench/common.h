/* What the parts of rewire-bench share: timing, medians, random numbers,
 * progress on a terminal, and the machine-readable record. */
#ifndef REWIRE_BENCH_COMMON_H
#define REWIRE_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern size_t ps;		/* page size */
extern int reps;		/* runs per measurement; medians are printed */
extern bool quick;
/* Set when an operation fails or data comes out wrong: the exit status. */
extern bool bench_failed;

double now_ns(void);
double median(double *v, int n);
uint64_t rnd(void);
void rnd_seed(uint64_t seed);
void shuffle(size_t *v, size_t n);

/* A line on stderr that rewrites itself, on a terminal only. */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void progress_done(void);

/* One figure for --csv: section, case, metric, value. */
void record(const char *section, const char *what, const char *metric, double value);

/* A goal line: "name  ratio  goal: met/MISSED", or "not measured here"
 * when ratio is 0; counted for goals_summary(). */
void goal(const char *what, double ratio, const char *target, bool met);
/* A ratio worth printing that no code could be held to (rewire-bench(1)
 * says why for each). */
void figure(const char *what, double ratio);
/* The last line of a run: goals met, missed, not measured. */
void goals_summary(void);

/* Peak resident memory of this process, in bytes, and its reset. */
double peak_rss(void);
void reset_peak_rss(void);

/* The sections; each prints its table. */
void bench_moves(size_t npages);
void bench_kernel(size_t npages);
void bench_growth(size_t max_bytes);
void bench_churn(long ops);
void bench_compaction(size_t npages);
void bench_threads(void);
void bench_bufferpool(void);
void bench_scale(void);
void bench_overhead(void);
/* A mapping of npages like a uffd arena's, and its userfaultfd. */
int raw_uffd_map(char **p, size_t npages, int *fd);
/* One UFFDIO_MOVE of len bytes on that mapping; false if refused. */
bool raw_uffd_move(int fd, char *dst, char *src, size_t len);
/* The kernel's own evict+load per page: one UFFDIO_MOVE, and MADV_DONTNEED
 * plus a fault; false where uffd is missing. */
bool raw_evict_load_ns(double *move_ns, double *plain_ns);

/* Data for --plot, filled by the sections. */
struct curve {
	const char *name;
	int n;
	double x[32], y[32];
};
extern struct curve growth_curves[4], run_curves[4];
extern int ngrowth_curves, nrun_curves;
void bench_run_lengths(size_t npages);

#endif
