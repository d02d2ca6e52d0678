#!/usr/bin/env bash
# hack/client-tests.sh [RUNTIME]
#
# Runs containers through real clients with RUNTIME as the OCI runtime:
#   containerd  a private containerd (root, state, sockets under a temp dir,
#               stopped by pid at the end), driven with ctr and the runc shim
#               (ctr run --runc-binary RUNTIME)
#   podman      a private storage (--root/--runroot/--tmpdir under the temp
#               dir, a private containers.conf and storage.conf),
#               --cgroup-manager cgroupfs, no network, RUNTIME registered by
#               name so that podman asks it for JSON logs
# on a busybox OCI image built offline from Debian's busybox-static.
#
# RUNTIME defaults to target/debug/keel; `runc` (or any path) runs the same
# scenarios with another runtime, to show that the scenarios themselves are
# right. Prints one line per check and "N passed, M failed"; exits 1 if any
# check failed. Needs root (skips without it); installs containerd, podman
# and conmon with apt-get when they are missing.
#
# Known on the CI machine, and handled here: the host lacks CAP_SYS_RESOURCE,
# so podman's default ulimits (1048576) cannot be set: the private
# containers.conf sets default_ulimits to the hard limits the runtime will
# have (podman lowers its RLIMIT_NPROC to 32768 before conmon). ctr does
# not mount /sys/fs/cgroup in containers, so limits are read on the host.
# `ctr task delete` does not print the exit status in containerd 1.6: it is
# read from `ctr events`.
#
# Environment: KEEP=1 keeps the temp dir (after everything is stopped),
# CLIENT_TIMEOUT (seconds, default 60) bounds every client command.
set -uo pipefail

