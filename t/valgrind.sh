#!/bin/sh
# Run one test under valgrind's memcheck (make check-valgrind). Scripts run
# as they are. valgrind 3.19 does not know mlock2(2) or userfaultfd(2): the
# library then locks another way and "auto" chooses mremap, so the warnings
# about those syscalls in the log are expected.
test=$1
case $(od -An -c -N4 "$test" | tr -d ' ') in
*ELF*) ;;
*) exec "$@" ;;
esac
log=$test.valgrind.log
export REWIRE_UNDER_VALGRIND=1
valgrind --error-exitcode=99 --fair-sched=yes --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --track-fds=no --child-silent-after-fork=yes \
	--log-file="$log" "$@"
rc=$?
if [ "$rc" -ne 0 ]; then
	sed 's/^/# /' "$log"
fi
exit "$rc"
