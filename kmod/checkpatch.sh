#!/bin/sh
# Check the module's sources with checkpatch.pl from Debian's linux-source
# package (the newest installed): kmod/checkpatch.sh KMOD_DIR. Any error or
# warning fails. Without linux-source it says so and passes, unless
# CHECKPATCH_REQUIRED is set.
set -eu
dir=$1
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1)
if [ -z "$tarball" ]; then
	echo "checkpatch: skipped, no /usr/src/linux-source-*.tar.xz (apt-get install linux-source-6.12)"
	[ -z "${CHECKPATCH_REQUIRED:-}" ]
	exit
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
top=$(basename "$tarball" .tar.xz)
tar -xJf "$tarball" -C "$tmp" "$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" \
	"$top/scripts/const_structs.checkpatch"
echo "checkpatch: $top"
# --strict, less UNCOMMENTED_DEFINITION: it asks for a comment on every
# spinlock_t, meant for lock fields, and flags local pointers to PTE locks.
perl "$tmp/$top/scripts/checkpatch.pl" --no-tree --quiet --show-types --strict \
	--ignore UNCOMMENTED_DEFINITION -f "$dir/rewire.c" "$dir/compat.h" "$dir/rewire_uapi.h" || {
	echo "checkpatch: the module's style has problems" >&2
	exit 1
}
