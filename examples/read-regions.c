/* SPDX-License-Identifier: MPL-2.0
 *
 * Reads radioembed's results from C: the frame's RadioEmbedMeta and the
 * radio-embedding parameter of each region (GstVideoRegionOfInterestMeta).
 * A pad probe stands in for a detector and gives every frame one "person" box.
 *
 *   cc read-regions.c -o read-regions $(pkg-config --cflags --libs gstreamer-video-1.0)
 *   ./read-regions MODEL [ROI_MODE]
 *
 * prints one line per frame:
 *   frame=0 source=cam-c summary=128 person(20,10 40x60) kind=pool dim=64 first=0.1234
 */
#include <gst/gst.h>
#include <gst/video/video.h>

/* The stand-in detector: one box on every frame. */
static GstPadProbeReturn
add_box (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  GstBuffer *buffer = gst_buffer_make_writable (GST_PAD_PROBE_INFO_BUFFER (info));
  gst_buffer_add_video_region_of_interest_meta (buffer, "person", 20, 10, 40, 60);
  GST_PAD_PROBE_INFO_DATA (info) = buffer;
  return GST_PAD_PROBE_OK;
}

static float
first_float (const GstStructure * s, const char *field)
{
  const GValue *value = gst_structure_get_value (s, field);
  GstBuffer *vector = value ? gst_value_get_buffer (value) : NULL;
  float first = 0;
  if (vector && gst_buffer_get_size (vector) >= sizeof first)
    gst_buffer_extract (vector, 0, &first, sizeof first);
  return first;
}

static GstPadProbeReturn
print_results (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
  GstCustomMeta *meta = gst_buffer_get_custom_meta (buffer, "RadioEmbedMeta");
  if (meta == NULL) {
    g_print ("no RadioEmbedMeta\n");
    return GST_PAD_PROBE_OK;
  }
  GstStructure *frame = gst_custom_meta_get_structure (meta);
  guint64 index = 0;
  guint summary_dim = 0;
  gst_structure_get_uint64 (frame, "frame-index", &index);
  gst_structure_get_uint (frame, "summary-dim", &summary_dim);
  g_print ("frame=%" G_GUINT64_FORMAT " source=%s summary=%u", index,
      gst_structure_get_string (frame, "source-id"), summary_dim);

  gpointer state = NULL;
  GstMeta *m;
  while ((m = gst_buffer_iterate_meta_filtered (buffer, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) m;
    GstStructure *p = gst_video_region_of_interest_meta_get_param (roi, "radio-embedding");
    if (p == NULL)
      continue;
    guint dim = 0;
    gst_structure_get_uint (p, "summary-dim", &dim);
    g_print (" %s(%u,%u %ux%u) kind=%s dim=%u first=%.4f",
        g_quark_to_string (roi->roi_type), roi->x, roi->y, roi->w, roi->h,
        gst_structure_get_string (p, "kind"), dim, first_float (p, "summary"));
  }
  g_print ("\n");
  return GST_PAD_PROBE_OK;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  if (argc < 2) {
    g_printerr ("usage: %s MODEL [ROI_MODE]\n", argv[0]);
    return 2;
  }
  gchar *launch = g_strdup_printf ("videotestsrc num-buffers=3 ! "
      "video/x-raw,width=160,height=120 ! identity name=detector ! "
      "radioembed model=%s resolution=64 roi-mode=%s source-id=cam-c ! "
      "fakesink name=sink", argv[1], argc > 2 ? argv[2] : "pool");
  GError *error = NULL;
  GstElement *pipeline = gst_parse_launch (launch, &error);
  g_free (launch);
  if (pipeline == NULL) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  GstElement *detector = gst_bin_get_by_name (GST_BIN (pipeline), "detector");
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstPad *out = gst_element_get_static_pad (detector, "src");
  GstPad *in = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (out, GST_PAD_PROBE_TYPE_BUFFER, add_box, NULL, NULL);
  gst_pad_add_probe (in, GST_PAD_PROBE_TYPE_BUFFER, print_results, NULL, NULL);

  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  GstMessage *end = gst_bus_timed_pop_filtered (GST_ELEMENT_BUS (pipeline),
      60 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  int status = 0;
  if (end == NULL || GST_MESSAGE_TYPE (end) == GST_MESSAGE_ERROR) {
    if (end) {
      gst_message_parse_error (end, &error, NULL);
      g_printerr ("error: %s\n", error->message);
    }
    status = 1;
  }
  if (end)
    gst_message_unref (end);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (out);
  gst_object_unref (in);
  gst_object_unref (detector);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
  return status;
}
