#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Embeds one frame per second of a video file (any container/codec GStreamer decodes),
# batching 8 frames per forward; prints the embeddings. Usage:
#   pipelines/file-embed.sh VIDEO [MODEL]
set -euo pipefail
here="$(dirname "$0")"
video="$(realpath "$1")"
exec /usr/bin/python3 "$here/print-embeddings.py" "${2:-nvidia/C-RADIOv4-SO400M}" \
  "uridecodebin uri=file://$video ! videorate drop-only=true ! video/x-raw,framerate=1/1"
