#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A camera's embeddings to an MQTT broker on topic radioembed/CAMERA.
# Usage: pipelines/publish-mqtt.sh [mqtt://HOST[:PORT]] [rtsp://camera/stream] [MODEL]
# Watch it: mosquitto_sub -h HOST -t 'radioembed/#'
exec "$(dirname "$0")/publish-camera.sh" mqtt "${1:-mqtt://127.0.0.1:1883}" "${@:2}"
