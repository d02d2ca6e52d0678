#!/usr/bin/env bash
# hack/test-v2.sh: run integration tests in a guest whose only cgroup
# hierarchy is cgroup v2 (hack/vm.sh), one test thread per binary.
#
# usage: hack/test-v2.sh [-v] [TEST[:FILTER]...] [-- TEST-BINARY-ARGS...]
#
# TEST names integration test targets (tests/NAME.rs), globs allowed; FILTER,
# a test name filter for that target only. The default is 'cgroup*' and
# 'features:cgroup_claims' (the features document's cgroup v2 and rdma
# claims, checked where v2 is the only hierarchy); when no target matches
# them, 'smoke' runs instead so that the path is exercised. The binaries
# are built here, on the host, with `cargo test --no-run`, then all run in one
# guest boot; arguments after -- go to each binary (a test name filter,
# --nocapture, ...).
#   -v   also show the guest's console log and timings (hack/vm.sh -v)
# Environment: KEEL_V2_TIMEOUT, the guest's wall-clock limit in seconds
# (default 1800). Exit status: 0 when every binary passed; 1 when one failed;
# hack/vm.sh's status (124, 125) when the guest itself failed.
set -euo pipefail

if [ "${1:-}" = --in-guest ]; then
	# In the guest: check the cgroup layout, then run NAME=PATH[=FILTER]
	# up to --.
	shift
	names=() exes=() filters=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		rest=${1#*=}
		names+=("${1%%=*}") exes+=("${rest%%=*}")
		if [[ $rest == *=* ]]; then filters+=("${rest#*=}"); else filters+=(""); fi
		shift
	done
	[ $# = 0 ] || shift
	# builtins only: a fork costs tens of milliseconds under emulation
	mapfile -t mounts </proc/self/mounts
	v2=0 v1=0
	for m in "${mounts[@]}"; do
		case $m in *' /sys/fs/cgroup cgroup2 '*) v2=1 ;; *' cgroup '*) v1=1 ;; esac
	done
	if [ $v2 = 0 ] || [ $v1 = 1 ]; then
		echo "test-v2: the guest's cgroups are not v2-only:" >&2
		printf '%s\n' "${mounts[@]}" >&2
		exit 125
	fi
	read -r kver </proc/sys/kernel/osrelease
	read -r controllers </sys/fs/cgroup/cgroup.controllers
	echo "test-v2: guest kernel $kver, cgroup2 controllers: $controllers"
	failed=()
	for i in "${!names[@]}"; do
		echo "test-v2: ---- ${names[i]}${filters[i]:+ (${filters[i]})}"
		"${exes[i]}" --test-threads=1 ${filters[i]:+"${filters[i]}"} "$@" || failed+=("${names[i]}")
	done
	if [ ${#failed[@]} -gt 0 ]; then
		echo "test-v2: FAILED in the cgroup v2 guest: ${failed[*]}"
		exit 1
	fi
	echo "test-v2: ${#names[@]} test binaries passed in the cgroup v2 guest"
	exit 0
fi

cd -P "$(dirname "${BASH_SOURCE[0]}")/.."
command -v jq >/dev/null || {
	echo "test-v2: needs jq (make deps installs it)" >&2
	exit 1
}
vm_args=()
if [ "${1:-}" = -v ]; then
	vm_args+=(-v)
	shift
fi
patterns=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	patterns+=("$1")
	shift
done
defaults=0
[ ${#patterns[@]} -gt 0 ] || { patterns=('cgroup*' 'features:cgroup_claims') && defaults=1; }

# the test targets matching the patterns (the first pattern that matches a
# target gives its filter)
all=$(cargo metadata --no-deps --format-version 1 |
	jq -r '.packages[].targets[] | select(.kind | index("test")) | .name')
targets=()
declare -A filter=()
for t in $all; do
	for p in "${patterns[@]}"; do
		# shellcheck disable=SC2053 # ${p%%:*} is a glob
		if [[ $t == ${p%%:*} ]]; then
			targets+=("$t")
			[[ $p != *:* ]] || filter[$t]=${p#*:}
			break
		fi
	done
done
if [ ${#targets[@]} = 0 ]; then
	[ $defaults = 1 ] || {
		echo "test-v2: no test target matches: ${patterns[*]}" >&2
		exit 1
	}
	echo "test-v2: no cgroup* test target yet; running 'smoke' to exercise the path" >&2
	targets=(smoke)
fi

# build on the host; the artifacts name the test binaries
build=()
for t in "${targets[@]}"; do build+=(--test "$t"); done
pairs=()
while IFS=$'\t' read -r name exe; do
	[[ $exe == "$PWD"/* ]] || {
		echo "test-v2: $exe is outside $PWD, which is all the guest shares read-write" >&2
		exit 1
	}
	pairs+=("$name=$exe${filter[$name]:+=${filter[$name]}}")
done < <(cargo test --no-run --message-format=json-render-diagnostics "${build[@]}" |
	jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
		| "\(.target.name)\t\(.executable)"')
[ ${#pairs[@]} = "${#targets[@]}" ] || {
	echo "test-v2: built ${#pairs[@]} test binaries for ${#targets[@]} targets" >&2
	exit 1
}

echo "test-v2: running ${targets[*]} in a cgroup v2 guest" >&2
exec hack/vm.sh "${vm_args[@]}" --timeout "${KEEL_V2_TIMEOUT:-1800}" -- \
	bash hack/test-v2.sh --in-guest "${pairs[@]}" "$@"
