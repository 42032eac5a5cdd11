#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A synthetic source straight into radioembed: the smallest pipeline that embeds.
# Usage: pipelines/test-source.sh [MODEL]   (prints one line per frame via Python)
set -euo pipefail
here="$(dirname "$0")"
exec /usr/bin/python3 "$here/print-embeddings.py" "${1:-nvidia/C-RADIOv4-SO400M}" \
  "videotestsrc num-buffers=30 pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1"
