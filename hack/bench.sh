#!/usr/bin/env bash
# hack/bench.sh [KEEL_BINARY]
#
# Start-up benchmark of keel against crun and runc (`make bench`): the same
# busybox bundles (hack/mkbundle.sh: runc's default config, terminal false,
# /bin/true), the three runtimes as commands of the same hyperfine
# invocations, all inside ONE private mount namespace in which
# /sys/fs/cgroup/unified is unmounted, so that all three see the same pure
# cgroup v1 layout (crun 1.8 refuses the hybrid one). The host's mounts are
# never touched: the script re-executes itself under
# `unshare -m --propagation private` and unmounts only in there.
#
# Prints a table of medians with keel's ratio to crun and to runc, and
# refreshes the generated part of docs/performance.md (between the
# bench:begin and bench:end markers; text outside them is kept).
#
# Needs root. Installs what is missing with apt-get: hyperfine, runc, crun,
# time (GNU /usr/bin/time), jq, busybox-static, binutils (strip).
# Every container gets a --root under a temp dir and an id of its own; on any
# exit, Ctrl-C included, the containers are deleted with --force and the temp
# dir is removed.
#
# Environment:
#   RUNS=60        timed runs per hyperfine command (and CPU samples for run)
#   WARMUP=5       warmup runs per hyperfine command
#   RSS_RUNS=10    /usr/bin/time samples per runtime for peak RSS
#   BATCH=50       containers in the batch, two at a time
#   BATCH_RUNS=5   timed batches per runtime (after one warmup batch)
#   DOC=docs/performance.md   where the results go; DOC= writes nothing
set -euo pipefail
shopt -s nullglob

prog=bench
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
self=$here/$(basename "${BASH_SOURCE[0]}")

RUNS=${RUNS:-60}
WARMUP=${WARMUP:-5}
RSS_RUNS=${RSS_RUNS:-10}
BATCH=${BATCH:-50}
BATCH_RUNS=${BATCH_RUNS:-5}
DOC=${DOC-$repo/docs/performance.md}
PARALLEL=2
RTS=(keel crun runc)
UNIFIED=/sys/fs/cgroup/unified

say() { echo "$prog: $*" >&2; }
die() {
	say "$*"
	exit 1
}

for v in RUNS WARMUP RSS_RUNS BATCH BATCH_RUNS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
((RUNS >= 2)) || die "RUNS must be at least 2"

# Lines of /proc/self/mountinfo whose mount point is $1 or below it.
mounts_under() {
	awk -v d="$1/" '{
		mp = $5
		gsub(/\\040/, " ", mp)
		if (index(mp "/", d) == 1) print mp
	}' /proc/self/mountinfo
}

# State directories that still name a container (one sub-directory per id for
# all three runtimes).
leftover_ids() {
	local dir
	for dir in "$1"/state/*/*/; do
		echo "$dir"
	done
}

# =============================================================================
# Outside the namespace: packages, bundles, the re-exec, the final cleanup.
# =============================================================================

install_missing() {
	local pkgs=(hyperfine runc crun time jq busybox-static binutils) missing=() pkg status
	for pkg in "${pkgs[@]}"; do
		status=$(dpkg -s "$pkg" 2>/dev/null || true)
		[[ $status == *'Status: install ok installed'* ]] || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	say "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

outer_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n ${tmp:-} && -d $tmp ]]; then
		if [[ -n $(leftover_ids "$tmp") ]]; then
			# The inner run was killed before its own cleanup: delete what is
			# left from the same kind of namespace it was created in.
			unshare -m --propagation private "$BASH" "$self" --cleanup "$tmp" "$keel" \
				"$(readlink /proc/self/ns/mnt)" || true
		fi
		if [[ -n $(leftover_ids "$tmp") ]]; then
			say "containers left under $tmp/state; not removing $tmp"
		elif [[ -n $(mounts_under "$tmp") ]]; then
			say "mounts left under $tmp; not removing it"
		else
			rm -rf -- "$tmp"
		fi
	fi
	exit "$rc"
}

