/* A small TAP producer: plan, ok, is_int, skip_all, diag, bail. */
#ifndef REWIRE_TAP_H
#define REWIRE_TAP_H

#include <stdbool.h>

void plan(int count);
bool ok(bool pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool is_int(long long want, long long got, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void skip_all(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Exit status for main: nonzero if any test failed or the count was wrong. */
int done_testing(void);

#endif
