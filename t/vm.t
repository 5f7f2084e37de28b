#!/bin/sh
# The kernel module's tests: for each installed kernel that has headers
# (Debian 12: 6.1 and 6.12), and each kernel tools/fetch-kernels prepared
# (trixie-backports' and sid's, 7.x, each with a chroot of the suite that
# built it, where its module is built), build rewire.ko, pack it with
# busybox and the test programs into an initramfs, boot it under QEMU's TCG
# with 2 vCPUs on 2 NUMA nodes, run every program with REWIRE_BACKEND=kmod (t/vm/init), and
# relay each TAP line here, named by kernel. Each program also fails on any
# kernel warning logged while it ran; Mlocked and AnonPages must return to
# where they were; the kernel may be tainted by nothing but the module (O, E).
#
# The debugging kernel of tools/build-debug-kernel (lockdep, KASAN, DEBUG_VM,
# the page-table check, KFENCE...; listed in $REWIRE_KERNEL_CACHE/debug-kernels)
# boots with page_table_check=on panic_on_warn=1 and runs the module's own
# programs (t/kmod.t, t/fuzz.t, the TLB test on 4 vCPUs: under KASAN and TCG
# the library's suites would take most of an hour; VM_DEBUG_FULL=1 runs them
# too), its module built with gcov: the counts land in
# t/vm-coverage/KERNEL-BUILD-N.gcov (make coverage-kmod). Then one boot for
# each checker's negative control: a test-hooks module that takes two locks
# in the wrong order, reads a freed page, leaves a page mapped twice, each
# of which lockdep, KASAN and the page-table check must report.
#
# Environment: VM_TESTS (programs, relative to the build directory),
# REWIRE_FUZZ_SECONDS (t/fuzz.t's time in each VM; its default: 120),
# VM_LINES (what to run instead, ';' between lines, VM_FULL= for nothing more),
# VM_UFFD_LINES (more lines, run only on kernels with UFFDIO_MOVE, 6.8 on),
# VM_KERNELS (versions; default: every /boot/vmlinuz-* with headers, then
# those listed in $REWIRE_KERNEL_CACHE/kernels and debug-kernels), REWIRE_KERNEL_CACHE
# (tools/fetch-kernels's, default /var/cache/rewire-kernels), VM_SMP
# (default 2), VM_TIMEOUT (seconds per boot, default 900; 1800 for the
# debugging kernel), VM_DEBUG_FULL, VM_DEBUG (no: leave the debugging
# kernels out of the default list), KMOD (no: skip,
# configured --without-kmod).
set -u
srcdir=${srcdir:-.}
top_srcdir=$(cd "$srcdir" && pwd)
build=$(pwd)
smp=${VM_SMP:-2}

skip() {
	echo "1..0 # SKIP $*"
	exit 0
}

[ "${KMOD:-check}" = no ] && skip "configured --without-kmod"
case ${REWIRE_BACKEND:-} in
"" | auto | kmod) ;;
*) skip "REWIRE_BACKEND=$REWIRE_BACKEND: the VMs run the kmod and uffd suites under plain make check" ;;
esac
[ -n "${REWIRE_UNDER_VALGRIND:-}" ] && skip "the VMs run under make check, not under valgrind"
qemu=$(command -v qemu-system-x86_64) || skip "qemu-system-x86_64 is not installed (qemu-system-x86)"
busybox=$(command -v busybox) || skip "busybox is not installed (busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
	ldd "$busybox" 2>&1 | grep -q 'not a dynamic' || skip "$busybox is not static (busybox-static)"
command -v cpio >/dev/null || skip "cpio is not installed"
[ "$(uname -m)" = x86_64 ] || skip "the module is x86-64 only"

cache=${REWIRE_KERNEL_CACHE:-/var/cache/rewire-kernels}

# Is kernel $1 installed, with its headers (the module builds on the host)?
installed() {
	[ -f "/boot/vmlinuz-$1" ] && [ -f "/lib/modules/$1/build/Makefile" ]
}

# Did tools/fetch-kernels prepare kernel $1 (the module builds in its chroot)?
fetched() {
	[ -s "$cache/$1/vmlinuz" ] && [ -f "$cache/$1/root/usr/src/linux-headers-$1/Makefile" ]
}

