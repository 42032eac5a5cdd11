#!/usr/bin/env bash
# Runs a command (cargo, typically) in this checkout inside a Debian 13 chroot that
# has GStreamer 1.26, which Debian 12 does not ship: the `v1_26` feature (the
# embeddings as a GstTensorMeta) builds and is tested there. The root is made with
# debootstrap and kept in .gst-1.26/ for the next run; this checkout, cargo and
# rustup are bind-mounted into it at their own paths, so cargo reuses everything the
# host build compiled that does not touch GStreamer. Needs root (debootstrap,
# chroot, mount) and Debian's mirror.
#   usage: scripts/gstreamer-1.26.sh cargo test --features v1_26 --test radioembed
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$repo/.gst-1.26"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_bin="$(dirname "$(command -v cargo)")"

if [ "$(id -u)" -ne 0 ]; then
  echo "gstreamer-1.26.sh: needs root for debootstrap, chroot and mount" >&2
  exit 1
fi

if [ ! -e "$root/.ready" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >&2
  rm -rf "$root"
  debootstrap --variant=minbase trixie "$root" http://deb.debian.org/debian >/dev/null
  chroot "$root" apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends pkg-config gcc libc6-dev libgstreamer-plugins-bad1.0-dev \
    gstreamer1.0-plugins-base >/dev/null
  chroot "$root" apt-get clean
  touch "$root/.ready"
fi

mounted=()
unmount() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}"; done
}
trap unmount EXIT
bind() {
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  mounted+=("$root$1")
}
bind "$repo"
bind "$cargo_home"
bind "$rustup_home"
mount -t proc proc "$root/proc"
mounted+=("$root/proc")

chroot "$root" pkg-config --modversion gstreamer-1.0 gstreamer-analytics-1.0 |
  paste -sd' ' | sed 's/^/GStreamer and its analytics library in the chroot: /'
chroot "$root" env PATH="$cargo_bin:/usr/bin:/bin" \
  CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" \
  bash -c 'cd "$1" && shift && exec "$@"' _ "$repo" "$@"
