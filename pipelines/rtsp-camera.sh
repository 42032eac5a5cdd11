#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A live camera over RTSP: low latency, embed every 5th frame, never stall the camera
# (leaky queue in front of the model). Usage: pipelines/rtsp-camera.sh rtsp://host/stream [MODEL]
set -euo pipefail
here="$(dirname "$0")"
exec /usr/bin/python3 "$here/print-embeddings.py" "${2:-nvidia/C-RADIOv4-SO400M}" \
  "rtspsrc location=$1 latency=200 ! decodebin ! queue leaky=downstream max-size-buffers=4"
