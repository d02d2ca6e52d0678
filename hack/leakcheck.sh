#!/usr/bin/env bash
# hack/leakcheck.sh snapshot FILE | check FILE
#
# Records what containers can leave behind on the host, and after a test run
# reports anything new (exit 1), so a passing suite that leaks still fails:
#   mount    host mounts mentioning keel, /tmp/keel-test, bundle or rootfs
#   cgroup   cgroup directories named keel* (any controller, any depth below it)
#   state    entries under /run/keel
#   proc     processes whose command line or cgroup mentions keel-test
#   tmpdir   leftover test bundles /tmp/keel-test-* (the shared test rootfs
#            /tmp/keel-test-rootfs is a cache and is not counted)
#   dev      owner, group, mode and device numbers of the host's /dev nodes
#
# `check` retries for a few seconds so that processes being reaped and
# cgroups being removed at the end of the run can settle.
set -euo pipefail

prog=${0##*/}
marker=keel-test
tmp=${TMPDIR:-/tmp}
tmp=${tmp%/}

usage() {
	echo "usage: $prog snapshot FILE | check FILE" >&2
	exit 2
}

mounts() {
	# Mount point, filesystem type and source: mount ids change, these don't.
	awk '/keel|\/tmp\/keel-test|bundle|rootfs/ {
		sep = 0
		for (i = 7; i <= NF; i++) if ($i == "-") { sep = i; break }
		print "mount", $5, (sep ? $(sep + 1) : "?"), (sep ? $(sep + 2) : "?")
	}' /proc/self/mountinfo
}

cgroups() {
	[[ -d /sys/fs/cgroup ]] || return 0
	find /sys/fs/cgroup -mindepth 1 -maxdepth 6 -type d \
		\( -path '/sys/fs/cgroup/keel*' -o -path '/sys/fs/cgroup/*/keel*' \) \
		-printf 'cgroup %p\n' 2>/dev/null || true
}

state() {
	[[ -d /run/keel ]] || return 0
	find /run/keel -mindepth 1 -printf 'state %p\n' 2>/dev/null || true
}

procs() {
	local d pid cmd cg parts
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
		# Builtins and redirections only: no helper process to match itself.
		parts=()
		mapfile -d '' -t parts 2>/dev/null <"$d/cmdline" || continue
		[[ ${#parts[@]} -gt 0 ]] || continue # kernel threads and zombies
		cmd="${parts[*]}"
		cg=""
		read -r -d '' cg 2>/dev/null <"$d/cgroup" || true
		[[ $cmd == *"$marker"* || $cg == *"$marker"* ]] || continue
		[[ $cmd != *leakcheck.sh* ]] || continue
		echo "proc $pid $cmd"
	done
}

tmpdirs() {
	local d
	for d in "$tmp/$marker"-*; do
		[[ -e $d ]] || continue
		case ${d##*/} in
		"$marker"-rootfs | "$marker"-rootfs.*) continue ;;
		esac
		echo "tmpdir $d"
	done
}

devs() {
	local n
	for n in /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/console /dev/ptmx; do
		if [[ -e $n || -L $n ]]; then
			echo "dev $(stat -c '%n %u %g %a %t %T' -- "$n")"
		else
			echo "dev $n missing"
		fi
	done
}

collect() {
	{
		mounts
		cgroups
		state
		procs
		tmpdirs
		devs
	} | LC_ALL=C sort
}

# Lines of $2 (now) that $1 (before) lacks, and devices that changed.
diff_snapshots() {
	local before=$1 now=$2
	LC_ALL=C comm -13 "$before" "$now" | grep -v '^dev ' | sed 's/^/leaked: /' || true
	LC_ALL=C comm -3 <(grep '^dev ' "$before" || true) <(grep '^dev ' "$now" || true) |
		sed -e 's/^\t/device now:    /' -e '/^device now/!s/^/device before: /' || true
}

count_mounts() {
	grep -c '^mount ' "$1" || true
}

[[ $# -eq 2 ]] || usage
cmd=$1
file=$2

case $cmd in
snapshot)
	mkdir -p -- "$(dirname -- "$file")"
	collect >"$file.tmp"
	mv -f -- "$file.tmp" "$file"
	echo "$prog: snapshot of $(wc -l <"$file") items in $file ($(count_mounts "$file") mounts)" >&2
	;;
check)
	[[ -f $file ]] || {
		echo "$prog: no snapshot $file (run: $prog snapshot $file)" >&2
		exit 2
	}
	now=$(mktemp)
	trap 'rm -f -- "$now"' EXIT
	report=""
	for _ in $(seq 50); do
		collect >"$now"
		report=$(diff_snapshots "$file" "$now")
		[[ -n $report ]] || break
		sleep 0.1
	done
	if [[ -n $report ]]; then
		echo "$prog: the run leaked (mounts before: $(count_mounts "$file"), after: $(count_mounts "$now")):" >&2
		echo "$report" >&2
		exit 1
	fi
	echo "$prog: no leaks" >&2
	;;
*)
	usage
	;;
esac
