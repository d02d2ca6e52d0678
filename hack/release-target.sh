#!/usr/bin/env bash
# hack/release-target.sh: prints the target triple of keel's release build.
#
# The host's musl twin (a static binary that starts fastest,
# docs/performance.md), added with rustup when it is missing. When rustup
# cannot add it (no rustup, or its download server is out of reach), the
# host's own triple, with a warning: the glibc build is complete, it only
# starts slower.
set -uo pipefail

host=$(rustc -vV | sed -n 's/^host: //p')
[[ -n $host ]] || { echo "release-target: rustc -vV gave no host triple" >&2; exit 1; }
musl=${host/%-gnu/-musl}
if [[ $musl == "$host" ]] || rustup target list --installed 2>/dev/null | grep -qx -- "$musl"; then
	echo "$musl"
elif command -v rustup >/dev/null && rustup target add "$musl" >&2; then
	echo "$musl"
else
	echo "release-target: cannot add $musl with rustup; the release build is for $host (dynamic glibc: slower start-up)" >&2
	echo "$host"
fi