# Is kernel $1 one of tools/build-debug-kernel's (the module builds against
# its tree)?
debug_kernel() {
	[ -s "$cache/$1/vmlinuz" ] && [ -f "$cache/$1/build/Makefile" ] &&
		grep -qx "$1" "$cache/debug-kernels" 2>/dev/null
}

kernels=${VM_KERNELS:-}
if [ -z "$kernels" ]; then
	for f in /boot/vmlinuz-*; do
		v=${f#/boot/vmlinuz-}
		[ -f "/lib/modules/$v/build/Makefile" ] && kernels="$kernels $v"
	done
	if [ -f "$cache/kernels" ]; then
		for v in $(cat "$cache/kernels"); do
			installed "$v" && continue
			if ! fetched "$v"; then
				echo "# $v: listed in $cache/kernels, but incomplete (run tools/fetch-kernels)"
			elif [ "$(id -u)" -ne 0 ]; then
				echo "# $v: left out, its module builds in a chroot, as root"
			elif ! command -v unshare >/dev/null || ! command -v chroot >/dev/null; then
				echo "# $v: left out, no unshare or chroot to build its module"
			else
				kernels="$kernels $v"
			fi
		done
	fi
	if [ -f "$cache/debug-kernels" ] && [ "${VM_DEBUG:-yes}" != no ]; then
		for v in $(cat "$cache/debug-kernels"); do
			if debug_kernel "$v"; then
				kernels="$kernels $v"
			else
				echo "# $v: listed in $cache/debug-kernels, but incomplete (run tools/build-debug-kernel)"
			fi
		done
	fi
	kernels=$(printf '%s\n' $kernels | sort -uV)
fi
[ -n "$kernels" ] || skip "no kernel image with headers in /boot (linux-image-amd64, linux-headers-amd64), none in $cache (tools/fetch-kernels)"

full=${VM_FULL-1}

# Is program $1 among those the VMs run?
has() {
	case " $VM_TESTS " in
	*" $1 "*) return 0 ;;
	esac
	return 1
}

# Has kernel release $1 UFFDIO_MOVE (Linux 6.8 on)?
has_uffd_move() {
	[ "$(echo "$1" | awk -F. '{ print ($1 * 100 + $2 >= 608) }')" = 1 ]
}

