#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Reads radioembed's results from Python: the frame's RadioEmbedMeta and the
radio-embedding parameter of each region (GstVideoRegionOfInterestMeta).

An application with its own detector pushes its frames with their boxes into
`appsrc ! radioembed ! appsink` (Python's bindings cannot add metas to buffers
inside a pad probe, so the boxes go on the application's own buffers):

    examples/read-regions.py MODEL [ROI_MODE]

prints one line per frame:
    frame=0 source=cam-py summary=128 person(8,4 20x30) kind=pool dim=64 first=0.1234
"""
import struct
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402

W, H, FRAMES = 64, 48, 3
BOXES = [("person", (8, 4, 20, 30)), ("car", (40, 30, 24, 18))]


def floats(structure, field):
    """The little-endian f32 or f16 vector in a GstBuffer field."""
    buffer = structure.get_value(field)
    data = buffer.extract_dup(0, buffer.get_size())
    code = "e" if structure.get_value("dtype") == "f16" else "f"
    return struct.unpack("<%d%s" % (len(data) // struct.calcsize(code), code), data)


def describe(buffer):
    """One line: the frame's meta, then each region's vector."""
    frame = buffer.get_custom_meta("RadioEmbedMeta").get_structure()
    line = "frame=%d source=%s summary=%d" % (
        frame.get_value("frame-index"),
        frame.get_value("source-id"),
        frame.get_value("summary-dim"),
    )
    for roi_id in range(len(BOXES)):
        roi = GstVideo.buffer_get_video_region_of_interest_meta_id(buffer, roi_id)
        param = roi.get_param("radio-embedding") if roi else None
        if param is None:
            continue
        line += " %s(%d,%d %dx%d) kind=%s dim=%d first=%.4f" % (
            GLib.quark_to_string(roi.roi_type), roi.x, roi.y, roi.w, roi.h,
            param.get_value("kind"), param.get_value("summary-dim"),
            floats(param, "summary")[0],
        )
    return line


def main():
    Gst.init(None)
    roi_mode = sys.argv[2] if len(sys.argv) > 2 else "pool"
    pipeline = Gst.parse_launch(
        "appsrc name=src format=time "
        f"caps=video/x-raw,format=RGB,width={W},height={H},framerate=10/1 ! "
        f"radioembed model={sys.argv[1]} resolution=32 roi-mode={roi_mode} "
        "roi-resolution=32 source-id=cam-py ! appsink name=sink"
    )
    src, sink = pipeline.get_by_name("src"), pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    for i in range(FRAMES):
        # RGB rows padded to 4 bytes, as GStreamer lays them out.
        stride = (W * 3 + 3) // 4 * 4
        frame = Gst.Buffer.new_wrapped(bytes((p * 7 + i * 31) % 251 for p in range(stride * H)))
        frame.pts = i * Gst.SECOND // 10
        for roi_id, (kind, (x, y, w, h)) in enumerate(BOXES):
            GstVideo.buffer_add_video_region_of_interest_meta(frame, kind, x, y, w, h).id = roi_id
        src.emit("push-buffer", frame)
    src.emit("end-of-stream")
    for _ in range(FRAMES):
        sample = sink.emit("pull-sample")
        if sample is None:
            sys.exit("the pipeline stopped early")
        print(describe(sample.get_buffer()))
    pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
