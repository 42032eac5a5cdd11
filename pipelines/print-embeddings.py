#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""Runs a radioembed pipeline and prints each frame's embeddings as read from Python.

Usage: print-embeddings.py MODEL [PIPELINE_HEAD [RADIOEMBED_PROPERTIES]]

PIPELINE_HEAD is everything before radioembed (default: 8 frames of videotestsrc);
RADIOEMBED_PROPERTIES are more `name=value` settings of the element, e.g.
"resolution=224 batch-size=4".
Each line shows the frame's timestamp, its running index, the summary vector's
length, L2 norm and first values, and the spatial grid. Reading the meta needs
nothing but PyGObject (Debian: python3-gi, python3-gst-1.0).
"""

import array
import math
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def floats(structure, field, dtype):
    """The little-endian vector stored in a GstBuffer field of the meta."""
    buf = structure.get_value(field)
    if buf is None:
        return []
    ok, info = buf.map(Gst.MapFlags.READ)
    try:
        values = array.array("f" if dtype == "f32" else "e", bytes(info.data))
    finally:
        buf.unmap(info)
    return values.tolist()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    model = sys.argv[1]
    head = sys.argv[2] if len(sys.argv) > 2 else "videotestsrc num-buffers=8 pattern=ball"
    properties = sys.argv[3] if len(sys.argv) > 3 else ""
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"{head} ! videoconvert ! radioembed name=embed model={model} {properties} "
        "! appsink name=sink emit-signals=false sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames = 0
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        meta = buf.get_custom_meta("RadioEmbedMeta")
        if meta is None:
            continue
        s = meta.get_structure()
        dtype = s.get_string("dtype")
        summary = floats(s, "summary", dtype)
        norm = math.sqrt(sum(v * v for v in summary))
        head_values = ", ".join(f"{v:+.4f}" for v in summary[:4])
        print(
            f"pts={buf.pts / Gst.SECOND:8.3f}s frame={s.get_value('frame-index'):4d} "
            f"summary[{len(summary)}] |v|={norm:8.3f} [{head_values}, ...] "
            f"spatial={s.get_value('grid-height')}x{s.get_value('grid-width')}"
            f"x{s.get_value('spatial-dim')} input={s.get_value('input-width')}"
            f"x{s.get_value('input-height')}"
        )
        frames += 1
    bus = pipeline.get_bus()
    error = bus.pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if error is not None:
        err, debug = error.parse_error()
        sys.exit(f"error: {err.message}\n{debug}")
    print(f"{frames} frames embedded")


if __name__ == "__main__":
    main()
