#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The main job in one command: installs what it needs, builds the plugin and runs
# a real GStreamer pipeline (videotestsrc ! radioembed ! appsink) that prints one
# line of embeddings per frame. Uses nvidia/C-RADIOv4-SO400M when it is in the
# Hugging Face cache or can be downloaded, else says why and uses the tiny test
# checkpoint in tests/fixtures/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
if ! dpkg -s libgstreamer-plugins-base1.0-dev python3-gst-1.0 gstreamer1.0-plugins-base \
  libopenblas-dev >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good python3-gst-1.0 python3-gi \
    pkg-config gcc curl ca-certificates libopenblas-dev >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "Installing Rust with rustup (https://rustup.rs)..."
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi

# Release: the dev profile optimises dependencies too, so it costs no more to
# build, and this crate's own loops run several times faster.
cargo build --release --lib --bin radio-embed
plugins="$(mktemp -d)"
trap 'rm -rf "$plugins"' EXIT
cp target/release/libgstradio.so "$plugins/"

model="nvidia/C-RADIOv4-SO400M"
# Finds the model in the Hugging Face cache, or downloads it there (1.6 GB).
if ! target/release/radio-embed info --model "$model" >/dev/null; then
  echo "NOTE: $model is not in the Hugging Face cache and could not be downloaded"
  echo "      (the reason is above). Running on the tiny random-weight test checkpoint"
  echo "      instead: the numbers below show the pipeline works, they are not"
  echo "      meaningful embeddings."
  model="$PWD/tests/fixtures/tiny-so400m"
fi

# This build runs the model on the CPU, where SO400M at the element's default
# resolution=512 (688x512 for these frames) takes tens of seconds a frame on a
# small machine. The demo asks for a 224-pixel shorter side instead.
resolution=224
echo "CPU build: embedding at resolution=$resolution (the element's default is 512) so the"
echo "           demo answers in seconds; a CUDA build (README: CUDA) runs the default."
GST_PLUGIN_PATH="$plugins" GST_REGISTRY="$plugins/registry.bin" \
  /usr/bin/python3 pipelines/print-embeddings.py "$model" \
  "videotestsrc num-buffers=8 pattern=ball ! video/x-raw,width=640,height=480" \
  "resolution=$resolution"
