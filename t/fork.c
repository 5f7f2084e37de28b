/* fork: the child does not inherit arena memory and every call on the
 * inherited arena fails cleanly; the parent's data stays intact. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static sigjmp_buf jump;

static void on_segv(int sig)
{
	siglongjmp(jump, sig);
}

static const char *const child_checks[] = {
	"child: the arena range is not mapped",
	"child: reading arena memory raises SIGSEGV",
	"child: alloc fails with EFAULT",
	"child: move fails with -EFAULT",
	"child: free fails with -EFAULT, also given NULL",
	"child: stats fail with -EFAULT",
	"child: destroy of the inherited arena is safe",
	"child: backend_name fails with EFAULT",
};

static int child(struct rewire_arena *a, char *p)
{
	unsigned char vec;
	struct rewire_stats st;
	volatile int failed = 0;

	if (!(mincore(p, page_size, &vec) == -1 && errno == ENOMEM))
		failed |= 1 << 0;
	signal(SIGSEGV, on_segv);
	if (!sigsetjmp(jump, 1)) {
		(void)*(volatile char *)p;
		failed |= 1 << 1;
	}
	signal(SIGSEGV, SIG_DFL);
	errno = 0;
	if (rewire_alloc(a, page_size, 0) || errno != EFAULT)
		failed |= 1 << 2;
	if (rewire_move(a, p + 8 * page_size, p, page_size) != -EFAULT)
		failed |= 1 << 3;
	if (rewire_free(a, p) != -EFAULT || rewire_free(a, NULL) != -EFAULT)
		failed |= 1 << 4;
	if (rewire_arena_stats(a, &st) != -EFAULT)
		failed |= 1 << 5;
	errno = 0;
	if (rewire_backend_name(a) || errno != EFAULT)
		failed |= 1 << 7;
	/* The child may map something else where the arena was. */
	if (mmap(p, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		 -1, 0) != p)
		failed |= 1 << 6;
	p[0] = 42;
	rewire_arena_destroy(a);
	if (p[0] != 42)
		failed |= 1 << 6;
	return failed;
}

int main(void)
{
	struct rewire_arena *a = test_arena(64, 0, 0);
	uint64_t model[16] = { 0 };
	char *p = rewire_alloc(a, 8 * page_size, 0);
	int status = -1;
	pid_t pid;

	plan(12);
	if (!p || !rewire_alloc(a, 8 * page_size, REWIRE_ALLOC_HOLES))
		bail("no memory");
	for (int i = 0; i < 8; i++) {
		model[i] = 10 + (uint64_t)i;
		tag_page(p + (size_t)i * page_size, model[i]);
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(child(a, p));
	ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status),
	   "the child ran to the end");
	for (unsigned i = 0; i < sizeof(child_checks) / sizeof(child_checks[0]); i++) {
		/* valgrind maps the range again in the child; it is not
		 * readable memory of the program there, but no SIGSEGV. */
		if (i == 1 && test_init())
			ok(1, "# SKIP %s: not under valgrind", child_checks[i]);
		else
			ok(WIFEXITED(status) && !(WEXITSTATUS(status) & 1 << i), "%s", child_checks[i]);
	}
	ok(check_pages(p, model, 16), "the parent's pages are intact");
	is_int(0, rewire_move(a, p + 8 * page_size, p, 8 * page_size), "the parent keeps working");
	memmove(model + 8, model, 8 * sizeof(*model));
	memset(model, 0, 8 * sizeof(*model));
	ok(check_pages(p, model, 16), "and its data is where the move put it");
	rewire_arena_destroy(a);
	return done_testing();
}
