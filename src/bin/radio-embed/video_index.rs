//! `radio-embed index` and `radio-embed search`: GStreamer pipelines around
//! radioembed and radioindexsink, with progress and result printing.

use std::path::Path;
use std::time::Instant;

use gst::prelude::*;
use gstradio::index::{self, Hit};
use gstradio::meta::Embedding;

use super::CliResult;

fn init() -> CliResult<()> {
    gst::init().map_err(|e| e.to_string())?;
    gstradio::plugin_register_static().map_err(|e| e.to_string())
}

/// A file path or URI as a URI.
fn to_uri(input: &str) -> CliResult<String> {
    if input.contains("://") {
        return Ok(input.to_string());
    }
    let path = Path::new(input)
        .canonicalize()
        .map_err(|e| format!("cannot read {input}: {e}"))?;
    glib::filename_to_uri(&path, None)
        .map(|u| u.to_string())
        .map_err(|e| format!("{input}: {e}"))
}

/// Local model folders are stored absolute, so a search from elsewhere finds them.
fn model_id(model: &str) -> String {
    let path = Path::new(model);
    match path.is_dir().then(|| path.canonicalize()) {
        Some(Ok(abs)) => abs.display().to_string(),
        _ => model.to_string(),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn bus_error(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{}{}",
            e.error(),
            e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
        )),
        _ => None,
    }
}

fn hms(ns: u64) -> String {
    let ms = ns / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// What `index` embeds and stores of each frame.
pub struct Storage {
    /// Shorter side of the model input.
    pub resolution: u32,
    /// Rows per write transaction or row group.
    pub transaction_rows: u32,
    /// Store the patch grid pooled over k x k patches; `None`: summaries only.
    pub spatial_pool: Option<u32>,
}

impl Storage {
    /// The radioembed and radioindexsink settings for this storage.
    fn properties(&self) -> (String, String) {
        match self.spatial_pool {
            Some(k) => (
                format!(
                    "resolution={} outputs=both spatial-pool={k}",
                    self.resolution
                ),
                format!("transaction-rows={} spatial=true", self.transaction_rows),
            ),
            None => (
                format!("resolution={} outputs=summary", self.resolution),
                format!("transaction-rows={}", self.transaction_rows),
            ),
        }
    }
}

/// Embeds every input into the index at `db`.
pub fn index(
    inputs: &[String],
    db: &Path,
    fps: f64,
    model: &str,
    device: &str,
    storage: &Storage,
) -> CliResult<()> {
    init()?;
    // One load of the weights for all inputs, though each has its own pipeline.
    let _keep = gstradio::model_store::keep_loaded();
    let (embed_props, sink_props) = storage.properties();
    if fps.is_nan() || fps <= 0.0 {
        return Err("--fps must be positive".into());
    }
    let rate = gst::Fraction::approximate_f64(fps).ok_or("--fps is out of range")?;
    let model = model_id(model);
    let started = Instant::now();
    let mut total = 0u64;
    for input in inputs {
        let uri = to_uri(input)?;
        let launch = format!(
            "uridecodebin uri={uri} caps=video/x-raw ! videoconvert ! videorate drop-only=true ! \
             video/x-raw,framerate={}/{} ! radioembed name=embed model={} device={device} \
             {embed_props} ! radioindexsink location={} source-id={} {sink_props}",
            rate.numer(),
            rate.denom(),
            quote(&model),
            quote(&db.display().to_string()),
            quote(&uri),
        );
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| e.to_string())?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline")?;
        let frames = run_with_progress(&pipeline, input)?;
        total += frames;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {total} frames from {} source(s) into {} in {secs:.1} s ({:.1} frames/s); \
         the index holds {} rows",
        inputs.len(),
        db.display(),
        total as f64 / secs,
        index::count_rows(db, None).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Plays a pipeline to EOS, printing position / duration and frames/s on stderr.
fn run_with_progress(pipeline: &gst::Pipeline, name: &str) -> CliResult<u64> {
    let embed = pipeline
        .by_name("embed")
        .ok_or("no radioembed in pipeline")?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| pop_error(&bus).unwrap_or_else(|| format!("{name}: cannot start")))?;
    let started = Instant::now();
    let frames = || {
        embed
            .property::<gst::Structure>("stats")
            .get::<u64>("frames-embedded")
            .unwrap_or(0)
    };
    let result = loop {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(250),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            break match bus_error(&msg) {
                Some(err) => Err(format!("{name}: {err}")),
                None => Ok(frames()),
            };
        }
        let pos = pipeline.query_position::<gst::ClockTime>();
        let dur = pipeline.query_duration::<gst::ClockTime>();
        if let (Some(pos), Some(dur)) = (pos, dur) {
            let done = frames();
            eprint!(
                "\r{name}: {} / {} ({:3.0} %), {done} frames, {:.1} frames/s   ",
                hms(pos.nseconds()),
                hms(dur.nseconds()),
                100.0 * pos.nseconds() as f64 / dur.nseconds().max(1) as f64,
                done as f64 / started.elapsed().as_secs_f64().max(1e-3)
            );
        }
    };
    eprintln!();
    pipeline
        .set_state(gst::State::Null)
        .map_err(|_| format!("{name}: cannot stop"))?;
    result
}

