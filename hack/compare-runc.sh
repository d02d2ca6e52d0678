#!/usr/bin/env bash
# Run the same bundle under runc and keel and diff what the container saw:
# mountinfo (normalised), /proc/self/status ids/caps/umask/NoNewPrivs, limits,
# hostname, id, env, cwd, /dev listing, oom_score_adj.
#
# usage: hack/compare-runc.sh [KEEL_BINARY]
# Exit status: 0 when the only differences are the documented ones
# (docs/compare-runc.md), 1 otherwise. Needs root and runc (installed if missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
keel=${1:-$here/../target/debug/keel}
keel=$(readlink -f "$keel")
[ -x "$keel" ] || { echo "compare-runc: no keel binary at $keel (cargo build first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "compare-runc: needs root" >&2; exit 2; }
if ! command -v runc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-compare.XXXXXX")
id=keel-compare-$$
cleanup() {
  runc --root "$tmp/runc-state" delete --force "$id" >/dev/null 2>&1 || true
  "$keel" --root "$tmp/keel-state" delete --force "$id" >/dev/null 2>&1 || true
  if grep -q "$tmp" /proc/self/mountinfo; then
    echo "compare-runc: mounts left under $tmp; not removing it" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# shellcheck disable=SC2016 # expanded by the shell inside the container
probe='
echo "== hostname"; hostname
echo "== id"; id
echo "== cwd"; pwd
echo "== env"; env | sort
echo "== status"; grep -E "^(Uid|Gid|Groups|Umask|NoNewPrivs|Seccomp|Cap[A-Za-z]+):" /proc/self/status
echo "== limits"; cat /proc/self/limits
echo "== oom"; cat /proc/self/oom_score_adj
echo "== session"; cut -d" " -f6 /proc/self/stat
echo "== dev"; ls -l /dev | sed "1d" | awk "{print \$1, \$3, \$4, \$5, \$6, \$NF}"
echo "== mountinfo"; cat /proc/self/mountinfo
'
KEEL="$keel" "$here/mkbundle.sh" "$tmp/bundle" sh -c "$probe" >/dev/null

# Mount ids, device numbers, the host-side root of each mount and sizes that
# depend on the host are not what the container "sees" in a way that matters.
normalise() {
  awk '
    /^== mountinfo/ { inmi = 1; print; next }
    /^== / { inmi = 0 }
    !inmi { print; next }
    {
      n = split($0, f, " ")
      opt = ""; i = 7
      while (f[i] != "-") { opt = opt " " f[i]; i++ }
      gsub(/shared:[0-9]+|master:[0-9]+|propagate_from:[0-9]+/, "&", opt)
      gsub(/:[0-9]+/, ":N", opt)
      fstype = f[i + 1]; super = f[i + 3]
      gsub(/size=[0-9]+k/, "size=Nk", super)
      print f[5], f[6], fstype, super opt
    }' | sed -E 's/(inode64|nr_inodes=[0-9]+),?//g'
}

runc --root "$tmp/runc-state" run --bundle "$tmp/bundle" "$id" </dev/null >"$tmp/runc.out" 2>"$tmp/runc.err" || true
"$keel" --root "$tmp/keel-state" run --bundle "$tmp/bundle" "$id" </dev/null >"$tmp/keel.out" 2>"$tmp/keel.err" || true
[ -s "$tmp/runc.out" ] || { echo "compare-runc: runc printed nothing:"; cat "$tmp/runc.err"; exit 1; }
[ -s "$tmp/keel.out" ] || { echo "compare-runc: keel printed nothing:"; cat "$tmp/keel.err"; exit 1; }
normalise <"$tmp/runc.out" >"$tmp/runc.norm"
normalise <"$tmp/keel.out" >"$tmp/keel.norm"

# Documented differences (docs/compare-runc.md), as lines that may appear on one side only.
known='^(> /sys/fs/cgroup/unified |[<>] /sys/fs/cgroup (ro|rw),nosuid,nodev,noexec,relatime tmpfs (ro|rw),mode=755$)'
if diff -u "$tmp/runc.norm" "$tmp/keel.norm" >"$tmp/diff"; then
  echo "compare-runc: identical"
  exit 0
fi
echo "compare-runc: runc (-) vs keel (+):"
sed -n '3,$p' "$tmp/diff"
unexplained=$(sed -n '3,$p' "$tmp/diff" | grep -E '^[-+][^-+]' | sed -E 's/^-/< /; s/^\+/> /' | grep -vE "$known" || true)
if [ -n "$unexplained" ]; then
  echo "compare-runc: unexplained differences:"
  echo "$unexplained"
  exit 1
fi
echo "compare-runc: only documented differences"