outer() {
	[[ $(id -u) -eq 0 ]] || die "needs root (namespaces, cgroups, apt-get)"
	keel=$(readlink -f -- "${1:-$repo/target/x86_64-unknown-linux-musl/release/keel}")
	[[ -f $keel && -x $keel ]] ||
		die "no keel binary at $keel: cargo build --release (make bench does it)"
	install_missing

	local base=${TMPDIR:-/tmp}
	# hyperfine -N splits its command lines on whitespace.
	[[ $base != *[[:space:]]* && $keel != *[[:space:]]* ]] ||
		die "TMPDIR and the keel path must not contain whitespace"
	tmp=$(mktemp -d "$base/keel-bench.XXXXXX")
	trap outer_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	mkdir -p "$tmp/out" "$tmp/state"
	"$here/mkbundle.sh" "$tmp/b-true" /bin/true 2>/dev/null
	"$here/mkbundle.sh" "$tmp/b-nonet" /bin/true 2>/dev/null
	"$here/mkbundle.sh" "$tmp/b-sleep" sleep 86400 2>/dev/null
	jq '.linux.namespaces |= map(select(.type != "network"))' \
		"$tmp/b-nonet/config.json" >"$tmp/nonet.json"
	mv -f "$tmp/nonet.json" "$tmp/b-nonet/config.json"

	say "measuring in a private mount namespace (a few minutes)"
	unshare -m --propagation private "$BASH" "$self" --inner "$tmp" "$keel" \
		"$(readlink /proc/self/ns/mnt)"
}

# =============================================================================
# Inside the namespace.
# =============================================================================

# $1: the mount namespace of the caller, which must not be ours.
enter_layout() {
	[[ $(readlink /proc/self/ns/mnt) != "$1" ]] ||
		die "not in a private mount namespace; refusing to unmount anything"
	if mountpoint -q "$UNIFIED"; then
		umount "$UNIFIED"
	fi
}

setup_runtimes() {
	declare -gA BIN=([keel]=$keel [crun]=$(command -v crun) [runc]=$(command -v runc))
	ROOT=$tmp/state
	local rt
	for rt in "${RTS[@]}"; do
		[[ -x ${BIN[$rt]} ]] || die "$rt not found"
		mkdir -p "$ROOT/$rt"
	done
}

