/* rewire-bench: what a database engineer runs to decide whether to adopt
 * rewire. Compares rewire with glibc and jemalloc on growing a buffer,
 * churning page runs and compacting, and measures page moves per backend;
 * prints medians of repeated runs and ratios against rewire. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common.h"
#include "rewire.h"

extern FILE *csv_file;

static void usage(FILE *f)
{
	fprintf(f, "usage: rewire-bench [--quick | --full] [--size BYTES] [--pages N] [--ops N]\n"
		   "                    [--reps R] [--only SECTIONS] [--csv FILE] [--plot FILE.png]\n"
		   "sections: growth, churn, compaction, moves, threads, bufferpool, scale, overhead\n");
}

static bool wanted(const char *only, const char *section)
{
	const char *p = only ? strstr(only, section) : section;

	return p != NULL;
}

static void write_curves(FILE *f, const struct curve *c, int n)
{
	for (int i = 0; i < n; i++) {
		fprintf(f, "# %s\n", c[i].name);
		for (int k = 0; k < c[i].n; k++)
			fprintf(f, "%g %g\n", c[i].x[k], c[i].y[k]);
		fprintf(f, "\n\n");
	}
}

static int plot(const char *png, size_t pages)
{
	char data[] = "/tmp/rewire-bench-XXXXXX";
	FILE *f, *gp;
	int fd;

	if (system("command -v gnuplot >/dev/null 2>&1")) {
		printf("\n--plot: gnuplot is not installed (apt-get install gnuplot-nox); no plot\n");
		return 0;
	}
	fd = mkstemp(data);
	if (fd < 0)
		return -1;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(data);
		return -1;
	}
	write_curves(f, run_curves, nrun_curves);
	write_curves(f, growth_curves, ngrowth_curves);
	fclose(f);
	gp = popen("gnuplot", "w");
	if (!gp) {
		unlink(data);
		return -1;
	}
	fprintf(gp, "set terminal png size 1200,500\nset output '%s'\nset multiplot layout 1,2\n"
		    "set logscale xy\nset xlabel 'run length (pages)'\nset ylabel 'ns per page'\n"
		    "set title 'Moving %zu pages in runs'\nplot", png, pages);
	for (int i = 0; i < nrun_curves; i++)
		fprintf(gp, "%s '%s' index %d with linespoints title '%s'", i ? "," : "", data, i,
			run_curves[i].name);
	fprintf(gp, "\nset xlabel 'buffer size (bytes)'\nset ylabel 'elapsed ms'\n"
		    "set title 'Growing a buffer by doubling'\nplot");
	for (int i = 0; i < ngrowth_curves; i++)
		fprintf(gp, "%s '%s' index %d with linespoints title '%s'", i ? "," : "", data,
			nrun_curves + i, growth_curves[i].name);
	fprintf(gp, "\nunset multiplot\n");
	fd = pclose(gp);
	unlink(data);
	if (fd)
		return -1;
	printf("\nplot written to %s\n", png);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "full", no_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "pages", required_argument, NULL, 'n' },
		{ "ops", required_argument, NULL, 'o' },
		{ "reps", required_argument, NULL, 'r' },
		{ "only", required_argument, NULL, 'O' },
		{ "csv", required_argument, NULL, 'c' },
		{ "plot", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	size_t size = (size_t)1 << 30, pages = 65536;
	long ops = 0;
	int c, r = 0;
	const char *only = NULL, *png = NULL;
	struct utsname u;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			quick = true;
			break;
		case 'f':
			quick = false;
			break;
		case 's':
			size = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			pages = strtoull(optarg, NULL, 0);
			break;
		case 'o':
			ops = atol(optarg);
			break;
		case 'r':
			r = atoi(optarg);
			break;
		case 'O':
			only = optarg;
			break;
		case 'c':
			csv_file = fopen(optarg, "w");
			if (!csv_file) {
				perror(optarg);
				return 1;
			}
			fprintf(csv_file, "section,case,metric,value\n");
			break;
		case 'p':
			png = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	reps = r ? r : quick ? 3 : 7;
	if (!ops)
		ops = quick ? 200000 : 2000000;
	if (optind < argc || reps < 1 || reps > 31 || pages < 128 || size < (1 << 20) ||
	    ops < 1) {
		usage(stderr);
		return 2;
	}
	pages -= pages % 64;
	uname(&u);
	printf("rewire-bench %s on Linux %s, %ld CPUs, page size %zu; medians of %d runs%s\n",
	       rewire_version(), u.release, sysconf(_SC_NPROCESSORS_ONLN), ps, reps,
	       quick ? " (quick mode)" : "");
	if (wanted(only, "growth"))
		bench_growth(size);
	if (wanted(only, "churn"))
		bench_churn(ops);
	if (wanted(only, "compaction"))
		bench_compaction(pages);
	if (wanted(only, "moves"))
		bench_moves(pages);
	if (wanted(only, "threads"))
		bench_threads();
	if (wanted(only, "bufferpool"))
		bench_bufferpool();
	if (wanted(only, "scale"))
		bench_scale();
	if (wanted(only, "overhead"))
		bench_overhead();
	/* Not by default: it compares kernel paths, for make bench-vm. */
	if (only && wanted(only, "kernel"))
		bench_kernel(pages);
	if (png) {
		bench_run_lengths(pages);
		if (plot(png, pages))
			fprintf(stderr, "rewire-bench: gnuplot failed to draw %s\n", png);
	}
	goals_summary();
	if (csv_file)
		fclose(csv_file);
	if (bench_failed)
		fprintf(stderr, "rewire-bench: an operation failed or left wrong data (see above)\n");
	return bench_failed ? 1 : 0;
}
