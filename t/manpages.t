#!/bin/sh
# Every exported symbol has a man page, and every man page is lint-clean.
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/..}
top_builddir=${top_builddir:-$here/..}
man=$(cd "$top_srcdir/man" && pwd)
lib=$top_builddir/src/.libs/librewire.so
NM=${NM:-nm}
GROFF=${GROFF:-$(command -v groff)}
MANDOC=${MANDOC:-$(command -v mandoc)}

[ -f "$lib" ] || { echo "1..0 # SKIP no shared library built ($lib)"; exit 0; }
[ -n "$GROFF" ] || { echo "1..0 # SKIP groff is not installed"; exit 0; }

# $NM may carry options (libtool's is "nm -B"): split it. A failing nm must
# fail the test, not leave it with no symbols to check.
# shellcheck disable=SC2086
dyn=$($NM -D --defined-only "$lib") || {
	echo "1..1"
	echo "not ok 1 - $NM cannot list the symbols of $lib"
	exit 0
}
syms=$(printf '%s\n' "$dyn" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u)
pages=$(cd "$man" && ls man*/*.[0-9])
n=0
for s in $syms; do n=$((n + 1)); done
for p in $pages; do n=$((n + 1)); [ -n "$MANDOC" ] && n=$((n + 1)); done
n=$((n + 2))
echo "1..$n"

i=0
for s in $syms; do
	i=$((i + 1))
	if [ -f "$man/man3/$s.3" ]; then
		echo "ok $i - $s has a man page"
	else
		echo "not ok $i - $s has no man page man3/$s.3"
	fi
done

i=$((i + 1))
if [ -n "$syms" ]; then
	echo "ok $i - the library exports symbols to check"
else
	echo "not ok $i - $lib exports no symbols"
fi

i=$((i + 1))
stray=$(printf '%s\n' "$dyn" | awk '$2 == "T" && $3 !~ /^rewire_/ { print $3 }')
if [ -z "$stray" ]; then
	echo "ok $i - only rewire_ symbols are exported"
else
	echo "not ok $i - exported without the rewire_ prefix: $stray"
fi

for p in $pages; do
	i=$((i + 1))
	out=$(cd "$man" && "$GROFF" -man -ww -z "$p" 2>&1)
	if [ -z "$out" ]; then
		echo "ok $i - groff -ww is silent on $p"
	else
		echo "not ok $i - groff -ww warns on $p"
		echo "$out" | sed 's/^/# /'
	fi
	[ -n "$MANDOC" ] || continue
	i=$((i + 1))
	# .so pages are aliases; mandoc checks their targets.
	if head -n 1 "$man/$p" | grep -q '^\.so '; then
		target=$man/$(sed -n 's/^\.so //p' "$man/$p")
		if [ -f "$target" ]; then
			echo "ok $i - $p is an alias of an existing page"
		else
			echo "not ok $i - $p points at a missing page"
		fi
		continue
	fi
	out=$("$MANDOC" -T lint -W warning "$man/$p" 2>&1)
	if [ -z "$out" ]; then
		echo "ok $i - mandoc -T lint is silent on $p"
	else
		echo "not ok $i - mandoc -T lint warns on $p"
		echo "$out" | sed 's/^/# /'
	fi
done