prog=${0##*/}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

die() {
	echo "$prog: $*" >&2
	exit 1
}

if [[ $(id -u) -ne 0 ]]; then
	echo "$prog: SKIP: needs root"
	exit 0
fi

# --- the runtime ------------------------------------------------------------
runtime=${1:-target/debug/keel}
if [[ $runtime != */* ]]; then
	runtime=$(command -v "$runtime") || die "$1: not found"
fi
runtime=$(realpath -e -- "$runtime") || die "$runtime: not found"
[[ -x $runtime ]] || die "$runtime is not executable"
rt_name=${runtime##*/}
is_keel=0
# Captured first: under pipefail, `grep -q` ending early may fail the pipe.
version_text=$("$runtime" --version 2>/dev/null)
[[ $version_text == "keel version"* ]] && is_keel=1

timeout_s=${CLIENT_TIMEOUT:-60}

# --- tools --------------------------------------------------------------------
need=()
for pair in containerd:containerd ctr:containerd containerd-shim-runc-v2:containerd \
	podman:podman conmon:conmon busybox:busybox-static script:bsdutils jq:jq; do
	command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
	mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
	echo "$prog: installing ${need[*]}"
	if ! apt-get update -qq >/dev/null ||
		! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
		die "apt-get install ${need[*]} failed"
	fi
fi
busybox=$(command -v busybox)
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked: install busybox-static"

# --- bookkeeping --------------------------------------------------------------
start_time=$SECONDS
passed=0
failed=0
failures=()

ok() {
	passed=$((passed + 1))
	printf 'ok    %s\n' "$1"
}

not_ok() {
	failed=$((failed + 1))
	failures+=("$1")
	printf 'FAIL  %s\n' "$1"
	shift
	local line
	for line in "$@"; do
		printf '      %s\n' "$line"
	done
}

# run_to OUT ERR CMD...: runs CMD (a function with a deadline of its own, or
# `dl COMMAND...`) with stdout and stderr to files; returns its status.
run_to() {
	local out=$1 err=$2
	shift 2
	"$@" >"$out" 2>"$err" </dev/null
}

# dl CMD...: CMD with a deadline (status 124 when it passes).
dl() { timeout -k 5 "$timeout_s" "$@"; }

contains() { grep -qF -- "$2" "$1"; }

# show FILE...: the start (SHOW_BYTES, 500) of what a command printed, for a
# failure report.
show() { head -c "${SHOW_BYTES:-500}" "$@" 2>&1 | tr -d '\0'; }

# --- temp dir, cleanup ---------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-test-client.XXXXXX")
tag=${tmp##*.}
tag=${tag,,}
ns=keel-test-client-$tag   # containerd namespace, also the cgroup parent
cg_parent=/$ns             # podman's --cgroup-parent
containerd_pid=

mounts_under() {
	awk -v d="$1/" '{ mp = $5; gsub(/\\040/, " ", mp); if (index(mp "/", d) == 1) print mp }' /proc/self/mountinfo
}

# Every cgroup directory of this run (below the namespace/parent name); the
# depths fit both /sys/fs/cgroup/CONTROLLER/$ns (v1) and /sys/fs/cgroup/$ns (v2).
our_cgroups() {
	find /sys/fs/cgroup -mindepth 1 -maxdepth 8 -type d -path "*/$ns*" 2>/dev/null | sort -r
}

# Stops everything this run started; safe to call twice.
teardown() {
	if [[ -n ${ctr_ready:-} ]]; then
		local t c
		for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$t" >/dev/null 2>&1; done
		sleep 0.2
		for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task delete -f "$t" >/dev/null 2>&1; done
		for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1; done
		ctr_ images rm "$image_ref" >/dev/null 2>&1
		ctr_ content prune references >/dev/null 2>&1
		ctr_ namespaces remove "$ns" >/dev/null 2>&1
	fi
	ctr_ready=
	if [[ -n $containerd_pid ]] && kill -0 "$containerd_pid" 2>/dev/null; then
		kill -TERM "$containerd_pid"
		for _ in $(seq 50); do kill -0 "$containerd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$containerd_pid" 2>/dev/null
		wait "$containerd_pid" 2>/dev/null
	fi
	containerd_pid=
	if [[ -n ${podman_ready:-} ]]; then
		pm rm -af -t 0 >/dev/null 2>&1
		pm rmi -af >/dev/null 2>&1
		# The overlay driver's own mount of its home.
		umount "$tmp/podman/root/overlay" 2>/dev/null
	fi
	podman_ready=
	if [[ -n ${made_run_containerd:-} ]]; then
		rmdir /run/containerd/s /run/containerd 2>/dev/null
	fi
	local m
	for m in $(mounts_under "$tmp" | sort -r); do umount -l "$m" 2>/dev/null; done
	local d
	for d in $(our_cgroups); do rmdir "$d" 2>/dev/null; done
	# The runtime's default root (podman's containers), if this run made it.
	if [[ -n ${made_default_root:-} ]]; then
		rm -rf "$default_root/seccomp-cache"
		rmdir "$default_root" 2>/dev/null
	fi
}

cleanup() {
	local rc=$?
	set +e
	teardown
	rm -rf "$rt_root"
	if [[ -n $(mounts_under "$tmp") ]]; then
		echo "$prog: mounts left under $tmp; not removing it" >&2
	elif [[ ${KEEP:-0} == 1 ]]; then
		echo "$prog: kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The runtime's state root. containerd passes --root <runc-root>/<namespace>
# (ctr --runc-root); podman (runtime by path or by name) passes no --root, so
# the runtime's default is used: /run/keel for keel, /run/runc for runc.
rt_root=$tmp/rt-root

# --- the image ----------------------------------------------------------------
# An OCI image layout with one uncompressed layer: busybox, a symlink per
# applet, /etc/passwd and /etc/group. The same layer tar is given to podman.
image_ref=docker.io/library/keel-busybox:test
build_image() {
	local d=$tmp/image rootfs=$tmp/image/rootfs
	mkdir -p "$rootfs"/{bin,etc,dev,proc,sys,tmp,root,run} "$d/oci/blobs/sha256"
	cp "$busybox" "$rootfs/bin/busybox"
	local applet
	for applet in $("$busybox" --list); do
		[[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
	chmod 1777 "$rootfs/tmp"
	tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$rootfs" -cf "$d/layer.tar" . ||
		return 1

	local layer_digest layer_size config config_digest manifest manifest_digest
	layer_digest=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
	layer_size=$(stat -c %s "$d/layer.tar")
	cp "$d/layer.tar" "$d/oci/blobs/sha256/$layer_digest"
	config=$(jq -cn --arg diff "sha256:$layer_digest" '{
		architecture: "amd64", os: "linux",
		config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"]},
		rootfs: {type: "layers", diff_ids: [$diff]},
		history: [{created_by: "hack/client-tests.sh: Debian busybox-static"}]}')
	printf '%s' "$config" >"$d/config.json"
	config_digest=$(sha256sum "$d/config.json" | cut -d' ' -f1)
	cp "$d/config.json" "$d/oci/blobs/sha256/$config_digest"
	manifest=$(jq -cn --arg cd "sha256:$config_digest" --argjson cs "$(stat -c %s "$d/config.json")" \
		--arg ld "sha256:$layer_digest" --argjson ls "$layer_size" '{
		schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
		layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]}')
	printf '%s' "$manifest" >"$d/manifest.json"
	manifest_digest=$(sha256sum "$d/manifest.json" | cut -d' ' -f1)
	cp "$d/manifest.json" "$d/oci/blobs/sha256/$manifest_digest"
	jq -n --arg md "sha256:$manifest_digest" --argjson ms "$(stat -c %s "$d/manifest.json")" \
		--arg name "$image_ref" '{
		schemaVersion: 2,
		manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
			platform: {architecture: "amd64", os: "linux"},
			annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": "test"}}]}' \
		>"$d/oci/index.json"
	printf '{"imageLayoutVersion": "1.0.0"}' >"$d/oci/oci-layout"
	tar -C "$d/oci" -cf "$d/image.tar" oci-layout index.json blobs
}

echo "$prog: runtime $runtime, temp dir $tmp"
build_image || die "building the busybox image failed"

# --- containerd -------------------------------------------------------------
cd_dir=$tmp/containerd
ctr_() { timeout -k 5 "$timeout_s" ctr --address "$cd_dir/containerd.sock" --namespace "$ns" "$@"; }
# ctr run with the runc shim and RUNTIME as its binary.
ctr_run() { ctr_ run --fifo-dir "$cd_dir/fifo" --runtime io.containerd.runc.v2 --runc-binary "$runtime" --runc-root "$rt_root" "$@"; }

# The init pid of a task, from `ctr task ls`.
ctr_pid() { ctr_ task ls 2>/dev/null | awk -v t="$1" '$1 == t { print $2 }'; }
ctr_status() { ctr_ task ls 2>/dev/null | awk -v t="$1" '$1 == t { print $3 }'; }
ctr_stopped() { [[ $(ctr_status "$1") == STOPPED ]]; }

# A v2-only host (/sys/fs/cgroup is cgroup2) has other file names than a v1
# or hybrid one. Only the v1 side runs on the CI machine (hybrid).
cgroup_v2=0
[[ $(stat -fc %T /sys/fs/cgroup 2>/dev/null) == cgroup2fs ]] && cgroup_v2=1
if ((cgroup_v2)); then mem_file=memory.max; else mem_file=memory.limit_in_bytes; fi

# The directory of a process's cgroup for CONTROLLER: its v1 hierarchy, or
# on a v2-only host the unified one ("0::/path").
cgroup_dir() {
	local pid=$1 controller=$2 line path
	while IFS= read -r line; do
		if ((cgroup_v2)); then
			[[ $line == 0::/* ]] && echo "/sys/fs/cgroup${line#0::}" && return 0
			continue
		fi
		path=${line#*:}
		if [[ ,${path%%:*}, == *",$controller,"* ]]; then
			echo "/sys/fs/cgroup/$controller${path#*:}"
			return 0
		fi
	done <"/proc/$pid/cgroup"
	return 1
}

# freezer_state DIR: FROZEN or THAWED (as v1's freezer.state says), from a
# cgroup directory given by cgroup_dir PID freezer.
freezer_state() {
	if ((cgroup_v2)); then
		case $(awk '$1 == "frozen" { print $2 }' "$1/cgroup.events" 2>&1) in
		1) echo FROZEN ;;
		0) echo THAWED ;;
		*) echo "$1/cgroup.events: no frozen line" ;;
		esac
	else
		cat "$1/freezer.state" 2>&1
	fi
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s.
wait_for() {
	local n=$(($1 * 10))
	shift
	while ((n-- > 0)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

start_containerd() {
	mkdir -p "$cd_dir" "$rt_root"
	# The shims' sockets go to /run/containerd/s whatever the config says.
	[[ -e /run/containerd ]] || made_run_containerd=1
	cat >"$cd_dir/config.toml" <<TOML
version = 2
root = "$cd_dir/root"
state = "$cd_dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$cd_dir/containerd.sock"
[ttrpc]
  address = "$cd_dir/containerd.sock.ttrpc"
[debug]
  address = "$cd_dir/debug.sock"
  level = "info"
TOML
	containerd --config "$cd_dir/config.toml" >"$cd_dir/containerd.log" 2>&1 &
	containerd_pid=$!
	if ! wait_for 20 ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1; then
		tail -20 "$cd_dir/containerd.log" >&2
		return 1
	fi
	ctr_ namespaces create "$ns" >/dev/null 2>&1
	ctr_ready=1
	ctr_ images import "$tmp/image/image.tar" >"$cd_dir/import.log" 2>&1 || {
		cat "$cd_dir/import.log" >&2
		return 1
	}
	grep -qxF "$image_ref" <<<"$(ctr_ images ls -q)" || {
		ctr_ images ls >&2
		return 1
	}
}

containerd_tests() {
	echo "== containerd $(containerd --version | awk '{print $3}'), ctr --runc-binary $runtime"
	local o=$cd_dir/out e=$cd_dir/err rc pid dir
	ctr_run_test
	ctr_detached_tests
	ctr_config_test
	ctr_tty_test
	ctr_invalid_tests
	ctr_leftover_test
}

ctr_run_test() {
	local o=$cd_dir/out e=$cd_dir/err rc

	# Run to completion: stdout and the exit status come back.
	run_to "$o" "$e" ctr_run --rm "$image_ref" c-run sh -c 'echo hello; exit 3'
	rc=$?
	if [[ $rc == 3 && $(cat "$o") == hello ]]; then ok "ctr run: stdout and exit code 3"; else
		not_ok "ctr run: stdout and exit code 3" "exit $rc" "stdout: $(SHOW_BYTES=300 show "$o")" "stderr: $(show "$e")"
	fi

}

# A detached container and what is done to it; stops at the first failure
# that leaves nothing to act on.
ctr_detached_tests() {
	local o=$cd_dir/out e=$cd_dir/err rc pid dir
	# Detached, with a memory limit; exit events recorded from here on.
	ctr_ events >"$cd_dir/events" 2>&1 &
	local events_pid=$!
	run_to "$o" "$e" ctr_run -d --memory-limit 67108864 "$image_ref" c-det \
		sh -c 'trap "exit 7" TERM; sleep 1000 & wait'
	rc=$?
	pid=$(ctr_pid c-det)
	if [[ $rc == 0 && -n $pid && $(ctr_status c-det) == RUNNING ]]; then ok "ctr run -d: running"; else
		not_ok "ctr run -d: running" "exit $rc" "stderr: $(show "$e")" "$(ctr_ task ls 2>&1)"
		kill "$events_pid" 2>/dev/null
		return
	fi

	# A second process, its output and its exit status.
	run_to "$o" "$e" ctr_ task exec --fifo-dir "$cd_dir/fifo" --exec-id e1 c-det sh -c 'echo exec-ok; exit 5'
	rc=$?
	if [[ $rc == 5 && $(cat "$o") == exec-ok ]]; then ok "ctr task exec: stdout and exit code 5"; else
		not_ok "ctr task exec: stdout and exit code 5" "exit $rc" "stdout: $(SHOW_BYTES=300 show "$o")" "stderr: $(show "$e")"
	fi

	# ps: the runtime's `ps --format json`.
	run_to "$o" "$e" ctr_ task ps c-det
	rc=$?
	if [[ $rc == 0 ]] && grep -qxF "$pid" <<<"$(awk 'NR > 1 { print $1 }' "$o")" && [[ $(wc -l <"$o") -ge 3 ]]; then
		ok "ctr task ps: lists the init and its child"
	else
		not_ok "ctr task ps: lists the init and its child" "exit $rc, init $pid" "$(cat "$o" "$e")"
	fi

	# The memory limit from the host side (ctr does not mount /sys/fs/cgroup).
	dir=$(cgroup_dir "$pid" memory)
	if [[ -n $dir && $(cat "$dir/$mem_file" 2>/dev/null) == 67108864 ]]; then
		ok "ctr --memory-limit: $mem_file"
	else
		not_ok "ctr --memory-limit: $mem_file" "dir $dir: $(cat "$dir/$mem_file" 2>&1)"
	fi

	# A pids limit through update. ctr 1.6 has no `task update` (and no pids
	# flag), so this is the shim's Update call as go-runc makes it: the
	# resources as JSON on stdin, the global flags of the shim. (A pids limit
	# at create, through containerd: ctr_config_test.)
	printf '{"pids": {"limit": 42}, "memory": {"limit": 67108864}}' >"$cd_dir/resources.json"
	dl "$runtime" --root "$rt_root/$ns" --log "$cd_dir/update-log.json" --log-format json \
		update --resources=- c-det <"$cd_dir/resources.json" >"$o" 2>"$e"
	rc=$?
	dir=$(cgroup_dir "$pid" pids)
	if [[ $rc == 0 && $(cat "$dir/pids.max" 2>/dev/null) == 42 ]]; then ok "update --resources=- (go-runc argv): pids.max"; else
		not_ok "update --resources=- (go-runc argv): pids.max" "exit $rc: $(show "$e")" "dir $dir: $(cat "$dir/pids.max" 2>&1)"
	fi

	# Metrics: read by the shim from the init's cgroup (v1 and v2 metrics
	# differ in the memory limit's field).
	run_to "$o" "$e" ctr_ task metrics --format json c-det
	rc=$?
	if [[ $rc == 0 ]] && jq -e '(.memory.usage.limit? // .memory.usage_limit) == 67108864 and .pids.limit == 42 and .pids.current >= 2' "$o" >/dev/null 2>&1; then
		ok "ctr task metrics: memory and pids"
	else
		not_ok "ctr task metrics: memory and pids" "exit $rc: $(show "$e")" "$(SHOW_BYTES=600 show "$o")"
	fi

	# Pause and resume; the freezer state on the host.
	dir=$(cgroup_dir "$pid" freezer)
	run_to "$o" "$e" ctr_ task pause c-det
	rc=$?
	if [[ $rc == 0 && $(ctr_status c-det) == PAUSED && $(freezer_state "$dir") == FROZEN ]]; then
		ok "ctr task pause"
	else
		not_ok "ctr task pause" "exit $rc: $(show "$e")" "status $(ctr_status c-det), freezer $(freezer_state "$dir")"
	fi
	run_to "$o" "$e" ctr_ task resume c-det
	rc=$?
	if [[ $rc == 0 && $(ctr_status c-det) == RUNNING && $(freezer_state "$dir") == THAWED ]]; then
		ok "ctr task resume"
	else
		not_ok "ctr task resume" "exit $rc: $(show "$e")" "status $(ctr_status c-det), freezer $(freezer_state "$dir")"
	fi

	# kill (SIGTERM, trapped: exit 7), then delete; the status from the events.
	run_to "$o" "$e" ctr_ task kill c-det
	rc=$?
	local exited=0
	wait_for 10 grep -q '/tasks/exit.*"container_id":"c-det".*"exit_status":7' "$cd_dir/events" && exited=1
	if [[ $rc == 0 && $exited == 1 ]]; then ok "ctr task kill: SIGTERM, exit status 7 in the events"; else
		not_ok "ctr task kill: SIGTERM, exit status 7 in the events" "exit $rc: $(show "$e")" \
			"$(grep /tasks/exit "$cd_dir/events")" "status $(ctr_status c-det)"
	fi
	kill "$events_pid" 2>/dev/null
	wait "$events_pid" 2>/dev/null
	run_to "$o" "$e" ctr_ task delete c-det
	rc=$?
	local rc2
	run_to "$o" "$e.2" ctr_ containers delete c-det
	rc2=$?
	if [[ $rc == 0 && $rc2 == 0 && -z $(ctr_ task ls -q) && ! -e $dir ]]; then ok "ctr task delete, container delete: cgroup gone"; else
		not_ok "ctr task delete, container delete: cgroup gone" "exit $rc/$rc2: $(show "$e" "$e.2")" "cgroup $dir"
	fi

}

# A whole spec given to ctr (`ctr run --config`): containerd hands it to the
# shim unchanged, so its linux.resources, a pids limit among them (ctr 1.6
# has no flag for one), reach the runtime's create. No image and no snapshot:
# root.path is a copy of the image's rootfs.
ctr_config_test() {
	local o=$cd_dir/out e=$cd_dir/err rc pid mem='' pids='' dir=''
	local spec=$cd_dir/config-spec.json rootfs=$cd_dir/config-rootfs
	rc=0
	cp -a "$tmp/image/rootfs" "$rootfs" &&
		run_to "$cd_dir/default-spec.json" "$e" ctr_ oci spec &&
		jq --arg root "$rootfs" --arg cg "/$ns/c-cfg" '
			.root = {path: $root}
			| .process.args = ["sleep", "1000"]
			| .process.env = ["PATH=/bin"]
			| .linux.cgroupsPath = $cg
			| .linux.resources.pids = {limit: 33}
			| .linux.resources.memory = {limit: 50331648}' \
			"$cd_dir/default-spec.json" >"$spec" 2>>"$e" || rc=$?
	if ((rc == 0)); then
		run_to "$o" "$e" ctr_run -d --config "$spec" c-cfg
		rc=$?
	fi
	pid=$(ctr_pid c-cfg)
	if [[ $rc == 0 && -n $pid ]]; then
		mem=$(cat "$(cgroup_dir "$pid" memory)/$mem_file" 2>&1)
		dir=$(cgroup_dir "$pid" pids)
		pids=$(cat "$dir/pids.max" 2>&1)
	fi
	if [[ $rc == 0 && $mem == 50331648 && $pids == 33 ]]; then
		ok "ctr run --config: the spec's pids and memory limits in pids.max, $mem_file"
	else
		not_ok "ctr run --config: the spec's pids and memory limits in pids.max, $mem_file" \
			"exit $rc: $(show "$e")" "pid ${pid:-none}, $mem_file: $mem, pids.max: $pids" "$(ctr_ task ls 2>&1)"
	fi
	if [[ -z $pid ]]; then
		ctr_ containers delete c-cfg >/dev/null 2>&1
		return
	fi

	# The init is sleep, as pid 1: SIGKILL, then delete. There is no snapshot
	# to remove; the check says so.
	ctr_ task kill -s SIGKILL c-cfg >/dev/null 2>&1
	wait_for 10 ctr_stopped c-cfg
	local rc2 snap
	run_to "$o" "$e" ctr_ task delete c-cfg
	rc=$?
	run_to "$o" "$e.2" ctr_ containers delete c-cfg
	rc2=$?
	snap=$(ctr_ snapshots ls 2>&1 | awk '$1 == "c-cfg"')
	if [[ $rc == 0 && $rc2 == 0 && -z $(ctr_ task ls -q) && -z $snap && ! -e $dir ]]; then
		ok "ctr run --config: task and container deleted, no snapshot, cgroup gone"
	else
		not_ok "ctr run --config: task and container deleted, no snapshot, cgroup gone" \
			"exit $rc/$rc2: $(show "$e" "$e.2")" "snapshot: $snap" "cgroup $dir"
	fi
}

ctr_tty_test() {
	local o=$cd_dir/out e=$cd_dir/err rc
	# A terminal, through script(1): ctr run -t needs one on its stdin.
	run_to "$o" "$e" dl script -qefc "ctr --address $cd_dir/containerd.sock --namespace $ns run --fifo-dir $cd_dir/fifo --runtime io.containerd.runc.v2 --runc-binary $runtime --runc-root $rt_root --rm -t $image_ref c-tty sh -c 'tty; echo tty-ok; exit 4'" /dev/null
	rc=$?
	if [[ $rc == 4 ]] && grep -aq '/dev/pts/[0-9]' "$o" && contains "$o" tty-ok; then ok "ctr run -t: a pty, exit code 4"; else
		not_ok "ctr run -t: a pty, exit code 4" "exit $rc" "output: $(SHOW_BYTES=400 show "$o" | tr '\r' ' ')" "stderr: $(SHOW_BYTES=400 show "$e")"
	fi

}

ctr_invalid_tests() {
	local o=$cd_dir/out e=$cd_dir/err rc
	# An invalid config: the runtime's own error reaches ctr's stderr.
	run_to "$o" "$e" ctr_run --rm --cwd work "$image_ref" c-bad true
	rc=$?
	if [[ $rc != 0 ]] && grep -q "$bad_cwd_text" "$e"; then ok "ctr run: a relative cwd shows the runtime's error"; else
		not_ok "ctr run: a relative cwd shows the runtime's error" "exit $rc, want /$bad_cwd_text/" "stderr: $(SHOW_BYTES=600 show "$e")"
	fi
	ctr_ containers delete c-bad >/dev/null 2>&1
	# runc 1.1 only warns about an unknown capability; keel refuses it.
	if ((is_keel)); then
		run_to "$o" "$e" ctr_run --rm --cap-add CAP_BOGUS "$image_ref" c-bad true
		rc=$?
		if [[ $rc != 0 ]] && grep -q "$bad_cap_text" "$e"; then ok "ctr run: an unknown capability shows keel's error"; else
			not_ok "ctr run: an unknown capability shows keel's error" "exit $rc, want /$bad_cap_text/" "stderr: $(SHOW_BYTES=600 show "$e")"
		fi
		ctr_ containers delete c-bad >/dev/null 2>&1
	fi

}

ctr_leftover_test() {
	# Nothing left: tasks, containers, mounts, cgroups, runtime state.
	local left=()
	[[ -z $(ctr_ task ls -q) ]] || left+=("tasks: $(ctr_ task ls -q | tr '\n' ' ')")
	[[ -z $(ctr_ containers ls -q) ]] || left+=("containers: $(ctr_ containers ls -q | tr '\n' ' ')")
	# The image's layer is a committed snapshot; a container's is active.
	local active
	active=$(ctr_ snapshots ls | awk '$3 == "Active" { print $1 }')
	[[ -z $active ]] || left+=("snapshots: $(echo "$active" | tr '\n' ' ')")
	[[ -z $(mounts_under "$cd_dir/state") ]] || left+=("mounts: $(mounts_under "$cd_dir/state" | tr '\n' ' ')")
	[[ -z $(find "$rt_root" -mindepth 2 2>/dev/null) ]] || left+=("runtime state: $(find "$rt_root" -mindepth 2 | tr '\n' ' ')")
	local cg
	cg=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -path "*/$ns/*" 2>/dev/null)
	[[ -z $cg ]] || left+=("cgroups: $(echo "$cg" | tr '\n' ' ')")
	if ((${#left[@]} == 0)); then ok "containerd: no tasks, containers, snapshots, mounts, cgroups or state left"; else
		not_ok "containerd: no tasks, containers, snapshots, mounts, cgroups or state left" "${left[@]}"
	fi
}

# What each runtime says about a relative process.cwd and an unknown seccomp
# flag (runc 1.1 knows no seccomp flags at all), and keel about an unknown
# capability (runc 1.1 only warns).
bad_cap_text='process.capabilities.[a-z]*\[[0-9]*\]: unknown capability "CAP_BOGUS"'
if ((is_keel)); then
	bad_cwd_text='process.cwd: "work" is not an absolute path'
	bad_seccomp_text='linux.seccomp.flags\[0\]: unknown flag "SECCOMP_FILTER_FLAG_BOGUS"'
else
	bad_cwd_text='[Cc]wd .*absolute'
	bad_seccomp_text='seccomp flags'
fi

if start_containerd; then
	containerd_tests
else
	not_ok "containerd: start the private daemon and import the image"
fi

# --- podman -----------------------------------------------------------------
pm_dir=$tmp/podman
pm_image=localhost/keel-busybox:test
pm() {
	timeout -k 5 "$timeout_s" podman --root "$pm_dir/root" --runroot "$pm_dir/runroot" \
		--tmpdir "$pm_dir/tmp" --cgroup-manager cgroupfs --events-backend file \
		--network-config-dir "$pm_dir/networks" "$@"
}
# Containers get --cgroup-parent /$ns (conmon goes to /$ns/conmon), so that
# the cleanup finds every cgroup of this run.
pm_run() { pm run --cgroup-parent "$cg_parent" "$@"; }

start_podman() {
	mkdir -p "$pm_dir"/{root,runroot,tmp,networks}
	# podman lowers its own RLIMIT_NPROC to 32768 before it starts conmon, so
	# the runtime cannot raise it above that; RLIMIT_NOFILE is ours.
	local nofile nproc
	nofile=$(ulimit -Hn)
	nproc=$(ulimit -Hu)
	[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
	# The runtime is registered by name (its basename), and listed as one
	# that writes JSON errors: then conmon passes --log-format=json --log=F.
	cat >"$pm_dir/containers.conf" <<TOML
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"
log_driver = "k8s-file"

[network]
network_config_dir = "$pm_dir/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$pm_dir/events.log"
tmp_dir = "$pm_dir/tmp"
runtime = "$rt_name"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "keel", "$rt_name"]

[engine.runtimes]
$rt_name = ["$runtime"]
TOML
	cat >"$pm_dir/storage.conf" <<TOML
[storage]
driver = "overlay"
graphroot = "$pm_dir/root"
runroot = "$pm_dir/runroot"
TOML
	export CONTAINERS_CONF=$pm_dir/containers.conf CONTAINERS_STORAGE_CONF=$pm_dir/storage.conf
	# conmon runs the runtime without --root: keel's default root is
	# /run/keel (XDG_RUNTIME_DIR, which conmon passes empty, plays no part).
	if ((is_keel)); then default_root=/run/keel; else default_root=/run/$rt_name; fi
	[[ -e $default_root ]] || made_default_root=1
	default_root_before=$(ls -A "$default_root" 2>/dev/null)
	podman_ready=1
	pm import "$tmp/image/layer.tar" "$pm_image" >"$pm_dir/import.log" 2>&1 || {
		cat "$pm_dir/import.log" >&2
		return 1
	}
}

pm_status() { pm inspect -f '{{.State.Status}}' "$1" 2>/dev/null; }

podman_tests() {
	echo "== podman $(podman --version | awk '{print $3}'), conmon $(conmon --version | awk 'NR == 1 {print $3}'), --runtime $rt_name"
	pm_run_tests
	pm_detached_tests
	pm_tty_test
	pm_invalid_test
	pm_leftover_test
}

pm_run_tests() {
	local o=$pm_dir/out e=$pm_dir/err rc

	run_to "$o" "$e" pm_run --rm "$pm_image" sh -c 'echo hello; exit 3'
	rc=$?
	if [[ $rc == 3 && $(cat "$o") == hello ]]; then ok "podman run: stdout and exit code 3"; else
		not_ok "podman run: stdout and exit code 3" "exit $rc" "stdout: $(SHOW_BYTES=300 show "$o")" "stderr: $(show "$e")"
	fi

	# By path instead of by name: conmon then passes no global flags at all.
	run_to "$o" "$e" pm_run --rm --runtime "$runtime" "$pm_image" sh -c 'echo by-path'
	rc=$?
	if [[ $rc == 0 && $(cat "$o") == by-path ]]; then ok "podman --runtime PATH run"; else
		not_ok "podman --runtime PATH run" "exit $rc" "stdout: $(SHOW_BYTES=300 show "$o")" "stderr: $(show "$e")"
	fi

}

pm_detached_tests() {
	local o=$pm_dir/out e=$pm_dir/err rc pid dir
	# Detached, with a memory and a pids limit.
	run_to "$o" "$e" pm_run -d --name p-det --memory 64m --pids-limit 42 "$pm_image" \
		sh -c 'trap "exit 7" TERM; sleep 1000 & wait'
	rc=$?
	pid=$(pm inspect -f '{{.State.Pid}}' p-det 2>/dev/null)
	if [[ $rc == 0 && $(pm_status p-det) == running && ${pid:-0} -gt 0 ]]; then ok "podman run -d: running"; else
		not_ok "podman run -d: running" "exit $rc" "stderr: $(show "$e")" "status $(pm_status p-det)"
		return
	fi

	run_to "$o" "$e" pm exec p-det sh -c 'echo exec-ok; exit 5'
	rc=$?
	if [[ $rc == 5 && $(cat "$o") == exec-ok ]]; then ok "podman exec: stdout and exit code 5"; else
		not_ok "podman exec: stdout and exit code 5" "exit $rc" "stdout: $(SHOW_BYTES=300 show "$o")" "stderr: $(show "$e")"
	fi

	run_to "$o" "$e" pm top p-det
	rc=$?
	if [[ $rc == 0 ]] && contains "$o" 'sleep 1000' && contains "$o" 'trap'; then ok "podman top: the init and its child"; else
		not_ok "podman top: the init and its child" "exit $rc: $(show "$e")" "$(SHOW_BYTES=600 show "$o")"
	fi

	# Limits, from the host and from inside (podman mounts /sys/fs/cgroup).
	# On v2 podman gives the container a cgroup namespace: its own cgroup is
	# /sys/fs/cgroup inside.
	local mem pids inside inside_files
	mem=$(cat "$(cgroup_dir "$pid" memory)/$mem_file" 2>&1)
	pids=$(cat "$(cgroup_dir "$pid" pids)/pids.max" 2>&1)
	inside_files=(/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max)
	((cgroup_v2)) && inside_files=(/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max)
	inside=$(pm exec p-det cat "${inside_files[@]}" 2>&1 | tr '\n' ' ')
	if [[ $mem == 67108864 && $pids == 42 && $inside == "67108864 42 " ]]; then
		ok "podman --memory --pids-limit: $mem_file, pids.max"
	else
		not_ok "podman --memory --pids-limit: $mem_file, pids.max" "host: $mem $pids" "inside: $inside"
	fi

	dir=$(cgroup_dir "$pid" freezer)
	run_to "$o" "$e" pm pause p-det
	rc=$?
	if [[ $rc == 0 && $(pm_status p-det) == paused && $(freezer_state "$dir") == FROZEN ]]; then
		ok "podman pause"
	else
		not_ok "podman pause" "exit $rc: $(show "$e")" "status $(pm_status p-det), freezer $(freezer_state "$dir")"
	fi
	run_to "$o" "$e" pm unpause p-det
	rc=$?
	if [[ $rc == 0 && $(pm_status p-det) == running && $(freezer_state "$dir") == THAWED ]]; then
		ok "podman unpause"
	else
		not_ok "podman unpause" "exit $rc: $(show "$e")" "status $(pm_status p-det), freezer $(freezer_state "$dir")"
	fi

	# kill (SIGTERM, trapped: exit 7), wait, rm.
	run_to "$o" "$e" pm kill -s TERM p-det
	rc=$?
	local code
	code=$(pm wait p-det 2>&1)
	if [[ $rc == 0 && $code == 7 ]]; then ok "podman kill: SIGTERM, podman wait gives 7"; else
		not_ok "podman kill: SIGTERM, podman wait gives 7" "exit $rc: $(show "$e")" "wait: $code"
	fi
	run_to "$o" "$e" pm rm p-det
	rc=$?
	if [[ $rc == 0 && -z $(pm ps -aq) && ! -e $dir ]]; then ok "podman rm: cgroup gone"; else
		not_ok "podman rm: cgroup gone" "exit $rc: $(show "$e")" "containers: $(pm ps -aq | tr '\n' ' ')" "cgroup $dir"
	fi

}

pm_tty_test() {
	local o=$pm_dir/out e=$pm_dir/err rc
	# A terminal, through script(1).
	run_to "$o" "$e" dl script -qefc "CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF podman --root $pm_dir/root --runroot $pm_dir/runroot --tmpdir $pm_dir/tmp --cgroup-manager cgroupfs --events-backend file --network-config-dir $pm_dir/networks run --cgroup-parent $cg_parent --rm -t $pm_image sh -c 'tty; echo tty-ok; exit 4'" /dev/null
	rc=$?
	if [[ $rc == 4 ]] && grep -aq '/dev/pts/[0-9]' "$o" && contains "$o" tty-ok; then ok "podman run -t: a pty, exit code 4"; else
		not_ok "podman run -t: a pty, exit code 4" "exit $rc" "output: $(SHOW_BYTES=400 show "$o" | tr '\r' ' ')" "stderr: $(SHOW_BYTES=400 show "$e")"
	fi

}

pm_invalid_test() {
	local o=$pm_dir/out e=$pm_dir/err rc
	# An invalid config that podman passes on (it checks capabilities and
	# sysctls itself): an unknown seccomp flag. podman reads the runtime's JSON
	# error log as one object and shows its message.
	printf '{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"], "syscalls": []}' >"$pm_dir/bogus-seccomp.json"
	run_to "$o" "$e" pm_run --rm --security-opt "seccomp=$pm_dir/bogus-seccomp.json" "$pm_image" true
	rc=$?
	if [[ $rc != 0 ]] && grep -q "$bad_seccomp_text" "$e"; then ok "podman run: an unknown seccomp flag shows the runtime's error"; else
		not_ok "podman run: an unknown seccomp flag shows the runtime's error" "exit $rc, want /$bad_seccomp_text/" "stderr: $(SHOW_BYTES=600 show "$e")"
	fi
}

pm_leftover_test() {
	local left=()
	[[ -z $(pm ps -aq) ]] || left+=("containers: $(pm ps -aq | tr '\n' ' ')")
	local m
	m=$(mounts_under "$pm_dir" | grep -vxF "$pm_dir/root/overlay")
	[[ -z $m ]] || left+=("mounts: $(echo "$m" | tr '\n' ' ')")
	local cg
	cg=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -path "*/$ns/libpod-*" 2>/dev/null)
	[[ -z $cg ]] || left+=("cgroups: $(echo "$cg" | tr '\n' ' ')")
	if ((${#left[@]} == 0)); then ok "podman: no containers, mounts or cgroups left"; else
		not_ok "podman: no containers, mounts or cgroups left" "${left[@]}"
	fi
}

if start_podman; then
	podman_tests
else
	not_ok "podman: private storage and image import"
fi

# --- after the teardown: nothing of this run may be left ------------------------
teardown
left=()
m=$(mounts_under "$tmp")
[[ -z $m ]] || left+=("mounts: $(echo "$m" | tr '\n' ' ')")
cg=$(our_cgroups)
[[ -z $cg ]] || left+=("cgroups: $(echo "$cg" | tr '\n' ' ')")
procs=$(pgrep -af -- "$tmp" | grep -v -- "$prog")
[[ -z $procs ]] || left+=("processes: $procs")
if [[ -n ${default_root:-} && -z ${made_default_root:-} ]]; then
	now=$(ls -A "$default_root" 2>/dev/null)
	[[ $now == "$default_root_before" ]] || left+=("in $default_root: $now")
elif [[ -n ${made_default_root:-} && -e $default_root ]]; then
	left+=("$default_root: $(find "$default_root" -mindepth 1 | tr '\n' ' ')")
fi
if ((${#left[@]} == 0)); then ok "teardown: no mounts, cgroups, processes or runtime state left"; else
	not_ok "teardown: no mounts, cgroups, processes or runtime state left" "${left[@]}"
fi

for f in "${failures[@]}"; do echo "$prog: failed: $f"; done
echo "$prog: $runtime, $((SECONDS - start_time))s"
echo "$rt_name: $passed passed, $failed failed"
((failed == 0))
