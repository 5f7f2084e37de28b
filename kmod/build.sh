#!/bin/sh
# Build rewire.ko for one kernel tree: kmod/build.sh [--test-hooks] [--gcov]
# KDIR OUTDIR. The sources are copied to OUTDIR, so a read-only source tree
# (make distcheck) works; any compiler warning fails the build. --test-hooks
# builds in break_for_test, for the test suite's negative controls only;
# --gcov profiles the module for gcov (a kernel with CONFIG_GCOV_KERNEL: the
# counts appear under /sys/kernel/debug/gcov, OUTDIR/rewire.gcno beside).
set -eu
cflags=
gcov=
while :; do
	case $1 in
	--test-hooks) cflags=-DREWIRE_TEST_HOOKS ;;
	--gcov) gcov=y ;;
	*) break ;;
	esac
	shift
done
kdir=$1
out=$2
src=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$out"
for f in Kbuild rewire.c compat.h rewire_uapi.h; do
	cp "$src/$f" "$out/$f"
done
chmod u+w "$out"/*
log="$out/build.log"
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$kdir" M="$(cd "$out" && pwd)" REWIRE_CFLAGS="$cflags" REWIRE_GCOV="$gcov" modules >"$log" 2>&1; then
	cat "$log" >&2
	exit 1
fi
if grep -E 'warning:|error:' "$log" >&2; then
	echo "build.sh: the module builds with warnings against $kdir" >&2
	exit 1
fi
test -f "$out/rewire.ko"
