#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# NV12 straight from a hardware H.264 decoder (VA-API here; nvh264dec on NVIDIA) into
# radioembed, with no colour conversion on the CPU: the element reads NV12 planes itself.
# Usage: pipelines/nv12-hw-decoder.sh VIDEO.mp4 [MODEL]
set -euo pipefail
model="${2:-nvidia/C-RADIOv4-SO400M}"
exec gst-launch-1.0 -e filesrc location="$1" ! qtdemux ! h264parse ! vah264dec \
  ! video/x-raw,format=NV12 ! radioembed model="$model" batch-size=8 ! fakesink sync=false
