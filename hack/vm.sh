#!/usr/bin/env bash
# hack/vm.sh: run a command as root in a throwaway qemu guest whose only
# cgroup hierarchy is cgroup v2, with every controller enabled.
#
# usage: hack/vm.sh [-v] [--timeout SECS] [--mem SIZE] [--] COMMAND [ARGS...]
#        hack/vm.sh --prepare     install and cache what the guest needs, then exit
#
# The guest runs Debian 12's stock kernel (the .deb is downloaded and unpacked
# into the cache, never installed on the host) with a busybox initramfs. Its
# root is the host's / read-only over 9p under a tmpfs overlay: it looks
# writable and every write is thrown away. The current directory is shared
# read-write at the same path, cached in the guest (9p cache=loose: quick to
# exec from, but what the host changes there while the guest runs may go
# unseen; the guest's writes reach the host by the time it exits). /tmp, /run
# and /dev/shm are fresh tmpfs. /sys/fs/cgroup is cgroup2 (nsdelegate) and
# cgroup v1 is disabled (cgroup_no_v1=all). No host mount is touched.
# COMMAND runs with bash as root in the root cgroup, in the same directory,
# with the caller's environment but TMPDIR=/tmp, and stdin /dev/null. Its
# stdout and stderr stream back separately. Keep FIFOs and sockets off the 9p
# share (making a FIFO there fails with ENXIO): /tmp and /run are fine.
#
#   -v              print the guest's console log and timings to stderr afterwards
#   --timeout SECS  wall-clock limit, boot included (default 900)
#   --mem SIZE      guest memory (default 2G)
# Exit status: COMMAND's; 124 on timeout; 125 when the guest itself failed.
# Environment: KEEL_VM_CACHE, the cache directory (default $TMPDIR/keel-vm).
# Needs root (apt-get, 9p passthrough). Uses KVM only with kvm_intel/kvm_amd;
# otherwise qemu emulates the CPU (TCG): a few seconds to boot, slower inside.
set -euo pipefail

die() {
	echo "vm.sh: $*" >&2
	exit 125
}
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; }

verbose=0 timeout=900 mem=2G prepare=0
while [ $# -gt 0 ]; do
	case $1 in
	-v) verbose=1 ;;
	--timeout) timeout=${2:?--timeout SECS} && shift ;;
	--mem) mem=${2:?--mem SIZE} && shift ;;
	--prepare) prepare=1 ;;
	-h | --help) usage && exit 0 ;;
	--) shift && break ;;
	-*) usage >&2 && exit 125 ;;
	*) break ;;
	esac
	shift
done
[ $# -gt 0 ] || [ "$prepare" = 1 ] || { usage >&2 && exit 125; }
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, 9p passthrough)"

