/* Timing, medians, random numbers, progress and records for rewire-bench. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

size_t ps;
int reps = 3;
bool quick = true;
bool bench_failed;
FILE *csv_file;

double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

void rnd_seed(uint64_t seed)
{
	rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

void shuffle(size_t *v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd() % i, t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

void progress(const char *fmt, ...)
{
	va_list ap;

	if (!isatty(STDERR_FILENO))
		return;
	fputs("\r\033[K  ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void progress_done(void)
{
	if (isatty(STDERR_FILENO))
		fputs("\r\033[K", stderr);
}

void record(const char *section, const char *what, const char *metric, double value)
{
	extern FILE *csv_file;

	/* Names may hold commas: quote them. */
	if (csv_file)
		fprintf(csv_file, "\"%s\",\"%s\",\"%s\",%.6g\n", section, what, metric, value);
}

static int goals_met, goals_missed, goals_unmeasured;

void goal(const char *what, double ratio, const char *target, bool met)
{
	if (ratio <= 0) {
		printf("  %-58s    n/a  goal %s: not measured here\n", what, target);
		goals_unmeasured++;
	} else {
		printf("  %-58s %6.2f  goal %s: %s\n", what, ratio, target, met ? "met" : "MISSED");
		goals_met += met;
		goals_missed += !met;
	}
}

void figure(const char *what, double ratio)
{
	if (ratio > 0)
		printf("  %-58s %6.2f  (a figure, no goal)\n", what, ratio);
}

void goals_summary(void)
{
	printf("\ngoals: %d met, %d missed, %d not measured here\n", goals_met, goals_missed,
	       goals_unmeasured);
}

double peak_rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	double kb = 0;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = strtod(line + 6, NULL);
	if (f)
		fclose(f);
	return kb * 1024;
}

/* Writing 5 to clear_refs resets the peak (Linux 4.0 and later). */
void reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");

	if (f) {
		fputs("5", f);
		fclose(f);
	}
}
