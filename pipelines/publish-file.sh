#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A video file's embeddings as JSON lines (schema/radioembed-message.schema.json),
# one per second of video. Usage: pipelines/publish-file.sh VIDEO OUT.jsonl [MODEL]
set -euo pipefail
exec gst-launch-1.0 -e uridecodebin uri="file://$(realpath "$1")" ! videoconvert ! \
  videorate ! video/x-raw,framerate=1/1 ! \
  radioembed model="${3:-nvidia/C-RADIOv4-SO400M}" outputs=summary ! \
  radiometapublish location="$2" source-id="$1" ! fakesink
