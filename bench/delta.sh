#!/usr/bin/env bash
# bench/delta.sh: tufota deltas next to zstd --patch-from and xdelta3 on
# real image pairs (two Debian bookworm package versions each), fetched with
# apt-get download into a temporary directory (never committed).
#
# For each pair it prints a markdown row: image size, zstd -19 of the full
# new image, then for tufota (delta.Make/Apply via bench/deltatool),
# zstd --patch-from and xdelta3: delta size (and % of zstd full), create
# wall/CPU seconds and peak RSS, apply peak RSS. Every apply is checked
# against the new image (cmp). Not run by tests: it downloads ~200 MB and
# takes minutes of CPU. Needs apt-get, dpkg-deb, zstd, xdelta3, lz4,
# /usr/bin/time (apt-get install -y xdelta3 zstd lz4 time).
#
#   bench/delta.sh            # all pairs
#   PAIRS="containerd" WORKERS=1 bench/delta.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tufota-delta-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PAIRS=${PAIRS:-"containerd vmlinux vmlinuz ovmf"}
WORKERS=${WORKERS:-2} # tufota's match-search goroutines (the goal is "on 2 cores")

for tool in apt-get dpkg-deb zstd xdelta3 lz4 xz /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "delta bench: $tool missing (apt-get install -y xdelta3 zstd lz4 time)" >&2; exit 1; }
done
"$GO" build -o "$WORK/deltatool" ./bench/deltatool

# versions PKG: the two newest versions apt knows, oldest first.
versions() { apt-cache madison "$1" | awk '{print $3}' | sort -uV | tail -2; }

# fetch PKG VERSION DIR: download and unpack one package version.
fetch() {
	mkdir -p "$3"
	(cd "$WORK" && apt-get download -q "$1=$2" >/dev/null)
	dpkg-deb -x "$WORK/$1_$(echo "$2" | sed 's/:/%3a/')_"*.deb "$3"
}

# vmlinux VMLINUZ OUT: the kernel's uncompressed image, from the XZ (Debian
# amd64) or LZ4 payload of the bzImage.
vmlinux() {
	local off
	off=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$1" | head -1 | cut -d: -f1 || true)
	if [ -n "$off" ]; then
		tail -c +"$((off + 1))" "$1" | xz -dc >"$2" 2>/dev/null || true
	else
		off=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$1" | head -1 | cut -d: -f1)
		tail -c +"$((off + 1))" "$1" | lz4 -dc >"$2" 2>/dev/null || true
	fi
	[ -s "$2" ] || { echo "delta bench: cannot unpack $1" >&2; return 1; }
}

pair() { # NAME -> sets OLD NEW OLDV NEWV
	local name=$1 a b
	case $name in
	containerd | ovmf)
		read -r a b < <(versions "$name" | xargs)
		fetch "$name" "$a" "$WORK/$name-old"
		fetch "$name" "$b" "$WORK/$name-new"
		local f=usr/bin/containerd
		[ "$name" = ovmf ] && f=usr/share/OVMF/OVMF_CODE_4M.fd
		OLD=$WORK/$name-old/$f NEW=$WORK/$name-new/$f OLDV=$a NEWV=$b
		;;
	vmlinuz | vmlinux)
		local ka kb
		read -r a b < <(versions linux-image-amd64 | xargs)
		ka=$(apt-cache depends "linux-image-amd64=$a" | awk '/Depends: linux-image-6/{print $2; exit}')
		kb=$(apt-cache depends "linux-image-amd64=$b" | awk '/Depends: linux-image-6/{print $2; exit}')
		if [ ! -d "$WORK/kernel-old" ]; then
			fetch "$ka" "$(versions "$ka" | tail -1)" "$WORK/kernel-old"
			fetch "$kb" "$(versions "$kb" | tail -1)" "$WORK/kernel-new"
		fi
		OLD=$(ls "$WORK"/kernel-old/boot/vmlinuz-*) NEW=$(ls "$WORK"/kernel-new/boot/vmlinuz-*) OLDV=$a NEWV=$b
		if [ "$name" = vmlinux ]; then
			vmlinux "$OLD" "$WORK/vmlinux-old"
			vmlinux "$NEW" "$WORK/vmlinux-new"
			OLD=$WORK/vmlinux-old NEW=$WORK/vmlinux-new
		fi
		;;
	*) echo "unknown pair $name" >&2; return 1 ;;
	esac
}

# timed OUTVAR CMD...: runs CMD under /usr/bin/time; OUTVAR gets "secs rss_kib".
timed() {
	local var=$1
	shift
	/usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; return 1; }
	printf -v "$var" '%s' "$(tail -1 "$WORK/time")"
}

mib() { awk -v k="$1" 'BEGIN{printf "%.0f", k/1024}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", 100*a/b}'; }
size() { stat -c %s "$1"; }

echo "| pair | image | zstd -19 full | tufota delta | create s / MiB | apply MiB | zstd --patch-from | create s / MiB | apply MiB | xdelta3 -9 | create s / MiB | apply MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for name in $PAIRS; do
	pair "$name"
	n=$(size "$NEW")
	zstd -q -19 -T1 -f "$NEW" -o "$WORK/full.zst"
	full=$(size "$WORK/full.zst")
	long=$(awk -v s="$(size "$OLD")" 'BEGIN{w=10; while (2^w < s) w++; print w}')

	timed tmk "$WORK/deltatool" make -workers "$WORKERS" "$OLD" "$NEW" "$WORK/p.tufd"
	timed tap "$WORK/deltatool" apply -memory $((16 << 20)) "$OLD" "$WORK/p.tufd" "$WORK/out"
	cmp -s "$WORK/out" "$NEW" || { echo "tufota apply differs on $name" >&2; exit 1; }
	td=$(size "$WORK/p.tufd")

	timed zmk zstd -q -19 -T1 --long="$long" --patch-from="$OLD" -f "$NEW" -o "$WORK/p.zst"
	timed zap zstd -q -d --long="$long" --patch-from="$OLD" -f "$WORK/p.zst" -o "$WORK/out"
	cmp -s "$WORK/out" "$NEW" || { echo "zstd apply differs on $name" >&2; exit 1; }
	zd=$(size "$WORK/p.zst")

	timed xmk xdelta3 -e -9 -f -s "$OLD" "$NEW" "$WORK/p.xd"
	timed xap xdelta3 -d -f -s "$OLD" "$WORK/p.xd" "$WORK/out"
	cmp -s "$WORK/out" "$NEW" || { echo "xdelta3 apply differs on $name" >&2; exit 1; }
	xd=$(size "$WORK/p.xd")

	row() { # delta-bytes "secs rss" "secs rss"
		read -r cs cr <<<"$2"
		read -r _ ar <<<"$3"
		printf '| %s B (%s %%) | %s / %s | %s ' "$1" "$(pct "$1" "$full")" "$cs" "$(mib "$cr")" "$(mib "$ar")"
	}
	printf '| %s %s → %s | %s B | %s B ' "$name" "$OLDV" "$NEWV" "$n" "$full"
	row "$td" "$tmk" "$tap"
	row "$zd" "$zmk" "$zap"
	row "$xd" "$xmk" "$xap"
	echo "|"
done