# Deletes (--force) every container left in the temp state roots.
delete_all() {
	local rt dir id
	for rt in "${RTS[@]}"; do
		for dir in "$tmp/state/$rt"/*/; do
			id=$(basename "$dir")
			timeout -k 5 30 "${BIN[$rt]}" --root "$tmp/state/$rt" delete --force "$id" \
				</dev/null >/dev/null 2>&1 || say "could not delete $rt container $id"
		done
	done
}

CHILD=
inner_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $CHILD ]]; then
		kill -TERM "$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
	fi
	delete_all
	exit "$rc"
}

# bounded SECS CMD...: runs CMD under a timeout in its own process group (the
# whole group is killed when the time is up), waiting in a way that lets
# Ctrl-C run the cleanup at once. Exit status 124 or 137 means it hung.
bounded() {
	local secs=$1 rc=0
	shift
	timeout -k 5 "$secs" "$@" </dev/null &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=
	return "$rc"
}

declare -A VAL=() NOTE=() SPREAD=() HANGS=([keel]=0 [crun]=0 [runc]=0) FAILS=([keel]=0 [crun]=0 [runc]=0)

median() {
	sort -g | awk '{ v[NR] = $1 }
		END {
			if (NR == 0) exit 1
			if (NR % 2) print v[(NR + 1) / 2]
			else printf "%.9g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

# Writes the helper that (c) and (f) run: one /bin/sh script, the same for all
# three runtimes, so that its own cost is the same in every column.
write_cycle_script() {
	cat >"$tmp/cycle.sh" <<'EOF'
#!/bin/sh
# cycle.sh one RUNTIME ROOT BUNDLE ID
# cycle.sh batch RUNTIME ROOT BUNDLE PREFIX COUNT PARALLEL
# create, start, wait for the exit (poll `state` until stopped), delete.
mode=$1 rt=$2 root=$3 bundle=$4
shift 4

cycle() {
	"$rt" --root "$root" create --bundle "$bundle" "$1" </dev/null >/dev/null || return 1
	"$rt" --root "$root" start "$1" || return 1
	n=0
	while :; do
		s=$("$rt" --root "$root" state "$1") || return 1
		case $s in
		*'"status": "stopped"'* | *'"status":"stopped"'*) break ;;
		esac
		n=$((n + 1))
		[ "$n" -lt 2000 ] || { echo "cycle: $1 never stopped" >&2; return 1; }
	done
	"$rt" --root "$root" delete "$1"
}

case $mode in
one)
	cycle "$1"
	;;
batch)
	prefix=$1 count=$2 par=$3
	w=0 pids=
	while [ "$w" -lt "$par" ]; do
		(
			i=$w
			while [ "$i" -lt "$count" ]; do
				cycle "$prefix-$$-$i" || exit 1
				i=$((i + par))
			done
		) &
		pids="$pids $!"
		w=$((w + 1))
	done
	rc=0
	for p in $pids; do
		wait "$p" || rc=1
	done
	exit "$rc"
	;;
esac
EOF
}

# hf ROW SECS RUNTIMES... -- HYPERFINE-ARGS...: one hyperfine invocation whose
# commands are one per runtime, in the order given; fills VAL[ROW,rt] with
# the median wall time (s), or NOTE[ROW,rt] when runs failed or it hung.
hf() {
	local row=$1 secs=$2 rts=() rc=0 rt i median nfail n p25 p75
	shift 2
	while [[ $1 != -- ]]; do
		rts+=("$1")
		shift
	done
	shift
	local json=$tmp/out/$row.json log=$tmp/out/$row.log
	bounded "$secs" hyperfine -N -i --style basic --export-json "$json" "$@" >"$log" 2>&1 || rc=$?
	if ((rc == 124 || rc == 137)); then
		n=$(grep -oE '^Benchmark [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$' || echo 1)
		rt=${rts[n - 1]}
		HANGS[$rt]=$((HANGS[$rt] + 1))
		for i in "${rts[@]}"; do
			NOTE[$row,$i]="not measured ($rt hung)"
		done
		NOTE[$row,$rt]="hung (> ${secs} s)"
		say "($row) timed out while running $rt"
		return 0
	elif ((rc != 0)) || [[ ! -s $json ]]; then
		for i in "${rts[@]}"; do
			NOTE[$row,$i]="error"
		done
		say "($row) hyperfine failed ($rc):"
		tail -n 5 "$log" >&2
		return 0
	fi
	i=0
	while IFS=$'\t' read -r median nfail p25 p75; do
		rt=${rts[i]}
		i=$((i + 1))
		if ((nfail)); then
			NOTE[$row,$rt]="failed ($nfail runs)"
			FAILS[$rt]=$((FAILS[$rt] + nfail))
		else
			VAL[$row,$rt]=$median
			SPREAD[$row,$rt]="$(fmt "$row" "$p25" | sed 's/ ms$//')–$(fmt "$row" "$p75")"
		fi
	done < <(jq -r '.results[] | (.times | sort) as $t | ($t | length) as $n |
		[.median, ([.exit_codes[] | select(. != 0)] | length),
		 $t[(($n - 1) * 0.25 | floor)], $t[(($n - 1) * 0.75 | ceil)]] | @tsv' "$json")
}

# Fills CMDS (--command-name, command, --prepare for each runtime) for `run`
# of BUNDLE with ids PREFIX-TAG-RUNTIME; the prepare step deletes the id
# (--force) so that a run never meets leftover state, then runs EXTRA.
run_cmds() {
	local tag=$1 bundle=$2 extra=${3:-true} rt id
	CMDS=()
	for rt in "${RTS[@]}"; do
		id=$pfx-$tag-$rt
		CMDS+=(--command-name "$rt" --prepare
			"sh -c '${BIN[$rt]} --root $ROOT/$rt delete --force $id >/dev/null 2>&1; $extra'"
			"${BIN[$rt]} --root $ROOT/$rt run --bundle $bundle $id")
	done
}

bench_run() {
	run_cmds a "$tmp/b-true"
	hf a 300 "${RTS[@]}" -- --warmup "$WARMUP" --runs "$RUNS" "${CMDS[@]}"
}

# CPU (user+sys) of (a): hyperfine 1.15's JSON has only the mean user and
# system time per command, so RUNS single-run invocations (the three runtimes
# each) give one sample per run, and the median of those is reported.
bench_cpu() {
	local i rc rt cpu nfail k=0
	declare -A samples=()
	run_cmds a "$tmp/b-true"
	for ((i = 0; i < RUNS; i++)); do
		rc=0
		bounded 60 hyperfine -N -i --runs 1 --style none --export-json "$tmp/out/cpu.json" \
			"${CMDS[@]}" >"$tmp/out/cpu.log" 2>&1 || rc=$?
		if ((rc == 124 || rc == 137)); then
			# The log of --style none does not say which one hung.
			for rt in "${RTS[@]}"; do
				NOTE[cpu,$rt]="not measured (a run hung)"
			done
			say "(cpu) timed out"
			return 0
		elif ((rc != 0)); then
			say "(cpu) hyperfine failed ($rc)"
			tail -n 5 "$tmp/out/cpu.log" >&2
			continue
		fi
		k=0
		while IFS=$'\t' read -r cpu nfail; do
			rt=${RTS[k]}
			k=$((k + 1))
			if ((nfail)); then
				NOTE[cpu,$rt]="failed"
				FAILS[$rt]=$((FAILS[$rt] + 1))
			else
				samples[$rt]+="$cpu "
			fi
		done < <(jq -r '.results[] | [.user + .system, ([.exit_codes[] | select(. != 0)] | length)] | @tsv' \
			"$tmp/out/cpu.json")
	done
	for rt in "${RTS[@]}"; do
		[[ -z ${NOTE[cpu,$rt]:-} && -n ${samples[$rt]:-} ]] || continue
		VAL[cpu,$rt]=$(tr ' ' '\n' <<<"${samples[$rt]}" | grep . | median)
	done
}

bench_nonet() {
	run_cmds b "$tmp/b-nonet"
	hf b 300 "${RTS[@]}" -- --warmup "$WARMUP" --runs "$RUNS" "${CMDS[@]}"
}

bench_pause() {
	run_cmds h "$tmp/b-true" "sleep 0.1"
	hf h 300 "${RTS[@]}" -- --warmup "$WARMUP" --runs "$RUNS" "${CMDS[@]}"
}

bench_cycle() {
	local rt id cmds=()
	for rt in "${RTS[@]}"; do
		id=$pfx-c-$rt
		cmds+=(--command-name "$rt" --prepare
			"sh -c '${BIN[$rt]} --root $ROOT/$rt delete --force $id >/dev/null 2>&1; true'"
			"sh $tmp/cycle.sh one ${BIN[$rt]} $ROOT/$rt $tmp/b-true $id")
	done
	hf c 400 "${RTS[@]}" -- --warmup "$WARMUP" --runs "$RUNS" "${cmds[@]}"
}

bench_exec() {
	local rt id rc cmds=() rts=()
	for rt in "${RTS[@]}"; do
		id=$pfx-d-$rt
		rc=0
		bounded 30 "${BIN[$rt]}" --root "$ROOT/$rt" create --bundle "$tmp/b-sleep" "$id" \
			>"$tmp/out/d-$rt.log" 2>&1 || rc=$?
		((rc != 0)) || bounded 30 "${BIN[$rt]}" --root "$ROOT/$rt" start "$id" \
			>>"$tmp/out/d-$rt.log" 2>&1 || rc=$?
		((rc != 0)) || bounded 30 "${BIN[$rt]}" --root "$ROOT/$rt" exec "$id" /bin/true \
			>>"$tmp/out/d-$rt.log" 2>&1 || rc=$?
		if ((rc == 124 || rc == 137)); then
			HANGS[$rt]=$((HANGS[$rt] + 1))
			NOTE[d,$rt]="hung"
		elif ((rc != 0)); then
			if [[ $rt == keel ]]; then
				NOTE[d,$rt]="n/a (keel has no exec yet)"
			else
				NOTE[d,$rt]="failed"
				FAILS[$rt]=$((FAILS[$rt] + 1))
				tail -n 3 "$tmp/out/d-$rt.log" >&2
			fi
		else
			rts+=("$rt")
			cmds+=(--command-name "$rt" "${BIN[$rt]} --root $ROOT/$rt exec $id /bin/true")
		fi
	done
	((${#rts[@]} == 0)) || hf d 300 "${rts[@]}" -- --warmup "$WARMUP" --runs "$RUNS" "${cmds[@]}"
	for rt in "${RTS[@]}"; do
		bounded 30 "${BIN[$rt]}" --root "$ROOT/$rt" delete --force "$pfx-d-$rt" >/dev/null 2>&1 || true
	done
}

# Peak RSS of `run` from /usr/bin/time -v (KiB), RSS_RUNS samples per runtime,
# interleaved.
bench_rss() {
	local i rt rc kb
	declare -A samples=()
	for ((i = 1; i <= RSS_RUNS; i++)); do
		for rt in "${RTS[@]}"; do
			[[ -z ${NOTE[e,$rt]:-} ]] || continue
			rc=0
			bounded 30 /usr/bin/time -v -o "$tmp/out/rss.txt" "${BIN[$rt]}" --root "$ROOT/$rt" \
				run --bundle "$tmp/b-true" "$pfx-e$i-$rt" >/dev/null 2>&1 || rc=$?
			if ((rc == 124 || rc == 137)); then
				HANGS[$rt]=$((HANGS[$rt] + 1))
				NOTE[e,$rt]="hung"
			elif ((rc != 0)); then
				FAILS[$rt]=$((FAILS[$rt] + 1))
				NOTE[e,$rt]="failed"
			else
				kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$tmp/out/rss.txt")
				samples[$rt]+="$kb "
			fi
		done
	done
	for rt in "${RTS[@]}"; do
		[[ -z ${NOTE[e,$rt]:-} && -n ${samples[$rt]:-} ]] || continue
		VAL[e,$rt]=$(tr ' ' '\n' <<<"${samples[$rt]}" | grep . | median)
	done
}

bench_batch() {
	local rt cmds=()
	for rt in "${RTS[@]}"; do
		cmds+=(--command-name "$rt"
			"sh $tmp/cycle.sh batch ${BIN[$rt]} $ROOT/$rt $tmp/b-true $pfx-f-$rt $BATCH $PARALLEL")
	done
	hf f 600 "${RTS[@]}" -- --warmup 1 --runs "$BATCH_RUNS" "${cmds[@]}"
	for rt in "${RTS[@]}"; do
		[[ -n ${VAL[f,$rt]:-} ]] || continue
		VAL[f,$rt]=$(awk -v n="$BATCH" -v t="${VAL[f,$rt]}" 'BEGIN { printf "%.9g", n / t }')
	done
}

is_static() {
	! ldd "$1" >/dev/null 2>&1
}

bench_size() {
	local rt bin
	STATIC_KEEL=no
	for rt in "${RTS[@]}"; do
		bin=$(readlink -f -- "${BIN[$rt]}")
		VAL[g1,$rt]=$(stat -c %s -- "$bin")
		strip -o "$tmp/out/stripped" -- "$bin"
		VAL[g2,$rt]=$(stat -c %s -- "$tmp/out/stripped")
		rm -f -- "$tmp/out/stripped"
		if is_static "$bin"; then
			LINK[$rt]=static
		else
			LINK[$rt]=dynamic
		fi
	done
	[[ ${LINK[keel]} == static ]] && STATIC_KEEL=yes
	return 0
}
declare -A LINK=()

# --- table -------------------------------------------------------------------

ROWS=(a cpu b c d e f g1 g2 h hangs)
declare -A LABEL=(
	[a]="(a) run, default config: wall"
	[cpu]="(a) run: CPU user+sys"
	[b]="(b) run, no network namespace: wall"
	[c]="(c) create + start + wait + delete: wall"
	[d]="(d) exec /bin/true into a running container: wall"
	[e]="(e) run: peak RSS (median of $RSS_RUNS)"
	[f]="(f) $BATCH containers, $PARALLEL at a time: containers/s"
	[g1]="(g) binary size"
	[g2]="(g) binary size, stripped"
	[h]="(h) run after a 100 ms pause: wall"
	[hangs]="hangs / failed runs"
)
# Target: the limit on keel/crun, and whether keel must stay under or over it.
declare -A LIMIT=([a]=0.8 [cpu]=0.7 [b]=0.8 [c]=0.8 [d]=0.8 [e]=1 [f]=1.25 [h]=0.8)
declare -A TARGET=(
	[a]="≤ 0.8× crun"
	[cpu]="≤ 0.7× crun"
	[b]="≤ 0.8× crun (run target)"
	[c]="≤ 0.8× crun"
	[d]="≤ 0.8× crun"
	[e]="≤ crun"
	[f]="≥ 1.25× crun"
	[g1]="—"
	[g2]="static, ≤ 4 MiB"
	[h]="≤ 0.8× crun (run target)"
	[hangs]="zero hangs"
)

fmt() {
	local row=$1 v=$2
	case $row in
	a | cpu | b | c | d | h) awk -v v="$v" 'BEGIN { printf "%.2f ms", v * 1000 }' ;;
	e) awk -v v="$v" 'BEGIN { printf "%.1f MiB", v / 1024 }' ;;
	f) awk -v v="$v" 'BEGIN { printf "%.1f /s", v }' ;;
	g1 | g2) awk -v v="$v" 'BEGIN { printf "%.2f MiB", v / 1048576 }' ;;
	esac
}

cell() {
	local row=$1 rt=$2
	if [[ $row == hangs ]]; then
		echo "${HANGS[$rt]} / ${FAILS[$rt]}"
	elif [[ -n ${VAL[$row,$rt]:-} ]]; then
		fmt "$row" "${VAL[$row,$rt]}"
		[[ $row != g2 ]] || printf ' (%s)' "${LINK[$rt]}"
	else
		echo "${NOTE[$row,$rt]:-not measured}"
	fi
}

ratio() {
	local row=$1 a=${VAL[$1,keel]:-} b=${VAL[$1,$2]:-}
	if [[ $row == hangs || -z $a || -z $b ]]; then
		echo "—"
	else
		awk -v a="$a" -v b="$b" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×", a / b }'
	fi
}

status() {
	local row=$1 a=${VAL[$1,keel]:-} c=${VAL[$1,crun]:-}
	case $row in
	g1) echo "—" ;;
	g2)
		if [[ -z $a ]]; then
			echo "not measured"
		elif ((a > 4 * 1048576)); then
			echo "missed"
		elif [[ $STATIC_KEEL != yes ]]; then
			echo "missed (size met; dynamically linked)"
		else
			echo "met"
		fi
		;;
	hangs)
		if ((HANGS[keel] == 0)); then echo met; else echo missed; fi
		;;
	*)
		if [[ -z $a || -z $c ]]; then
			[[ -n ${NOTE[$row,keel]:-} ]] && echo "missed" || echo "not measured"
		else
			awk -v a="$a" -v c="$c" -v l="${LIMIT[$row]}" -v up="$([[ $row == f ]] && echo 1 || echo 0)" \
				'BEGIN { r = a / c; ok = up ? (r >= l) : (r <= l); print ok ? "met" : "missed" }'
		fi
		;;
	esac
}

table() {
	local row
	echo "| measure | keel | crun | runc | keel/crun | keel/runc | target | status |"
	echo "|---|---:|---:|---:|---:|---:|---|---|"
	for row in "${ROWS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$row]}" \
			"$(cell "$row" keel)" "$(cell "$row" crun)" "$(cell "$row" runc)" \
			"$(ratio "$row" crun)" "$(ratio "$row" runc)" "${TARGET[$row]}" "$(status "$row")"
	done
}

# The spread of the timed runs behind the medians of the hyperfine rows.
spread_table() {
	local row
	echo "| measure | keel | crun | runc |"
	echo "|---|---:|---:|---:|"
	for row in a b c d h; do
		printf '| %s | %s | %s | %s |\n' "${LABEL[$row]}" \
			"${SPREAD[$row,keel]:-—}" "${SPREAD[$row,crun]:-—}" "${SPREAD[$row,runc]:-—}"
	done
}

progress() {
	local row=$1 rt line="($1)"
	for rt in "${RTS[@]}"; do
		line+="  $rt $(cell "$row" "$rt")"
	done
	say "$line"
}

# --- docs/performance.md -------------------------------------------------------

first_line() {
	"$@" 2>/dev/null | head -n 1 || true
}

report() {
	local date kernel cores model os commit dirty
	date=$(date -u '+%Y-%m-%d %H:%M UTC')
	kernel=$(uname -r)
	cores=$(nproc)
	model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	os=$(awk -F= '$1 == "PRETTY_NAME" { gsub(/"/, "", $2); print $2 }' /etc/os-release)
	commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
	dirty=""
	[[ -z $(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] ||
		dirty=", with uncommitted changes in src/"
	cat <<EOF
Measured $date on $os, kernel $kernel, $cores cores ($model), cgroup v1
hybrid layout (see the method). Load average before / after the run:
$LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg).

Runtimes: $(first_line "$keel" --version) (commit $commit$dirty, \`make build\`,
sha256 $(sha256sum "$keel" | cut -c1-12)),
$(first_line crun --version), $(first_line runc --version); $(first_line hyperfine --version).

**Method.** \`make bench\` (hack/bench.sh) builds busybox bundles with
hack/mkbundle.sh (runc's default config, \`terminal: false\`, process
\`/bin/true\`) and re-executes itself in one private mount namespace
(\`unshare -m --propagation private\`) in which /sys/fs/cgroup/unified is
unmounted, so that keel, crun and runc all see the same pure cgroup v1 layout
(crun 1.8 refuses the hybrid one; the host's mounts are not touched). Each
runtime has its own \`--root\` under a temp dir and its own container ids.
Wall times come from \`hyperfine -N\` (no shell) with the three runtimes as the
commands of one invocation, $WARMUP warmup and $RUNS timed runs each; each
command's \`--prepare\` deletes (\`--force\`) its container id so that no run
meets leftover state; the median is reported. (a) \`run\` of the default config;
(b) the same config without the network namespace; (c) \`create\`, \`start\`,
\`state\` polled until it says stopped, \`delete\`, as separate calls made by a
small /bin/sh script (the same script for all three, so its cost is in every
column); (d) \`exec <id> /bin/true\` into a container that runs \`sleep\`;
(e) "Maximum resident set size" from \`/usr/bin/time -v\` of \`run\` (the
largest of the runtime process and the children it waited for, e.g. \`runc
init\`), median of $RSS_RUNS interleaved samples; (f) $BATCH containers, each as in
(c), by $PARALLEL concurrent workers: hyperfine times the whole batch (1 warmup,
$BATCH_RUNS runs) and containers/s is $BATCH over the median; (g) the size of the
binary as installed and after \`strip\`, and whether it is statically linked;
(h) (a) with \`sleep 0.1\` in \`--prepare\`, so that no run starts right after
the previous container's teardown. CPU time of (a) is user+system from
hyperfine's JSON export: hyperfine 1.15 exports only a per-command mean, so
$RUNS more invocations of one run per runtime give per-run samples, of which the
median is reported; it counts the runtime and the processes it waited for
(the container's \`/bin/true\` included). Every call runs under a timeout, and
one that runs out counts as a hang of the runtime that was running. Failed
runs (non-zero exit) are counted and leave their cell unmeasured. A target is
met when keel's median against crun's is within it.

$(table)

Spread of the timed runs behind the wall-time medians (25th–75th percentile):

$(spread_table)
EOF
}

write_doc() {
	[[ -n $DOC ]] || return 0
	local begin='<!-- bench:begin: generated by hack/bench.sh; edit outside these markers -->'
	local end='<!-- bench:end -->'
	local body=$tmp/out/doc.body new=$tmp/out/doc.new
	report >"$body"
	if [[ -f $DOC ]] && grep -qxF -- "$begin" "$DOC" && grep -qxF -- "$end" "$DOC"; then
		awk -v begin="$begin" -v end="$end" -v bodyfile="$body" '
			$0 == begin { print; while ((getline l < bodyfile) > 0) print l; skip = 1; next }
			$0 == end { skip = 0 }
			!skip { print }' "$DOC" >"$new"
	else
		[[ ! -f $DOC ]] || say "$DOC has no bench markers: rewriting it whole"
		{
			echo "# keel performance"
			echo
			echo "Start-up cost of keel next to crun and runc, measured by \`make bench\`"
			echo "(hack/bench.sh). The part between the markers is rewritten by each run."
			echo
			echo "$begin"
			cat "$body"
			echo "$end"
		} >"$new"
	fi
	cat "$new" >"$DOC"
	say "wrote $DOC"
}

inner() {
	tmp=$1 keel=$2
	setup_runtimes
	trap inner_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	enter_layout "$3"
	pfx=kb$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
	if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
		say "load average is $LOAD_BEFORE on $(nproc) cores: expect noisy numbers"
	fi
	write_cycle_script

	bench_size
	progress g2
	say "(a) run, default config"
	bench_run
	progress a
	say "(a) CPU time, $RUNS single runs each"
	bench_cpu
	progress cpu
	say "(b) run without a network namespace"
	bench_nonet
	progress b
	say "(c) create + start + wait + delete"
	bench_cycle
	progress c
	say "(d) exec into a running container"
	bench_exec
	progress d
	say "(h) run after a 100 ms pause"
	bench_pause
	progress h
	say "(e) peak RSS of run, $RSS_RUNS samples each"
	bench_rss
	progress e
	say "(f) $BATCH containers, $PARALLEL at a time"
	bench_batch
	progress f

	echo
	table
	echo
	spread_table
	echo
	write_doc
}

case ${1:-} in
--inner)
	shift
	inner "$@"
	;;
--cleanup)
	tmp=$2 keel=$3
	setup_runtimes
	enter_layout "$4"
	delete_all
	;;
*)
	outer "$@"
	;;
esac