fn pop_error(bus: &gst::Bus) -> Option<String> {
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        .and_then(|m| bus_error(&m))
}

/// Embeds the query with the index's model and input size and prints the top k.
pub fn search(
    db: &Path,
    image: Option<&Path>,
    frame: Option<&str>,
    k: usize,
    json: bool,
) -> CliResult<()> {
    init()?;
    let settings = index::read_settings(db).map_err(|e| e.to_string())?;
    let (width, height) = settings
        .input
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("index input size `{}` is malformed", settings.input))?;
    let embed = format!(
        "videoconvert ! radioembed model={} width={width} height={height} outputs=summary ! \
         appsink name=sink",
        quote(&settings.model)
    );
    let (launch, seek) = match (image, frame) {
        (Some(image), _) => (
            format!(
                "filesrc location={} ! decodebin ! videoconvert ! imagefreeze num-buffers=1 ! {embed}",
                quote(&image.display().to_string())
            ),
            None,
        ),
        (None, Some(spec)) => {
            let (video, secs) = spec
                .rsplit_once('@')
                .and_then(|(v, s)| Some((v, s.parse::<f64>().ok()?)))
                .ok_or_else(|| format!("--frame `{spec}` is not VIDEO@SECONDS"))?;
            (
                format!(
                    "uridecodebin uri={} caps=video/x-raw ! {embed}",
                    to_uri(video)?
                ),
                Some(gst::ClockTime::from_nseconds((secs * 1e9) as u64)),
            )
        }
        (None, None) => return Err("give --image FILE or --frame VIDEO@SECONDS".into()),
    };
    let query = embed_query(&launch, seek)?;
    if query.len() != settings.summary_dim {
        return Err(format!(
            "the query has {} values but the index holds {}; was the index built with another model?",
            query.len(),
            settings.summary_dim
        ));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hits = index::search(db, &query, k, threads).map_err(|e| e.to_string())?;
    print_hits(&hits, json);
    Ok(())
}

/// Prerolls a query pipeline (seeking first if asked) and returns the summary.
fn embed_query(launch: &str, seek: Option<gst::ClockTime>) -> CliResult<Vec<f32>> {
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    let fail = |bus: &gst::Bus| pop_error(bus).unwrap_or_else(|| "query pipeline failed".into());
    let preroll = |pipeline: &gst::Pipeline| {
        let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(120));
        res.is_ok()
    };
    if pipeline.set_state(gst::State::Paused).is_err() || !preroll(&pipeline) {
        let err = fail(&bus);
        let _ = pipeline.set_state(gst::State::Null);
        return Err(err);
    }
    if let Some(at) = seek {
        let sought = pipeline.seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, at);
        if sought.is_err() || !preroll(&pipeline) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("cannot seek to {}", hms(at.nseconds())));
        }
    }
    let sink = pipeline.by_name("sink").ok_or("no appsink")?;
    let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-preroll", &[]);
    let _ = pipeline.set_state(gst::State::Null);
    let buffer = sample
        .and_then(|s| s.buffer_owned())
        .ok_or("the query produced no frame")?;
    Embedding::from_buffer(&buffer)
        .map_err(|e| e.to_string())?
        .and_then(|e| e.summary)
        .ok_or_else(|| "the query frame was not embedded".into())
}

fn print_hits(hits: &[Hit], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "source": h.source,
                    "pts_ns": h.pts_ns,
                    "timestamp": h.pts_ns.map(hms),
                    "score": h.score,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for h in hits {
            println!(
                "{:.4}  {}  {}",
                h.score,
                h.pts_ns.map(hms).unwrap_or_else(|| "--:--:--.---".into()),
                h.source
            );
        }
    }
}
