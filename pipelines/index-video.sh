#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Indexes one video file with a plain gst-launch pipeline: one frame per second is
# embedded and written into an index (.sqlite or .parquet) that `radio-embed search` queries.
# Usage: pipelines/index-video.sh VIDEO INDEX.sqlite|INDEX.parquet [MODEL]
set -euo pipefail
video="$(realpath "$1")"
uri="file://$video"
exec gst-launch-1.0 -e uridecodebin uri="$uri" caps=video/x-raw ! videoconvert \
  ! videorate drop-only=true ! video/x-raw,framerate=1/1 \
  ! radioembed model="${3:-nvidia/C-RADIOv4-SO400M}" batch-size=8 \
  ! radioindexsink location="$2" source-id="$uri"