work=$(mktemp -d "${TMPDIR:-/tmp}/rewire-vm.XXXXXX")
[ -n "${VM_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
n=0

say_ok() {
	n=$((n + 1))
	echo "ok $n - $*"
}

say_not_ok() {
	n=$((n + 1))
	echo "not ok $n - $*"
}

# What in the kernel's log fails a run (t/vm/init relays the boot log's
# lines that match it: /log-bad in the initramfs).
bad='BUG|WARNING|Oops|Bad page|general protection|RCU stall|self-detected stall|soft lockup|hard LOCKUP|Call Trace'

# Relay the guest's output (t/vm/init) as TAP lines numbered from $n.
relay() {
	awk -v n="$n" -v k="$1" -v console="$3" '
	function emit(okay, what) {
		printf "%s %d - [%s] %s\n", okay ? "ok" : "not ok", ++n, k, what
	}
	{ sub(/\r$/, "") }
	BEGIN { bad = "'"$bad"'" }
	/^@@ kernel / { print "# [" k "] " substr($0, 4); next }
	/^@@ meminfo / {
		when = $0
		sub(/^@@ meminfo [0-9]+ [0-9]+ /, "", when)
		if (when == "before") {
			mlocked = $3; anon = $4
		} else if (when == "after") {
			d = $4 - anon
			emit(d < 2048 && d > -2048, "AnonPages back to " anon " kB (now " $4 " kB)")
		} else {
			emit($3 == mlocked, when ": Mlocked back to " mlocked " kB (now " $3 " kB)")
		}
		next
	}
	/^@@ insmod / { emit($3 == 0, "insmod rewire.ko"); next }
	/^@@ module / {
		what = $0
		sub(/^@@ module [0-9]+ /, "", what)
		emit($3 == 0, what)
		next
	}
	/^@@ begin / {
		t = substr($0, 10); planned = -1; seen = 0; skipped = ""; logbad = 0; next
	}
	/^@@ end / {
		if (skipped != "")
			printf "ok %d - [%s] %s # SKIP %s\n", ++n, k, t, skipped
		else if (planned < 0 && seen == 0)	# not a TAP program: an example
			emit($3 == 0, t ": exit status " $3)
		else
			emit($3 == 0 && planned == seen, t ": exit status " $3 ", " seen " of " planned " planned tests ran")
		emit(!logbad, t ": kernel log clean while it ran")
		t = ""; next
	}
	/^@@ dmesg / {
		line = substr($0, 10)
		print "# [" k "] dmesg: " line
		if (line ~ bad && t != "")
			logbad = 1
		else if (line ~ bad)
			emit(0, "kernel log clean: " line)
		next
	}
	/^@@ tainted / {
		# 4096 (O, out of tree) and 8192 (E, unsigned) are the module'"'"'s own
		emit($3 % 4096 == 0 && int($3 / 16384) == 0,
		     "the kernel is tainted by nothing but the module (/proc/sys/kernel/tainted " $3 ")")
		next
	}
	/^@@ done/ { done = 1; next }
	t == "" { next }
	/^1\.\.0/ { sub(/^1\.\.0 *# *[Ss][Kk][Ii][Pp] */, ""); skipped = $0 == "" ? "no tests" : $0; next }
	/^1\.\.[0-9]+/ { planned = substr($1, 4) + 0; next }
	/^(not )?ok/ {
		seen++
		okay = $1 == "ok"
		sub(/^(not )?ok *[0-9]* *-? */, "")
		printf "%s %d - [%s] %s: %s\n", okay ? "ok" : "not ok", ++n, k, t, $0
		next
	}
	/^Bail out!/ { emit(0, t ": " $0); next }
	/^#/ { print "# [" k "] " substr($0, 3); next }
	{ print "# [" k "] " t ": " $0 }
	END {
		emit(done, "the VM ran every test and powered off")
		if (!done) {
			while ((getline line < console) > 0)
				tail[c++ % 40] = line
			for (i = c > 40 ? c - 40 : 0; i < c; i++)
				print "# console: " tail[i % 40]
		}
		print n > "/dev/stderr"
	}' "$2" 2>"$work/count"
	n=$(cat "$work/count")
}

# Boot kernel $1 with $2 vCPUs on the initramfs of directory $3, whose
# tests file is $4; relay what it printed.
# The initramfs of directory $1, its tests file $2.
pack_initrd() {
	cp "$2" "$1/root/tests"
	(cd "$1/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$1/initrd.gz"
}

boot() {
	pack_initrd "$3" "$4"
	half=$(($2 / 2))
	boot_retried "$1" "$2" "$3" "$4"
	relay "$1 -smp $2" "$3/tap.log" "$3/console.log"
}

# Did the kernel of tap.log $1 boot, init run, and nothing report a bug
# before rewire.ko was loaded?
booted_clean() {
	awk '/^@@ kernel / { up = 1 } /^@@ insmod / { exit }
		/^@@ dmesg / && $0 ~ bad { found = 1 }
		END { exit !(up && !found) }' bad="$bad" "$1" 2>/dev/null
}

# Boot as boot_once does; a kernel that dies or reports a bug while
# booting, before anything of rewire ran, is booted again, twice at most:
# under TCG with 4 vCPUs 7.2 once took an int3 of its own text patching at
# 1 s, and the debugging kernel once reported KASAN in an interrupt during
# cpu_detect() at 1.7 s (which turns lockdep off for the rest of the boot).
boot_retried() {
	for try in 1 2 3; do
		boot_once "$@"
		booted_clean "$3/tap.log" && break
		[ "$try" = 3 ] && break
		echo "# [$1 -smp $2] the kernel died or reported a bug while booting, before rewire.ko was loaded; booting again:"
		tail -n 5 "$3/console.log" | sed "s/^/# [$1 -smp $2] console: /"
	done
}

boot_once() {
	rm -f "$3/tap.log" "$3/console.log"
	timeout "${VM_TIMEOUT:-$timeout}" "$qemu" -accel tcg -cpu max -m 1024 \
		-smp "$2,sockets=2,cores=$half,threads=1" \
		-object memory-backend-ram,id=m0,size=512M \
		-object memory-backend-ram,id=m1,size=512M \
		-numa "node,nodeid=0,cpus=0-$((half - 1)),memdev=m0" \
		-numa "node,nodeid=1,cpus=$half-$(($2 - 1)),memdev=m1" \
		-kernel "$image" -initrd "$3/initrd.gz" \
		-append "console=ttyS0 rdinit=/init panic=-1 quiet $cmdline" \
		-display none -monitor none -no-reboot -nic none \
		-serial "file:$3/console.log" -serial "file:$3/tap.log" \
		</dev/null >"$3/qemu.log" 2>&1
}

# Build rewire.ko for kernel $v into directory $1, with kmod/build.sh's
# options after it: on the host against $kdir, or, for a
# kernel of tools/fetch-kernels, in its chroot ($chroot), whose glibc, gcc
# and pahole built it, with the sources copied there and /proc mounted in a
# mount namespace of its own (objtool reads /proc/self/maps).
build_kmod() {
	out=$1
	shift
	if [ -z "$chroot" ]; then
		"$top_srcdir/kmod/build.sh" "$@" "$kdir" "$out"
		return
	fi
	tmp=$(mktemp -d "$chroot/tmp/rewire-kmod.XXXXXX") || return
	k=$top_srcdir/kmod
	mkdir "$tmp/kmod" &&
		cp "$k/build.sh" "$k/Kbuild" "$k/rewire.c" "$k/compat.h" "$k/rewire_uapi.h" "$tmp/kmod/" &&
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
			unshare --mount --pid --fork --mount-proc="$chroot/proc" \
			chroot "$chroot" sh "${tmp#"$chroot"}/kmod/build.sh" "$@" \
			"/usr/src/linux-headers-$v" "${tmp#"$chroot"}/out" &&
		mkdir -p "$out" && cp "$tmp/out/rewire.ko" "$tmp/out/build.log" "$out/"
	st=$?
	rm -rf "$tmp"
	return $st
}

# The module's gcov counts, which t/vm/init dumped in base64 before powering
# off, back into the module's build directories; gcov then writes each
# build's annotated rewire.c into t/vm-coverage/, added to what an earlier
# boot saved, one file a boot (tools/coverage-kmod merges them).
save_coverage() {
	mkdir -p "$build/t/vm-coverage"
	awk -v dir="$2" '
	{ sub(/\r$/, "") }
	/^@@ gcda-end/ { if (out != "") close(out); out = ""; next }
	/^@@ gcda / { n = split($3, part, "/"); out = dir "/" part[n - 1] "/rewire.gcda.b64"; printf "" > out; next }
	/^@@ gcdata / && out != "" { print $3 > out }
	' "$3"
	for b in kmod kmod-test; do
		[ -s "$2/$b/rewire.gcda.b64" ] || continue
		base64 -d "$2/$b/rewire.gcda.b64" >"$2/$b/rewire.gcda" && rm "$2/$b/rewire.gcda.b64" &&
			(cd "$2/$b" && gcov -o . rewire.c >gcov.log 2>&1) &&
			cp "$2/$b/rewire.c.gcov" "$build/t/vm-coverage/$1-$b-$(ls "$build/t/vm-coverage" | wc -l).gcov" ||
			echo "# [$1] no gcov counts from $b: $(tail -n 1 "$2/$b/gcov.log" 2>/dev/null)"
		rm -f "$2/$b/rewire.gcda" "$2/$b/rewire.c.gcov"
	done
}

# Boot kernel $1 (directory $2) with rewire-test.ko's break_for_test=$3:
# the log must hold the report ($5) of checker $4; $6: more of the kernel's
# command line.
control() {
	printf '%s\n' "rmmod rewire" "insmod /rewire-test.ko break_for_test=$3" \
		"REWIRE_KMOD_BROKEN=$3 t/kmod.t" >"$2/tests-control"
	pack_initrd "$2" "$2/tests-control"
	half=1
	keep=$cmdline
	cmdline="page_table_check=on ${6:-}"
	VM_TIMEOUT=300 boot_retried "$1" 2 "$2" "$2/tests-control"
	save_coverage "$1" "$2" "$2/tap.log"
	if cat "$2/console.log" "$2/tap.log" 2>/dev/null | tr -d '\r' | grep -q "$5"; then
		say_ok "[$1] negative control: $4 reports the module broken with break_for_test=$3"
	else
		say_not_ok "[$1] negative control: $4 reports the module broken with break_for_test=$3 (no '$5' in the log)"
		tail -n 20 "$2/console.log" | sed "s/^/# [$1] console: /"
	fi
	cmdline=$keep
}

for v in $kernels; do
	dir="$work/$v"
	root="$dir/root"
	mkdir -p "$root/bin" "$root/t" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
	debug=
	cmdline=
	timeout=900
	gcov=
	kdir=/lib/modules/$v/build
	if debug_kernel "$v" && ! installed "$v"; then
		image=$cache/$v/vmlinuz
		chroot=
		kdir=$cache/$v/build
		debug=1
		cmdline="page_table_check=on panic_on_warn=1"
		timeout=1800
		gcov=--gcov
		echo "# [$v] the debugging kernel $image ($(cat "$cache/$v/source" 2>/dev/null)), booted with $cmdline"
	elif installed "$v" || ! fetched "$v"; then
		image=/boot/vmlinuz-$v
		chroot=
	else
		image=$cache/$v/vmlinuz
		chroot=$cache/$v/root
		echo "# [$v] $image, built in the chroot $chroot ($(cat "$cache/$v/suite" 2>/dev/null))"
	fi
	# shellcheck disable=SC2086
	if ! build_kmod "$dir/kmod" $gcov >"$dir/build.err" 2>&1; then
		say_not_ok "[$v] rewire.ko builds without warnings"
		sed 's/^/# /' "$dir/build.err"
		continue
	fi
	say_ok "[$v] rewire.ko builds without warnings"
	# shellcheck disable=SC2086
	if ! build_kmod "$dir/kmod-test" --test-hooks $gcov >"$dir/build.err" 2>&1; then
		say_not_ok "[$v] rewire.ko with test hooks builds without warnings"
		sed 's/^/# /' "$dir/build.err"
		continue
	fi

	cp "$busybox" "$root/bin/busybox"
	cp "$top_srcdir/t/vm/init" "$root/init"
	chmod 755 "$root/init"
	echo "$bad" >"$root/log-bad"
	cp "$dir/kmod/rewire.ko" "$root/rewire.ko"
	cp "$dir/kmod-test/rewire.ko" "$root/rewire-test.ko"
	# The loop driver, for t/kmod.t's swap test (swap on a loop device).
	loop=
	if [ -n "$chroot" ]; then
		[ -s "$cache/$v/loop.ko" ] && cp "$cache/$v/loop.ko" "$root/loop.ko" && loop=1
	else
		for f in "/lib/modules/$v/kernel/drivers/block/loop.ko.xz" \
			"/lib/modules/$v/kernel/drivers/block/loop.ko"; do
			[ -f "$f" ] || continue
			case $f in
			*.xz) xz -dc "$f" >"$root/loop.ko" ;;
			*) cp "$f" "$root/loop.ko" ;;
			esac && loop=1
			break
		done
	fi
	for t in $VM_TESTS; do
		mkdir -p "$root/t/$(dirname "$t")"
		cp "$build/$t" "$root/t/$t"
		# and the shared libraries it needs, the dynamic loader included
		for lib in $(ldd "$build/$t" | sed -n 's|.* \(/[^ ]*\) (0x.*|\1|p; s|^[[:space:]]*\(/[^ ]*\) (0x.*|\1|p'); do
			[ -f "$root$lib" ] && continue
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	done

	# The suite on kmod; the module unloaded and loaded again; on kernels
	# with UFFDIO_MOVE (6.8 on) the suite on uffd too; then the negative
	# controls: with its TLB flush, its rmap update, its TLB generation
	# advance (caught only on real hardware: under TCG it reports a skip)
	# or one page of a few-page flush left out, the module must be caught
	# by t/kmod.t.
	list="$dir/tests"
	: >"$list"
	[ -n "$loop" ] && echo "insmod /loop.ko" >>"$list"
	if [ -n "${VM_LINES:-}" ]; then
		echo "$VM_LINES" | tr ';' '\n' >>"$list"
	elif [ -n "$debug" ] && [ -z "${VM_DEBUG_FULL:-}" ]; then
		for t in t/kmod.t t/fuzz.t; do
			has $t && echo $t >>"$list"
		done
		echo "# [$v] the library's suites run on the release kernels; here only the module's own (VM_DEBUG_FULL=1: all)"
	else
		printf '%s\n' $VM_TESTS >>"$list"
	fi
	if [ -n "${VM_UFFD_LINES:-}" ] && has_uffd_move "$v"; then
		echo "$VM_UFFD_LINES" | tr ';' '\n' >>"$list"
	fi
	# the fuzzer's time, where the host's environment sets it
	if [ -n "${REWIRE_FUZZ_SECONDS:-}" ]; then
		sed "s|^t/fuzz.t\$|REWIRE_FUZZ_SECONDS=$REWIRE_FUZZ_SECONDS t/fuzz.t|" "$list" >"$list.new"
		mv "$list.new" "$list"
	fi
	if [ -n "$full" ]; then
		# the model and the errors on huge pages, which the module
		# moves as PMDs (t/huge.t is among the programs above; the
		# library's suites are not the debugging kernel's)
		if [ -z "$debug" ] || [ -n "${VM_DEBUG_FULL:-}" ]; then
			has t/model.t && echo "REWIRE_TEST_PAGE_SIZE=huge REWIRE_MODEL_OPS=400 t/model.t" >>"$list"
			has t/errors.t && echo "REWIRE_TEST_PAGE_SIZE=huge t/errors.t" >>"$list"
		fi
		# auto picks the module when it is loaded, and does without it
		has t/basic.t && echo "REWIRE_BACKEND=auto REWIRE_AUTO_EXPECTS=kmod t/basic.t" >>"$list"
		printf '%s\n' "rmmod rewire" "insmod /rewire.ko" "rmmod rewire" >>"$list"
		has t/basic.t && echo "REWIRE_BACKEND=auto t/basic.t" >>"$list"
		# (the module's own programs excluded; not on the debugging
		# kernel, where the library's suites on uffd take too long)
		if has_uffd_move "$v" &&
			{ [ -z "$debug" ] || [ -n "${VM_DEBUG_FULL:-}" ]; }; then
			for t in $VM_TESTS; do
				case $t in
				t/kmod.t | t/fuzz.t) ;;
				*) echo "REWIRE_BACKEND=uffd $t" >>"$list" ;;
				esac
			done
			# the same on uffd
			has t/model.t && echo "REWIRE_TEST_PAGE_SIZE=huge REWIRE_MODEL_OPS=400 REWIRE_BACKEND=uffd t/model.t" >>"$list"
			has t/errors.t && echo "REWIRE_TEST_PAGE_SIZE=huge REWIRE_BACKEND=uffd t/errors.t" >>"$list"
		fi
		if has t/kmod.t; then
			# the TLB test with the flush that works under kernel IBT
			printf '%s\n' "insmod /rewire.ko full_flush=1" \
				"REWIRE_KMOD_ONLY=tlb t/kmod.t" "rmmod rewire" >>"$list"
			# the mmu-notifier refusal, with the test hooks' notifier
			printf '%s\n' "insmod /rewire-test.ko" \
				"REWIRE_KMOD_ONLY=notifier t/kmod.t" "rmmod rewire" >>"$list"
			# (not on the debugging kernel, where the TLB test did
			# not see the missing flush of break_for_test=1, likely
			# for the flushes DEBUG_PAGEALLOC makes of every page it
			# unmaps; its own controls are the checkers', below)
			for b in 1 2 3 4; do
				[ -n "$debug" ] && break
				printf '%s\n' "insmod /rewire-test.ko break_for_test=$b" \
					"REWIRE_KMOD_BROKEN=$b t/kmod.t" "rmmod rewire" >>"$list"
			done
		fi
	fi
	boot "$v" "$smp" "$dir" "$list"
	[ -n "$debug" ] && save_coverage "$v" "$dir" "$dir/tap.log"

	# TLB coherence again with three other vCPUs.
	if [ -n "$full" ] && has t/kmod.t; then
		echo "REWIRE_KMOD_ONLY=tlb t/kmod.t" >"$dir/tests4"
		boot "$v" 4 "$dir" "$dir/tests4"
		[ -n "$debug" ] && save_coverage "$v" "$dir" "$dir/tap.log"
	fi

	# The checkers' negative controls, a boot each (the module is broken
	# on purpose: its own TAP lines are not relayed, only what the kernel
	# reported is checked).
	if [ -n "$debug" ] && [ -n "$full" ] && has t/kmod.t; then
		control "$v" "$dir" 5 "lockdep" "possible circular locking dependency"
		control "$v" "$dir" 6 "KASAN" "BUG: KASAN: .*use-after-free"
		# (an oops ends that boot: after the page-table check's BUG the
		# VM hung until its timeout)
		control "$v" "$dir" 7 "the page-table check" "kernel BUG at mm/page_table_check.c" \
			oops=panic
	fi
done
echo "1..$n"
