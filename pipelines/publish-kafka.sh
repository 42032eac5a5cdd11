#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A camera's embeddings to Kafka, one record per embedded frame on topic radioembed,
# keyed by the camera name (needs a plugin built with `cargo build --features kafka`).
# Without an RTSP URI a test pattern stands in for the camera.
# Usage: pipelines/publish-kafka.sh [HOST:PORT] [rtsp://camera/stream] [MODEL]
set -euo pipefail
brokers="${1:-127.0.0.1:9092}"
model="${3:-nvidia/C-RADIOv4-SO400M}"
if [ -n "${2:-}" ]; then
  source="rtspsrc location=$2 latency=200 add-reference-timestamp-meta=true ! decodebin"
  camera="camera"
else
  source="videotestsrc is-live=true ! video/x-raw,width=640,height=480,framerate=5/1"
  camera="testsrc"
fi
exec gst-launch-1.0 -e $source ! videoconvert ! \
  radioembed model="$model" inference-interval=5 outputs=summary ! \
  radiometapublish method=kafka address="$brokers" topic=radioembed compression=lz4 \
    source-id="$camera" vector-encoding=base64-f16 ! fakesink
