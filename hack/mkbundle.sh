#!/usr/bin/env bash
# hack/mkbundle.sh DIR [CMD...]
#
# Builds an OCI bundle offline from Debian's busybox-static:
#   DIR/rootfs       busybox, one symlink per applet in /bin, a minimal /etc
#   DIR/config.json  runc's default config with "terminal": false and
#                    process.args = CMD (default: sh)
#
# config.json comes from `$KEEL spec` (edited with jq) when KEEL names a keel
# binary, otherwise from the template below, which is runc's default spec.
#
# Idempotent: DIR may be missing, empty, or a bundle this script made before
# (it leaves a .keel-mkbundle marker); anything else is refused.
#
# Environment: KEEL (keel binary), BUSYBOX (default /bin/busybox).
set -euo pipefail

prog=${0##*/}
die() {
	echo "$prog: $*" >&2
	exit 1
}

[[ $# -ge 1 && -n $1 && $1 != -h && $1 != --help ]] || {
	echo "usage: $prog DIR [CMD...]" >&2
	exit 2
}

dir=$(realpath -m -- "$1")
shift
[[ $# -gt 0 ]] || set -- sh
[[ $dir != / ]] || die "refusing to use / as a bundle"

marker=.keel-mkbundle
busybox=${BUSYBOX:-/bin/busybox}

[[ -x $busybox ]] || die "$busybox not found: install busybox-static (make deps)"
if ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked: install busybox-static (make deps)"
fi

# --- is DIR ours to (re)write? ---------------------------------------------
if [[ -e $dir || -L $dir ]]; then
	[[ -d $dir && ! -L $dir ]] || die "$dir exists and is not a directory"
	if [[ ! -e $dir/$marker ]] && [[ -n $(ls -A -- "$dir") ]]; then
		die "$dir exists and is not a bundle made by $prog; refusing to overwrite it"
	fi
fi

# Never delete through a mount: a leftover bind mount under the bundle would
# make rm -rf reach into the host.
mounts_under() {
	awk -v d="$1/" '{
		mp = $5
		gsub(/\\040/, " ", mp)
		if (index(mp "/", d) == 1) print mp
	}' /proc/self/mountinfo
}
busy=$(mounts_under "$dir")
[[ -z $busy ]] || die "mounts exist under $dir, unmount them first:"$'\n'"$busy"

mkdir -p -- "$dir"
touch -- "$dir/$marker"

# --- rootfs, built aside and swapped in ------------------------------------
new=$dir/.rootfs.new
old=$dir/.rootfs.old
rm -rf -- "$new" "$old"

mkdir -p -- "$new"/{bin,proc,sys,dev,tmp,root,etc}
chmod 0755 -- "$new" "$new"/{bin,proc,sys,dev,root,etc}
chmod 1777 -- "$new/tmp"
chmod 0700 -- "$new/root"
cp -- "$busybox" "$new/bin/busybox"
chmod 0755 -- "$new/bin/busybox"

"$busybox" --list | while IFS= read -r applet; do
	[[ -n $applet && $applet != busybox && $applet != */* ]] || continue
	ln -s busybox "$new/bin/$applet"
done
[[ -L $new/bin/sh ]] || die "$busybox has no sh applet"

cat >"$new/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$new/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo keel >"$new/etc/hostname"
chmod 0644 -- "$new"/etc/{passwd,group,hostname}

if [[ -d $dir/rootfs ]]; then
	mv -- "$dir/rootfs" "$old"
fi
mv -- "$new" "$dir/rootfs"
rm -rf -- "$old"

# --- config.json --------------------------------------------------------------
# JSON string literal for $1, without jq.
json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	s=${s//$'\r'/\\r}
	s=${s//$'\b'/\\b}
	s=${s//$'\f'/\\f}
	if [[ $s =~ [[:cntrl:]] ]]; then
		die "argument with control characters needs jq (make deps)"
	fi
	printf '"%s"' "$s"
}

template() {
	local args=$1
	cat <<EOF
{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": false,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": $args,
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": ["nosuid", "noexec", "nodev"]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": ["nosuid", "noexec", "nodev", "ro"]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{ "type": "pid" },
			{ "type": "network" },
			{ "type": "ipc" },
			{ "type": "uts" },
			{ "type": "mount" }
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
EOF
}

have_jq=false
command -v jq >/dev/null 2>&1 && have_jq=true

# JSON array of the arguments: jq encodes each one when it is there (jq's own
# --args would take an argument such as -c for one of its options).
json_args() {
	local out="" a
	for a in "$@"; do
		if $have_jq; then
			a=$(printf '%s' "$a" | jq -Rs .)
		else
			a=$(json_str "$a")
		fi
		out+="${out:+, }$a"
	done
	printf '[%s]' "$out"
}

work=$(mktemp -d "$dir/.config.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

if [[ -n ${KEEL:-} ]]; then
	[[ -x $KEEL && -f $KEEL ]] || die "KEEL=$KEEL is not an executable file"
	$have_jq || die "editing \`keel spec\` output needs jq: run make deps"
	"$KEEL" spec --bundle "$work" || die "$KEEL spec failed"
	[[ -s $work/config.json ]] || die "$KEEL spec wrote no config.json"
	jq --argjson args "$(json_args "$@")" \
		'.process.terminal = false | .process.args = $args | .root.path = "rootfs"' \
		<"$work/config.json" >"$work/config.new"
else
	template "$(json_args "$@")" >"$work/config.new"
fi

chmod 0644 -- "$work/config.new"
mv -f -- "$work/config.new" "$dir/config.json"
echo "$prog: bundle ready in $dir (args: $*)" >&2
