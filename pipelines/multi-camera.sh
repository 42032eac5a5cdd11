#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Four cameras through one model: their radioembeds share one model instance
# (model-instance-id), so each forward holds frames of several cameras, and
# leaky keeps every camera in real time when the model falls behind (those
# frames pass without embeddings). All four index into one SQLite file, each
# under its own source id. Without URIs, test patterns stand in for cameras.
# Stop with Ctrl-C (the index keeps what EOS committed; -e sends EOS first).
# Usage: pipelines/multi-camera.sh [rtsp://cam1 rtsp://cam2 rtsp://cam3 rtsp://cam4]
#   MODEL (default nvidia/C-RADIOv4-SO400M), DB (default cameras.sqlite),
#   FPS (frames a second embedded per camera, default 2), FRAMES (test patterns
#   only: frames per camera before EOS, default unlimited)
set -euo pipefail
model="${MODEL:-nvidia/C-RADIOv4-SO400M}"
db="${DB:-cameras.sqlite}"
fps="${FPS:-2}"
frames="${FRAMES:--1}"
patterns=(smpte ball snow pinwheel)
branches=()
for i in 0 1 2 3; do
  uri="${1:-}"
  [ $# -gt 0 ] && shift
  if [ -n "$uri" ]; then
    source="uridecodebin uri=$uri"
  else
    source="videotestsrc is-live=true num-buffers=$frames pattern=${patterns[$i]}"
    source="$source ! video/x-raw,width=640,height=480,framerate=10/1"
  fi
  branches+=("$source ! videoconvert ! videorate drop-only=true ! video/x-raw,framerate=$fps/1 !"
    "radioembed model=$model model-instance-id=cameras batch-size=4 leaky=true"
    "source-id=cam$i outputs=summary ! radioindexsink location=$db source-id=cam$i")
done
# shellcheck disable=SC2068 # each word of the branches is a pipeline token
exec gst-launch-1.0 -e ${branches[@]}
