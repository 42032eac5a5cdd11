#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The soak tests (tests/soak.rs, ignored by the default run): 1000 state cycles
# and 10,000 frames through radioembed with the resident size sampled; prints
# the samples and fails if memory grew past the bound the test states.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test soak -- --ignored --nocapture --test-threads=1
