#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A camera's embeddings to Kafka on topic radioembed, keyed by the camera name
# (needs a plugin built with `cargo build --features kafka`).
# Usage: pipelines/publish-kafka.sh [HOST:PORT] [rtsp://camera/stream] [MODEL]
exec "$(dirname "$0")/publish-camera.sh" kafka "${1:-127.0.0.1:9092}" "${@:2}"