# ------------------------------------------------------------ host packages
apt() { DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 -o APT::Sandbox::User=root "$@" >&2; }
apt_install() {
	echo "vm.sh: installing $*" >&2
	apt install -y --no-install-recommends "$@" ||
		{ apt update && apt install -y --no-install-recommends "$@"; } || die "apt-get install $* failed"
}
installed() { [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
installed busybox-static || apt_install busybox-static # a static /bin/busybox for the initramfs
command -v xz >/dev/null || apt_install xz-utils

# ------------------------------------------------------------ cache
# $cache/linux-image-*.deb        the kernel package, downloaded once
# $cache/linux-image-*.vmlinux    its kernel, uncompressed
# $cache/initrd-<key>             the initramfs; key: this script and the .deb
MODULES="virtio_pci virtio_console 9pnet_virtio 9p overlay" # loaded in the guest, with their dependencies
cache=${KEEL_VM_CACHE:-${TMPDIR:-/tmp}/keel-vm}

write_init() { # stage 1, /init in the initramfs: build the root, then hand over to stage 2
	cat <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
log() { read -r t _ </proc/uptime; echo "keel-vm: ${t}s $*"; }
die() { log "FATAL: $*"; reboot -f; }
log "stage 1"
for m in $(cat /modules); do insmod "/lib/modules/$m.ko" || die "insmod $m"; done
o=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /lower /upper /newroot
mount -t 9p -o "ro,$o,cache=loose" root /lower || die "cannot mount the host root over 9p"
mount -t tmpfs -o mode=755 tmpfs /upper && mkdir /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot || die "overlay"
cd /newroot || die "cd /newroot"
mount -t proc -o nosuid,nodev,noexec proc proc &&
	mount -t sysfs -o nosuid,nodev,noexec sysfs sys &&
	mount -t devtmpfs -o nosuid,mode=755 devtmpfs dev &&
	mkdir -p dev/pts dev/shm &&
	mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts dev/pts &&
	mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs dev/shm &&
	ln -sf /proc/self/fd dev/fd && ln -sf fd/0 dev/stdin && ln -sf fd/1 dev/stdout && ln -sf fd/2 dev/stderr &&
	mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs tmp &&
	mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs run || die "cannot mount the API file systems"
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 sys/fs/cgroup || die "cgroup2"
for c in $(cat sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >sys/fs/cgroup/cgroup.subtree_control || die "cannot enable controller $c"
done
log "cgroup2 controllers: $(cat sys/fs/cgroup/cgroup.subtree_control)"
read -r cwd </cwd
mkdir -p ".$cwd" && mount -t 9p -o "$o,cache=loose" cwd ".$cwd" || die "cannot mount $cwd over 9p"
mkdir run/keel-vm && cp /bin/busybox /stage2 /cmd run/keel-vm/ || die "cannot copy to /run/keel-vm"
exec switch_root /newroot /run/keel-vm/busybox sh /run/keel-vm/stage2
die "switch_root failed"
EOF
}

write_stage2() { # PID 1 in the final root: find the ports, run the command, report, power off
	cat <<'EOF'
B=/run/keel-vm/busybox
log() { read -r t _ </proc/uptime; echo "keel-vm: ${t}s $*" >/dev/console; }
$B hostname keel-vm
$B ip link set lo up
# virtio-serial ports appear asynchronously, their names a little later
out= err= rc= n=0
until [ -n "$out" ] && [ -n "$err" ] && [ -n "$rc" ]; do
	for p in /sys/class/virtio-ports/*; do
		read -r name <"$p/name" 2>/dev/null || continue
		case $name in out | err | rc) eval "$name=/dev/\${p##*/}" ;; esac
	done
	n=$((n + 1))
	[ $n -le 200 ] || { log "FATAL: virtio-serial ports missing" && $B reboot -f; }
	[ -n "$out" ] && [ -n "$err" ] && [ -n "$rc" ] || $B sleep 0.05
done
# relay through FIFOs: a port opens only once, and /dev/stderr is a reopening
R=/run/keel-vm
$B mkfifo $R/out $R/err
$B cat $R/out >"$out" &
o=$!
$B cat $R/err >"$err" &
e=$!
log "command starts"
/bin/bash $R/cmd </dev/null >$R/out 2>$R/err
s=$?
log "command exited $s"
# processes left behind may hold the FIFOs open: wait 2 s at most for the relays
($B sleep 2 && kill $o $e) 2>/dev/null &
wait $o $e
echo "$s" >"$rc"
$B sync
$B reboot -f
EOF
}

build() { # from the kernel package $deb: $vmlinux if missing, and $initrd
	local tmp ird kimg kver off order=() m
	tmp=$(mktemp -d "$cache/build.XXXXXX")
	echo "vm.sh: building the guest's kernel and initramfs from ${deb##*/}" >&2
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/*' ||
		die "cannot unpack $deb"
	kimg=$(echo "$tmp"/boot/vmlinuz-*)
	kver=${kimg##*/vmlinuz-}
	if [ ! -f "$kimg" ] || [ ! -d "$tmp/lib/modules/$kver" ]; then die "no kernel or modules in $deb"; fi
	if [ ! -s "$vmlinux" ]; then
		# The uncompressed ELF boots through PVH: no decompression under emulation.
		off=$(LC_ALL=C grep -Fabo $'\xfd7zXZ' "$kimg" | head -n1 | cut -d: -f1)
		[ -n "$off" ] || die "no xz payload in $kimg"
		tail -c +$((off + 1)) "$kimg" | xz -dc >"$tmp/vmlinux" 2>/dev/null || true # xz complains of the data after the stream
		[ "$(head -c 4 "$tmp/vmlinux")" = $'\x7fELF' ] || die "cannot decompress $kimg"
		mv "$tmp/vmlinux" "$vmlinux"
	fi
	ird=$tmp/initrd.d
	mkdir -p "$ird"/{bin,dev,proc,lib/modules}
	cp /bin/busybox "$ird/bin/"
	for m in $(/bin/busybox --list); do [ "$m" = busybox ] || ln -s busybox "$ird/bin/$m"; done
	mknod -m 600 "$ird/dev/console" c 5 1
	find "$tmp/lib/modules/$kver" -name '*.ko' >"$tmp/ko"
	add_module() { # copies $1 and what it depends on, dependencies first
		local m=$1 f d
		[[ " ${order[*]} " != *" $m "* ]] || return 0
		f=$(grep -m1 -E "/${m//_/[_-]}\.ko$" "$tmp/ko") || die "module $m not in $deb"
		for d in $(tr '\0' '\n' <"$f" | sed -n '/^depends=/{s///;s/,/ /g;p;q}'); do add_module "$d"; done
		cp "$f" "$ird/lib/modules/$m.ko"
		order+=("$m")
	}
	for m in $MODULES; do add_module "$m"; done
	echo "${order[*]}" >"$ird/modules"
	write_init >"$ird/init"
	write_stage2 >"$ird/stage2"
	chmod 755 "$ird/init"
	(cd "$ird" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) >"$tmp/initrd"
	mv "$tmp/initrd" "$initrd"
	rm -rf "$tmp"
}

mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
rm -rf "$cache"/build.* # left by an interrupted build (we hold the lock)
debs=("$cache"/linux-image-*.deb)
deb=${debs[-1]}
if [ ! -f "$deb" ]; then
	resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
	kpkg=$(resolve)
	[ -n "$kpkg" ] || { apt update && kpkg=$(resolve); }
	[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 (is this Debian 12?)"
	echo "vm.sh: downloading $kpkg" >&2
	(cd "$cache" && apt download "$kpkg") || die "apt-get download $kpkg failed"
	debs=("$cache"/linux-image-*.deb)
	deb=${debs[-1]}
fi
vmlinux=${deb%.deb}.vmlinux
initrd=$cache/initrd-$({ cat "${BASH_SOURCE[0]}" && echo "${deb##*/}"; } | sha256sum | cut -c1-16)
if [ ! -s "$vmlinux" ] || [ ! -s "$initrd" ]; then build; fi
touch "$initrd"
find "$cache" -maxdepth 1 -name 'initrd-*' -mtime +7 -delete # unused for a week
exec 9>&-
[ "$prepare" = 0 ] || { echo "vm.sh: cache ready: $vmlinux $initrd" >&2 && exit 0; }

# ------------------------------------------------------------ run
t0=$(date +%s.%N)
cwd=$(pwd -P)
[ "$cwd" != / ] || die "refusing to share / read-write: run from a project directory"
[[ $cwd != *$'\n'* ]] || die "cannot share a path with a newline"
run=$(mktemp -d "${TMPDIR:-/tmp}/keel-vm-run.XXXXXX")
qpid='' readers=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	[ -z "$qpid" ] || { kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null; } || true
	[ ${#readers[@]} = 0 ] || kill "${readers[@]}" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# The per-run part of the initramfs: the command script and the directory to
# share. An uncompressed cpio archive may precede the cached one.
mkdir "$run/rd"
{
	echo '#!/bin/bash'
	while read -r v; do
		case $v in PWD | OLDPWD | SHLVL | _ | BASH* | SHELLOPTS | TMPDIR) continue ;; esac
		printf 'export %s=%q\n' "$v" "${!v}"
	done < <(compgen -e)
	echo 'export TMPDIR=/tmp'
	printf 'cd -- %q || exit 125\nexec' "$cwd"
	printf ' %q' "$@"
	echo
} >"$run/rd/cmd"
printf '%s\n' "$cwd" >"$run/rd/cwd"
(cd "$run/rd" && printf '%s\n' cmd cwd | /bin/busybox cpio -o -H newc 2>/dev/null) >"$run/initrd"
cat "$initrd" >>"$run/initrd"

# shellcheck disable=SC2054 # qemu's commas
accel=(-accel tcg,thread=multi -cpu max,la57=off)
if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
	accel=(-accel kvm -cpu host)
fi
cpus=$(nproc)
[ "$cpus" -le 2 ] || cpus=2
q() { printf '%s' "${1//,/,,}"; } # a comma in a qemu option value is written twice

mkfifo "$run/out" "$run/err"
cat "$run/out" &
readers+=($!)
cat "$run/err" >&2 &
readers+=($!)
timeout --foreground -k 5 "$timeout" qemu-system-x86_64 "${accel[@]}" \
	-machine pc -m "$mem" -smp "$cpus" -display none -nodefaults -no-user-config -no-reboot \
	-kernel "$(q "$vmlinux")" -initrd "$(q "$run/initrd")" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all mitigations=off cryptomgr.notests" \
	-chardev "file,id=con,path=$(q "$run/console")" -serial chardev:con \
	-fsdev local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=root \
	-fsdev "local,id=cwd,path=$(q "$cwd"),security_model=passthrough,multidevs=remap" \
	-device virtio-9p-pci,fsdev=cwd,mount_tag=cwd \
	-device virtio-serial-pci \
	-chardev "file,id=out,path=$(q "$run/out")" -device virtserialport,chardev=out,name=out \
	-chardev "file,id=err,path=$(q "$run/err")" -device virtserialport,chardev=err,name=err \
	-chardev "file,id=rc,path=$(q "$run/rc")" -device virtserialport,chardev=rc,name=rc \
	</dev/null >"$run/qemu.log" 2>&1 &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=
# wake the readers even if qemu never opened the FIFOs
: <>"$run/out"
: <>"$run/err"
wait "${readers[@]}" || true
readers=()

if [ "$verbose" = 1 ]; then
	echo "---- vm.sh: guest console" >&2
	cat "$run/console" >&2 || true
	echo "---- vm.sh: qemu exit $qrc, host wall $(echo "$t0 $(date +%s.%N)" | awk '{ printf "%.2f", $2 - $1 }')s" >&2
fi
rc=$(cat "$run/rc" 2>/dev/null) || true
[[ $rc =~ ^[0-9]+$ ]] && exit "$rc"
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "vm.sh: timed out after ${timeout}s; qemu killed" >&2
	exit 124
fi
echo "vm.sh: the guest reported no exit status (qemu exit $qrc)" >&2
[ "$verbose" = 1 ] || tail -n 20 "$run/qemu.log" "$run/console" >&2 || true
exit 125
