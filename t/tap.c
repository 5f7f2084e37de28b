/* A small TAP producer, in the spirit of c-tap-harness. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tap.h"

static int planned = -1, run, failed;

void plan(int count)
{
	planned = count;
	printf("1..%d\n", count);
	fflush(stdout);
}

static bool report(bool pass, const char *fmt, va_list ap)
{
	printf("%sok %d - ", pass ? "" : "not ", ++run);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	if (!pass)
		failed++;
	return pass;
}

bool ok(bool pass, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(pass, fmt, ap);
	va_end(ap);
	return pass;
}

bool is_int(long long want, long long got, const char *fmt, ...)
{
	va_list ap;
	bool pass = want == got;

	va_start(ap, fmt);
	report(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("    wanted %lld, got %lld", want, got);
	return pass;
}

void skip_all(const char *fmt, ...)
{
	va_list ap;

	printf("1..0 # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(0);
}

void diag(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "# ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

void bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(255);
}

int done_testing(void)
{
	if (planned < 0)
		plan(run);
	else if (planned != run)
		diag("planned %d tests but ran %d", planned, run);
	return failed || planned != run ? 1 : 0;
}
