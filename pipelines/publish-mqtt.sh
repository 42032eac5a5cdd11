#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A camera's embeddings to an MQTT broker, one JSON message per embedded frame on
# radioembed/CAMERA (schema/radioembed-message.schema.json), base64 f16 vectors.
# Without an RTSP URI a test pattern stands in for the camera.
# Usage: pipelines/publish-mqtt.sh [mqtt://HOST[:PORT]] [rtsp://camera/stream] [MODEL]
# Watch it: mosquitto_sub -h HOST -t 'radioembed/#'
set -euo pipefail
broker="${1:-mqtt://127.0.0.1:1883}"
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
  radiometapublish method=mqtt address="$broker" topic="radioembed/{source-id}" \
    source-id="$camera" vector-encoding=base64-f16 ! fakesink
