#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The project's test command (what .ci/run runs once system packages are in):
# formatting, lints, every unit and integration test, the plugin loading from the
# build tree, the `v1_26` feature against GStreamer 1.26 (a Debian 13 chroot), and
# the `cuda` feature built against CUDA 13.0 from PyPI with its tests run on the
# CPU (a stub libcuda stands in for the driver).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints the minutes since the start, so CI logs show where the time goes.
step() { printf '\n== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# Every `cargo test` result line goes to this log, summed up at the end.
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
tests() { "$@" 2>&1 | tee -a "$results"; }

# The MQTT tests start Debian's mosquitto broker themselves (on 127.0.0.1), with
# certificates they make with openssl; the search page's test drives Debian's
# chromium, headless, through chromedriver; the default build links Debian's
# libopenblas.
if [ ! -x /usr/sbin/mosquitto ] || ! command -v openssl >/dev/null ||
  [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null ||
  ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    mosquitto openssl chromium chromium-driver libopenblas-dev >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings
# The build without the downloader (no TLS stack) must stay sound too.
cargo clippy --lib --no-default-features -- -D warnings

step "cargo test"
# The cdylib is what GStreamer and the Python meta test load; cargo test alone
# builds the library only as an rlib.
cargo build --lib
tests cargo test

step "optional feature: kafka (librdkafka built from source)"
# Only the targets it changes: checking every target again would cost CI minutes
# and check nothing new.
feature_targets=(--lib --test publish --test publish_kafka)
cargo clippy --features kafka "${feature_targets[@]}" -- -D warnings
tests cargo test --features kafka "${feature_targets[@]}"

step "gst-inspect-1.0 radioembed from the build tree"
scripts/check-plugin.sh target/debug/libgstradio.so

step "v1_26 feature (GstTensorMeta): GStreamer 1.26 in a Debian 13 chroot"
# Tests only: a clippy pass here would check every dependency again in the
# chroot's own target folder, about 5 of CI's 60 minutes, for the one file the
# feature adds (src/meta/tensor.rs). Lint it by hand after changing it:
#   scripts/gstreamer-1.26.sh cargo clippy --features v1_26 --lib --tests -- -D warnings
tests scripts/gstreamer-1.26.sh cargo test --features v1_26 --lib --test radioembed

step "cuda feature: toolkit from PyPI"
eval "$(scripts/cuda-toolkit.sh)"

step "cuda feature: clippy, build and tests (no GPU: CUDA tests report a skip)"
# The CPU build's target folder: every crate the feature leaves alone (GStreamer,
# SQLite, Parquet, ...) is reused, which halves the stage. The cuda cdylib replaces
# target/debug/libgstradio.so while its tests run; the last step puts the CPU one
# back (cargo re-links it from the fresh artifact, no rebuild).
# The library (where every `cuda` path lives), the binary, and the tests that
# reach the CUDA code or the device choice; the rest of the suite is the CPU
# build's, already run above.
cuda_targets=(--lib --bins --test gpu_preprocess --test cuda_numerics --test radioembed
  --test model_fixtures --test model_errors --test cli)
cargo clippy --features cuda "${cuda_targets[@]}" -- -D warnings
cargo build --features cuda --lib
LD_LIBRARY_PATH="$CUDA_TOOLKIT_LIB:$CUDA_STUB_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  tests cargo test --features cuda "${cuda_targets[@]}"

step "restore the CPU plugin in target/debug"
cargo build --lib

grep -o 'test result: [a-zA-Z]*\. [0-9]* passed; [0-9]* failed' "$results" |
  awk '{ passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }'
