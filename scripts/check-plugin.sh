#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Checks that a built plugin loads and exposes radioembed with its pads and
# properties: scripts/check-plugin.sh target/debug/libgstradio.so
set -euo pipefail
plugin="$1"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
# A folder of its own: GST_PLUGIN_PATH=target/debug would also scan deps/*.so.
cp "$plugin" "$dir/"
out="$(GST_REGISTRY="$dir/registry.bin" GST_PLUGIN_PATH="$dir" GST_PLUGIN_SYSTEM_PATH= \
  gst-inspect-1.0 radioembed)"
for expected in "Filter/Analyzer/Video" "SINK template: 'sink'" "SRC template: 'src'" \
  model device precision resolution width height antialias batch-size batch-timeout \
  inference-interval outputs spatial-pool meta-dtype processing-latency async source-id \
  roi-mode roi-types leaky model-instance-id adaptor adaptor-checkpoint stats; do
  if ! grep -q -- "$expected" <<<"$out"; then
    echo "gst-inspect-1.0 radioembed lacks '$expected'" >&2
    exit 1
  fi
done
# Captured first, as above: `gst-inspect | grep -q` fails under pipefail when grep
# exits at its match and gst-inspect then dies of SIGPIPE.
sink="$(GST_REGISTRY="$dir/registry.bin" GST_PLUGIN_PATH="$dir" GST_PLUGIN_SYSTEM_PATH= \
  gst-inspect-1.0 radioindexsink)"
if ! grep -q "transaction-rows" <<<"$sink"; then
  echo "gst-inspect-1.0 radioindexsink fails" >&2
  exit 1
fi
publish="$(GST_REGISTRY="$dir/registry.bin" GST_PLUGIN_PATH="$dir" GST_PLUGIN_SYSTEM_PATH= \
  gst-inspect-1.0 radiometapublish)"
if ! grep -q "vector-encoding" <<<"$publish"; then
  echo "gst-inspect-1.0 radiometapublish fails" >&2
  exit 1
fi
echo "radio plugin loads from $plugin: radioembed (pads, 23 properties), radioindexsink, radiometapublish"
