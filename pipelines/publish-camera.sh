#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A camera's embeddings to a broker, one message per embedded frame
# (schema/radioembed-message.schema.json), base64 f16 vectors, every 5th frame.
# Without an RTSP URI a test pattern stands in for the camera.
# Usage: pipelines/publish-camera.sh mqtt|kafka ADDRESS [rtsp://camera/stream] [MODEL]
set -euo pipefail
method="$1"
address="$2"
model="${4:-nvidia/C-RADIOv4-SO400M}"
if [ -n "${3:-}" ]; then
  source="rtspsrc location=$3 latency=200 add-reference-timestamp-meta=true ! decodebin"
  camera="camera"
else
  source="videotestsrc is-live=true ! video/x-raw,width=640,height=480,framerate=5/1"
  camera="testsrc"
fi
exec gst-launch-1.0 -e $source ! videoconvert ! \
  radioembed model="$model" inference-interval=5 outputs=summary ! \
  radiometapublish method="$method" address="$address" source-id="$camera" \
    vector-encoding=base64-f16 ! fakesink
