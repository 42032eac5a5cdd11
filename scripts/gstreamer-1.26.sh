#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Runs a command (cargo, typically) in this checkout inside a Debian 13 chroot that
# has GStreamer 1.26, which Debian 12 does not ship: the `v1_26` feature (the
# embeddings as a GstTensorMeta) builds and is tested there. The root is made with
# debootstrap and kept in .gst-1.26/ for the next run; it has GStreamer's base
# and good plugins (the tests use videoflip and videoscale).
#
# The chroot needs no network of its own for cargo: every crate of Cargo.lock is
# fetched on the host first and cargo runs offline inside, with this checkout,
# CARGO_HOME, RUSTUP_HOME and cargo's folder bind-mounted at their own paths.
# Its builds go to target/gst-1.26, never the host's target/debug: they link
# GStreamer 1.26 libraries the host does not have. debootstrap and apt take the
# host's own Debian mirror (DEBIAN_MIRROR overrides it) and proxy settings, and
# the chroot gets the host's CA certificates. Needs root (debootstrap, chroot,
# mount).
#   usage: scripts/gstreamer-1.26.sh cargo test --features v1_26 --test radioembed
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$repo/.gst-1.26"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_bin="$(dirname "$(command -v cargo)")"
host_certs=/etc/ssl/certs/ca-certificates.crt

if [ "$(id -u)" -ne 0 ]; then
  echo "gstreamer-1.26.sh: needs root for debootstrap, chroot and mount" >&2
  exit 1
fi

# A run killed without its exit trap (SIGKILL, a machine's session ending) leaves
# the host's repo, Rust toolchain and cargo home bind-mounted under the chroot,
# where deleting the chroot folder would delete them too. Undo such mounts first,
# deepest first.
findmnt -rn -o TARGET | awk -v root="$root/" 'index($0, root) == 1' | sort -r |
  while read -r stale; do umount "$stale" 2>/dev/null || umount --lazy "$stale"; done

# The first Debian archive (not the security one) the host's apt reads, in either
# source format.
host_mirror() {
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ for (i = 2; i <= NF; i++) print $i }'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }'
  } | grep -v security | grep -m1 -E '/debian/?$' || true
}

# The proxy the host's apt uses, if any, for debootstrap and the chroot's apt.
apt_proxy="$(apt-config shell P Acquire::http::Proxy 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p")"
export http_proxy="${http_proxy:-$apt_proxy}"

# .bootstrapped marks a finished debootstrap; .ready holds the package list
# installed, so a changed list installs again.
packages="pkg-config gcc libc6-dev libgstreamer-plugins-bad1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good libopenblas-dev"
if [ ! -e "$root/.bootstrapped" ]; then
  mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
  if [ -z "$mirror" ]; then
    echo "gstreamer-1.26.sh: the host's apt sources name no Debian archive; set" \
      "DEBIAN_MIRROR to one (a URL ending in /debian)" >&2
    exit 1
  fi
  echo "gstreamer-1.26.sh: Debian 13 from $mirror${http_proxy:+ through $http_proxy}" >&2
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >&2
  rm -rf "$root"
  debootstrap --variant=minbase trixie "$root" "$mirror" >/dev/null
  if [ -n "$http_proxy" ]; then
    echo "Acquire::http::Proxy \"$http_proxy\";" >"$root/etc/apt/apt.conf.d/80host-proxy"
  fi
  touch "$root/.bootstrapped"
fi
if [ "$(cat "$root/.ready" 2>/dev/null)" != "$packages" ]; then
  chroot "$root" apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends $packages >/dev/null
  chroot "$root" apt-get clean
  echo "$packages" >"$root/.ready"
fi

# Everything cargo may need inside, optional dependencies included.
(cd "$repo" && cargo fetch --locked --quiet)

mounted=()
unmount() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    # A process of the chroot (GStreamer's plugin scanner) may still be exiting
    # and keep a mount busy for a moment: retry, then detach it lazily.
    for _ in 1 2 3 4 5; do
      umount "${mounted[i]}" 2>/dev/null && continue 2
      sleep 1
    done
    umount --lazy "${mounted[i]}"
  done
}
trap unmount EXIT
bind() {
  if [ -d "$1" ]; then
    mkdir -p "$root$2"
  else
    mkdir -p "$(dirname "$root$2")" && touch "$root$2"
  fi
  mount --bind "$1" "$root$2"
  mounted+=("$root$2")
}
bind "$repo" "$repo"
bind "$cargo_home" "$cargo_home"
bind "$rustup_home" "$rustup_home"
# rustup's cargo proxy lives outside CARGO_HOME when CI gives cargo a home of its own.
case "$cargo_bin/" in
  "$cargo_home"/* | "$rustup_home"/* | "$repo"/*) ;;
  *) bind "$cargo_bin" "$cargo_bin" ;;
esac
if [ -f "$host_certs" ]; then
  bind "$host_certs" /etc/ssl/certs/host-ca-certificates.crt
fi
mount -t proc proc "$root/proc"
mounted+=("$root/proc")

chroot "$root" pkg-config --modversion gstreamer-1.0 gstreamer-analytics-1.0 |
  paste -sd' ' | sed 's/^/GStreamer and its analytics library in the chroot: /'
chroot "$root" env PATH="$cargo_bin:/usr/bin:/bin" \
  CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" CARGO_NET_OFFLINE=true \
  CARGO_TARGET_DIR="$repo/target/gst-1.26" \
  SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt \
  bash -c 'cd "$1" && shift && exec "$@"' _ "$repo" "$@"
