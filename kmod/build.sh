#!/bin/sh
# Build rewire.ko for one kernel tree: kmod/build.sh [--test-hooks] KDIR
# OUTDIR. The sources are copied to OUTDIR, so a read-only source tree (make
# distcheck) works; any compiler warning fails the build. --test-hooks
# builds in break_for_test, for the test suite's negative controls only.
set -eu
cflags=
if [ "$1" = --test-hooks ]; then
	cflags=-DREWIRE_TEST_HOOKS
	shift
fi
kdir=$1
out=$2
src=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$out"
for f in Kbuild rewire.c compat.h rewire_uapi.h; do
	cp "$src/$f" "$out/$f"
done
chmod u+w "$out"/*
log="$out/build.log"
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$kdir" M="$(cd "$out" && pwd)" REWIRE_CFLAGS="$cflags" modules >"$log" 2>&1; then
	cat "$log" >&2
	exit 1
fi
if grep -E 'warning:|error:' "$log" >&2; then
	echo "build.sh: the module builds with warnings against $kdir" >&2
	exit 1
fi
test -f "$out/rewire.ko"
