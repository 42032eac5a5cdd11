// SPDX-License-Identifier: MPL-2.0
//! The `radioembed` GObject subclass: properties, pads, events, the batching task.
//!
//! Threads: upstream's streaming thread runs `chain` and the sink pad's event and
//! query handlers; the source pad task batches, runs the model and pushes;
//! application threads set properties and change states.
//!
//! Lock order (a lock further down is never waited for while holding one above):
//! 1. GStreamer's state lock of the element, taken by `set_state` and by a model
//!    load that ends on its own thread ([`load`]);
//! 2. `src_active`: pad (de)activation and FLUSH_STOP;
//! 3. the queue's own lock (inside [`BatchQueue`]);
//! 4. `state`, `stats`, `settings`, and the `engine` slot's own lock: each taken
//!    alone and briefly, except that the statistics take `stats` then `settings`;
//! 5. a shared model instance's own lock (inside `SharedStream`), taken alone:
//!    its waits (for a forward) hold no lock of the element.
//!
//! With `model-instance-id`, the task hands its frames to the instance at once
//! and waits there for its outputs; a flush or deactivation cancels that wait
//! before it pauses the task.
//!
//! No lock is held while pushing downstream or during inference: a batch takes the
//! engine, the stream format and the preprocessor out of `state` and `engine` and
//! puts the preprocessor back after, so a caps event or a property read never
//! waits for a batch. A caps event that arrives while the model loads waits for
//! the load (or for the element to stop) on the `engine` slot.

mod load;
mod regions;
mod settings;

use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::RoiMode;
use super::caps::{StreamFormat, caps_formats};
use super::error::error_message;
use super::load_slot::{LoadSlot, Unavailable};
use super::queue::{Admitted, BatchQueue, Item, Queued, Work};
use crate::engine::{Batch, Embeddings, Engine, EngineError, FrameJob, SharedStream};
use crate::meta::RegionVectors;
use crate::preprocess::{Frame, FrameLayout, PreprocessError, Preprocessor};
use regions::Regions;
use settings::Settings;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "radioembed",
        gst::DebugColorFlags::empty(),
        Some("C-RADIOv4 embedding element"),
    )
});

/// Running counters behind the `stats` property.
#[derive(Debug, Default)]
struct Stats {
    frames_in: u64,
    frames_embedded: u64,
    /// Frames a leaky queue passed on without embeddings.
    frames_skipped: u64,
    regions_embedded: u64,
    batches: u64,
    /// Batches whose forward also held other streams' frames.
    shared_batches: u64,
    inference_total: Duration,
    inference_max: Duration,
}

/// Streaming state: made when the model is loaded, dropped at PAUSED→READY.
struct State {
    /// The task's scratch buffers, taken out for a batch and put back after it,
    /// so that no lock is held during inference.
    preprocessor: Option<Preprocessor>,
    /// The format of the frames the task takes next, from the last caps it forwarded.
    format: Option<Arc<StreamFormat>>,
}

/// What one batch takes from the settings.
struct BatchPlan {
    /// The regions of each frame to embed.
    regions: Vec<Regions>,
    /// The latest time to wait for other streams of a shared model.
    deadline: Option<Instant>,
    /// Set when regions are embedded by crop.
    crop: Option<CropPass>,
}

/// How regions are cropped and run.
struct CropPass {
    /// Side of the square model input of a crop.
    side: usize,
    /// Crops per forward.
    max_batch: usize,
}

/// Why a serialized event was not queued.
enum Refusal {
    /// There is no model to check caps against, and will be none.
    NoModel(Unavailable),
    /// The model cannot take these caps: the message for the bus.
    Caps(gst::ErrorMessage),
}

/// The element.
pub struct RadioEmbed {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    /// The model and this stream's options, loading or loaded; the sink pad's
    /// thread checks caps against it while the task may be running a batch.
    engine: LoadSlot<Arc<Engine>>,
    state: Mutex<Option<State>>,
    queue: BatchQueue,
    stats: Mutex<Stats>,
    /// Whether the source pad is active: pad (de)activation and flush handling
    /// change the queue and the task under this lock, so a FLUSH_STOP racing
    /// PAUSED→READY can neither restart the task on a deactivated pad nor leave
    /// an unflushed queue without a task.
    src_active: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RadioEmbed {
    fn chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let interval = u64::from(lock(&self.settings).inference_interval);
        let frame_index = {
            let mut stats = lock(&self.stats);
            stats.frames_in += 1;
            stats.frames_in - 1
        };
        let embed = frame_index.is_multiple_of(interval);
        let (pts, duration) = (buffer.pts(), buffer.duration());
        if self.queue.push_buffer(buffer, embed, frame_index)? == Admitted::Skipped {
            self.report_skipped(pts, duration);
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Counts a frame a leaky queue let pass without embeddings and posts a QoS
    /// message for it, as elements that drop late frames do.
    fn report_skipped(&self, pts: Option<gst::ClockTime>, duration: Option<gst::ClockTime>) {
        let (processed, skipped) = {
            let mut stats = lock(&self.stats);
            stats.frames_skipped += 1;
            (stats.frames_embedded, stats.frames_skipped)
        };
        gst::debug!(
            CAT,
            imp = self,
            "skipped frame at {pts:?}: a whole batch is waiting"
        );
        let segment = self
            .sinkpad
            .sticky_event::<gst::event::Segment>(0)
            .and_then(|e| e.segment().downcast_ref::<gst::ClockTime>().cloned());
        let (running_time, stream_time) = match (&segment, pts) {
            (Some(segment), Some(pts)) => {
                (segment.to_running_time(pts), segment.to_stream_time(pts))
            }
            _ => (None, None),
        };
        let qos = gst::message::Qos::builder(true)
            .running_time(running_time)
            .stream_time(stream_time)
            .timestamp(pts)
            .duration(duration)
            .stats(
                gst::format::Buffers::from_u64(processed),
                gst::format::Buffers::from_u64(skipped),
            )
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(qos);
    }

    /// Runs `f` on this stream's share of a shared model, if it has one.
    fn with_shared(&self, f: impl FnOnce(&SharedStream)) {
        if let Some(shared) = self.engine.get().as_deref().and_then(Engine::shared) {
            f(shared);
        }
    }

    /// Cancels (flushing, stopping) or resumes this stream's share of a
    /// shared model: a forward it waits for returns at once when cancelled.
    fn cancel_shared(&self, cancelled: bool) {
        self.with_shared(|shared| shared.set_cancelled(cancelled));
    }

    /// Handles a sink event; serialized ones answer with the flow, as `queue`
    /// does, so that upstream sees FLUSHING (not an error) while the element stops.
    fn sink_event(
        &self,
        pad: &gst::Pad,
        event: gst::Event,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "sink event {event:?}");
        let handled = match event.view() {
            EventView::FlushStart(_) => {
                self.queue.set_flushing(true);
                self.cancel_shared(true);
                let forwarded = self.srcpad.push_event(event);
                let _active = lock(&self.src_active);
                let _ = self.srcpad.pause_task();
                forwarded
            }
            EventView::FlushStop(_) => self.flush_stop(pad, event),
            _ if event.is_serialized() => {
                return match self.queue_item_for(event) {
                    Ok(item) => self.queue_item(item),
                    // Stopped while the model loaded.
                    Err(Refusal::NoModel(Unavailable::Stopped)) => Err(gst::FlowError::Flushing),
                    // The load's own error is on the bus already.
                    Err(Refusal::NoModel(Unavailable::Failed)) => Err(gst::FlowError::Error),
                    Err(Refusal::Caps(message)) => {
                        self.post_error_message(message);
                        Err(gst::FlowError::NotNegotiated)
                    }
                };
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        };
        if handled {
            Ok(gst::FlowSuccess::Ok)
        } else {
            Err(gst::FlowError::Error)
        }
    }

    /// Forwards FLUSH_STOP and, unless the source pad was deactivated meanwhile
    /// (then the queue stays flushing, with no task), restarts the queue and task.
    fn flush_stop(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        let forwarded = self.srcpad.push_event(event);
        let active = lock(&self.src_active);
        if !*active {
            return forwarded;
        }
        self.queue.set_flushing(false);
        self.cancel_shared(false);
        // The flush may have dropped queued sticky events (stream-start, caps,
        // tags) before the task forwarded them; the sink pad still holds them,
        // so hand them over again. Those already forwarded pass as no-ops.
        let mut sticky = Vec::new();
        pad.sticky_events_foreach(|event| {
            if !matches!(event.type_(), gst::EventType::Segment | gst::EventType::Eos) {
                sticky.push(event.clone());
            }
            ControlFlow::Continue(gst::EventForeachAction::Keep)
        });
        for item in sticky
            .into_iter()
            .filter_map(|e| self.queue_item_for(e).ok())
        {
            let _ = self.queue.push_event(item);
        }
        self.start_task();
        forwarded
    }

    /// Queues a serialized event behind the buffers before it. Refused once
    /// downstream returned a flow error; an EOS refused for NOT_LINKED or a
    /// fatal error is where the stream ends, so, as `queue` does, that is
    /// posted as the element's error and the EOS still goes downstream.
    fn queue_item(&self, item: Item) -> Result<gst::FlowSuccess, gst::FlowError> {
        let eos = match &item {
            Item::Event(event) if event.type_() == gst::EventType::Eos => Some(event.clone()),
            _ => None,
        };
        match self.queue.push_event(item) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(err @ (gst::FlowError::Flushing | gst::FlowError::Eos)) => Err(err),
            Err(err) => {
                if let Some(eos) = eos {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        ("Internal data stream error."),
                        ["streaming stopped, reason {err:?}"]
                    );
                    self.srcpad.push_event(eos);
                }
                Err(err)
            }
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if event.type_() == gst::EventType::Reconfigure {
            // Relinked or renegotiated downstream: try pushing again, as queue does.
            let active = lock(&self.src_active);
            if *active && self.queue.retry_after_reconfigure() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "reconfigured downstream, restarting the task"
                );
                self.start_task();
            }
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// The queue entry for a serialized event: a caps event travels with the
    /// stream format made from it here, once, or is refused with a message for
    /// the user when the model cannot take it. A caps event waits while the model
    /// loads.
    fn queue_item_for(&self, event: gst::Event) -> Result<Item, Refusal> {
        let gst::EventView::Caps(caps) = event.view() else {
            return Ok(Item::Event(event));
        };
        let engine = self.engine.wait().map_err(Refusal::NoModel)?;
        let format = StreamFormat::new(caps.caps(), &engine)
            .map_err(|e| Refusal::Caps(error_message(&e, None)))?;
        gst::info!(CAT, imp = self, "model input {:?}", format.input);
        Ok(Item::Caps(event, Box::new(format)))
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if query.is_serialized() {
            // In order with the data: answered once everything before it was pushed
            // (upstream sends nothing meanwhile, it waits for the answer).
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            if self.queue.push_event(Item::Drain(done)).is_err() || wait.recv().is_err() {
                return false;
            }
        }
        if let gst::QueryViewMut::Allocation(allocation) = query.view_mut() {
            if !self.srcpad.peer_query(allocation.query_mut()) {
                return false;
            }
            self.hold_in_allocation(allocation);
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Adds the buffers this element keeps in flight (one batch queued, one in
    /// the model) to the minimum of downstream's pools, or proposes a pool of
    /// that many when downstream named none. Downstream's metas (VideoMeta among
    /// them) stay as answered: buffers pass to it unchanged.
    fn hold_in_allocation(&self, allocation: &mut gst::query::Allocation) {
        let held = 2 * lock(&self.settings).batch_size;
        let pools: Vec<_> = allocation.allocation_pools().collect();
        if pools.is_empty() {
            let size = allocation
                .caps()
                .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok())
                .map_or(0, |info| info.size() as u32);
            allocation.add_allocation_pool(None::<&gst::BufferPool>, size, held, 0);
        }
        for (i, (pool, size, min, max)) in pools.into_iter().enumerate() {
            let min = min.saturating_add(held);
            let max = if max == 0 { 0 } else { max.max(min) };
            allocation.set_nth_allocation_pool(i as u32, pool.as_ref(), size, min, max);
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let own = lock(&self.settings).own_latency();
                gst::debug!(
                    CAT,
                    imp = self,
                    "upstream latency {min}-{max:?}, adding {own}"
                );
                q.set(
                    live,
                    min.saturating_add(own),
                    max.map(|m| m.saturating_add(own)),
                );
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn start_task(&self) {
        let element = self.obj().downgrade();
        let started = self.srcpad.start_task(move || {
            if let Some(element) = element.upgrade() {
                element.imp().task_iteration();
            }
        });
        if let Err(err) = started {
            gst::element_imp_error!(self, gst::CoreError::Thread, ("cannot start task: {err}"));
        }
    }

    /// One turn of the source pad task: wait for work, do it, push the results.
    fn task_iteration(&self) {
        let Some(work) = self.queue.next_work() else {
            let _ = self.srcpad.pause_task();
            return;
        };
        let flow = match work {
            Work::Batch(batch) => self.process_batch(batch),
            Work::Event(event) => {
                if event.type_() == gst::EventType::Eos {
                    // The other streams of the shared model stop waiting for ours.
                    self.with_shared(SharedStream::set_idle);
                }
                self.forward_event(event)
            }
            Work::Caps(event, format) => {
                if let Some(state) = lock(&self.state).as_mut() {
                    state.format = Some(Arc::from(format));
                }
                self.forward_event(event)
            }
            Work::Drain(done) => {
                let _ = done.send(());
                Ok(gst::FlowSuccess::Ok)
            }
        };
        match flow {
            Ok(_) => (),
            // Downstream takes no more buffers, but still events (a new segment may
            // restart it): keep the task, drop buffers, tell upstream EOS.
            Err(gst::FlowError::Eos) => {
                gst::debug!(CAT, imp = self, "downstream is EOS, dropping buffers");
                self.queue.downstream_eos();
            }
            // The queue knows it is flushing; FLUSH_STOP restarts the task.
            Err(gst::FlowError::Flushing) => {
                let _ = self.srcpad.pause_task();
            }
            // Upstream gets the error with its next buffer or event and stops the
            // stream (our own failures were posted where they happened). A
            // RECONFIGURE from downstream clears NOT_LINKED and NOT_NEGOTIATED.
            Err(err) => {
                gst::debug!(CAT, imp = self, "pausing task: {err:?}");
                self.queue.set_flow(Err(err));
                let _ = self.srcpad.pause_task();
            }
        }
    }

    fn forward_event(&self, event: gst::Event) -> Result<gst::FlowSuccess, gst::FlowError> {
        // A refused event is downstream's business; the stream goes on, as in queue.
        if !self.srcpad.push_event(event) {
            gst::debug!(CAT, imp = self, "downstream refused an event");
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn process_batch(&self, mut batch: Vec<Queued>) -> Result<gst::FlowSuccess, gst::FlowError> {
        let embed: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].embed).collect();
        if !embed.is_empty() {
            let started = Instant::now();
            let embeddings = self.embed_batch(&mut batch, &embed)?;
            self.record_batch(&embeddings, started.elapsed());
        }
        for queued in batch {
            self.srcpad.push(queued.buffer)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Runs the model on the `embed` buffers of `batch` and attaches their metas
    /// (the frame's, and its regions'); the embeddings come back without their
    /// summary and patch vectors, which moved into the metas. The state lock is
    /// held only to take the engine, the format and the preprocessor, and to put
    /// the preprocessor back.
    fn embed_batch(
        &self,
        batch: &mut [Queued],
        embed: &[usize],
    ) -> Result<Embeddings, gst::FlowError> {
        let engine = self.engine.get().ok_or(gst::FlowError::Flushing)?;
        let (format, preprocessor) = {
            let mut state = lock(&self.state);
            let state = state.as_mut().ok_or(gst::FlowError::Flushing)?;
            let Some(format) = state.format.clone() else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("received a buffer before caps")
                );
                return Err(gst::FlowError::Error);
            };
            (format, state.preprocessor.take())
        };
        let result = preprocessor
            .map_or_else(|| engine.preprocessor(), Ok)
            .map_err(EngineError::from)
            .and_then(|mut preprocessor| {
                let embedded = self.run_engine(&engine, &format, &mut preprocessor, batch, embed);
                if let Some(state) = lock(&self.state).as_mut() {
                    state.preprocessor = Some(preprocessor);
                }
                embedded
            });
        let (mut embeddings, regions) = result.map_err(|err| match err {
            // Flushing or stopping: the queue knows, the task pauses.
            EngineError::Shared(crate::engine::SharedError::Cancelled) => gst::FlowError::Flushing,
            err => {
                self.post_error_message(error_message(&err, Some("inference failed")));
                gst::FlowError::Error
            }
        })?;
        // The vectors move into the metas (only the counts are used after).
        for ((&i, embedded), regions) in embed.iter().zip(&mut embeddings.frames).zip(&regions) {
            let buffer = batch[i].buffer.make_mut();
            if embedded.embedding.move_into_meta(buffer).is_err() {
                gst::warning!(CAT, imp = self, "could not attach the meta to frame {i}");
            }
            regions.attach(buffer, &embedded.regions, embedded.embedding.dtype);
        }
        Ok(embeddings)
    }

    /// Maps the `embed` buffers of `batch` and embeds them, with their regions,
    /// with no lock held.
    fn run_engine(
        &self,
        engine: &Engine,
        format: &StreamFormat,
        preprocessor: &mut Preprocessor,
        batch: &[Queued],
        embed: &[usize],
    ) -> Result<(Embeddings, Vec<Regions>), EngineError> {
        let buffers: Vec<&gst::BufferRef> =
            embed.iter().map(|&i| batch[i].buffer.as_ref()).collect();
        let plan = self.plan_batch(&buffers, format);
        let layouts: Vec<FrameLayout> = buffers.iter().map(|b| format.layout_of(b)).collect();
        let maps = buffers
            .iter()
            .map(|buffer| buffer.map_readable())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| PreprocessError::Unreadable)?;
        let frames: Vec<Frame> = maps
            .iter()
            .zip(&layouts)
            .map(|(map, layout)| Frame {
                data: map.as_slice(),
                layout,
            })
            .collect();
        let jobs: Vec<FrameJob> = embed
            .iter()
            .zip(&plan.regions)
            .map(|(&i, regions)| FrameJob {
                index: batch[i].frame_index,
                regions: &regions.boxes,
            })
            .collect();
        let batch = Batch {
            frames: &frames,
            jobs: &jobs,
            size: format.input,
            deadline: plan.deadline,
        };
        let mut embeddings = engine.embed(preprocessor, &batch)?;
        if let Some(crop) = &plan.crop {
            let vectors = Self::embed_crops(engine, preprocessor, &frames, &plan, crop)?;
            for (frame, vectors) in embeddings.frames.iter_mut().zip(vectors) {
                frame.regions = vectors;
            }
        }
        Ok((embeddings, plan.regions))
    }

    /// What a batch takes from the settings, read once: its frames' regions,
    /// how long it may wait for other streams, and the crop pass, if any.
    fn plan_batch(&self, buffers: &[&gst::BufferRef], format: &StreamFormat) -> BatchPlan {
        let settings = lock(&self.settings);
        let regions: Vec<Regions> = buffers
            .iter()
            .map(|b| Regions::of(b, &settings, format.frame_size()))
            .collect();
        let crop = (settings.roi_mode == RoiMode::Crop && regions.iter().any(|r| !r.is_empty()))
            .then(|| CropPass {
                side: settings.roi_resolution as usize,
                max_batch: settings.batch_size as usize,
            });
        BatchPlan {
            regions,
            deadline: settings
                .batch_timeout
                .and_then(|t| Instant::now().checked_add(t.into())),
            crop,
        }
    }

    /// `roi-mode=crop`: the summary of every region of the batch's frames,
    /// cropped and resized, grouped by frame.
    fn embed_crops(
        engine: &Engine,
        preprocessor: &mut Preprocessor,
        frames: &[Frame],
        plan: &BatchPlan,
        crop: &CropPass,
    ) -> Result<Vec<Vec<RegionVectors>>, EngineError> {
        let layouts: Vec<Vec<FrameLayout>> = frames
            .iter()
            .zip(&plan.regions)
            .map(|(frame, regions)| {
                regions
                    .crops
                    .iter()
                    .map(|&(x, y, w, h)| frame.layout.crop(x, y, w, h))
                    .collect()
            })
            .collect();
        let crops: Vec<Frame> = frames
            .iter()
            .zip(&layouts)
            .flat_map(|(frame, layouts)| {
                layouts.iter().map(|layout| Frame {
                    data: frame.data,
                    layout,
                })
            })
            .collect();
        let size = (crop.side, crop.side);
        let mut vectors = engine
            .embed_crops(preprocessor, &crops, size, crop.max_batch, plan.deadline)?
            .into_iter();
        Ok(layouts
            .iter()
            .map(|l| vectors.by_ref().take(l.len()).collect())
            .collect())
    }

    fn record_batch(&self, embeddings: &Embeddings, took: Duration) {
        let mut stats = lock(&self.stats);
        stats.frames_embedded += embeddings.frames.len() as u64;
        stats.regions_embedded += embeddings
            .frames
            .iter()
            .map(|f| f.regions.len() as u64)
            .sum::<u64>();
        stats.shared_batches += u64::from(embeddings.forward_streams > 1);
        stats.batches += 1;
        stats.inference_total += took;
        stats.inference_max = stats.inference_max.max(took);
        let budget = lock(&self.settings).processing_latency;
        if took > Duration::from(budget) {
            gst::debug!(
                CAT,
                imp = self,
                "batch took {took:?}, more than processing-latency {budget}"
            );
        }
    }

    fn stats_structure(&self) -> gst::Structure {
        let instance = self
            .engine
            .get()
            .and_then(|engine| engine.shared().map(|s| s.instance_stats()));
        let stats = lock(&self.stats);
        let settings = lock(&self.settings);
        let batches = stats.batches.max(1);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        gst::Structure::builder("radioembed-stats")
            .field("frames-in", stats.frames_in)
            .field("frames-embedded", stats.frames_embedded)
            .field("frames-skipped", stats.frames_skipped)
            .field("regions-embedded", stats.regions_embedded)
            .field("batches", stats.batches)
            .field("shared-batches", stats.shared_batches)
            .field(
                "mean-batch-fill",
                stats.frames_embedded as f64 / batches as f64 / f64::from(settings.batch_size),
            )
            .field(
                "mean-inference-ms",
                ms(stats.inference_total) / batches as f64,
            )
            .field("max-inference-ms", ms(stats.inference_max))
            .field("latency-ms", ms(settings.own_latency().into()))
            .field_if_some("instance-forwards", instance.map(|i| i.forwards))
            .field_if_some("instance-frames", instance.map(|i| i.frames))
            .build()
    }

    /// Whether the element is above READY (or going there), where `pspec`, a
    /// READY-only property, cannot change: then says so on the bus.
    fn is_running(&self, pspec: &glib::ParamSpec) -> bool {
        let obj = self.obj();
        let state = obj.current_state().max(obj.pending_state());
        if state <= gst::State::Ready {
            return false;
        }
        gst::element_imp_warning!(
            self,
            gst::LibraryError::Settings,
            (
                "property {} cannot change while the element is {state:?}; \
                 set it in the READY or NULL state",
                pspec.name()
            )
        );
        true
    }

    fn src_activate_mode(
        &self,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        let mut src_active = lock(&self.src_active);
        *src_active = active;
        if active {
            self.queue.set_flushing(false);
            self.cancel_shared(false);
            self.start_task();
        } else {
            self.queue.set_flushing(true);
            self.cancel_shared(true);
            self.srcpad
                .stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot stop task: {e}"))?;
        }
        Ok(())
    }
}

/// The sink pad, its functions calling the element's, panics caught.
fn sink_pad(klass: &<RadioEmbed as ObjectSubclass>::Class) -> gst::Pad {
    gst::Pad::builder_from_template(&klass.pad_template("sink").expect("registered template"))
        .chain_function(|_pad, parent, buffer| {
            RadioEmbed::catch_panic_pad_function(
                parent,
                || Err(gst::FlowError::Error),
                |imp| imp.chain(buffer),
            )
        })
        .event_full_function(|pad, parent, event| {
            RadioEmbed::catch_panic_pad_function(
                parent,
                || Err(gst::FlowError::Error),
                |imp| imp.sink_event(pad, event),
            )
        })
        .query_function(|pad, parent, query| {
            RadioEmbed::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
        })
        .flags(gst::PadFlags::PROXY_CAPS)
        .build()
}

/// The source pad, its functions calling the element's, panics caught.
fn src_pad(klass: &<RadioEmbed as ObjectSubclass>::Class) -> gst::Pad {
    gst::Pad::builder_from_template(&klass.pad_template("src").expect("registered template"))
        .query_function(|pad, parent, query| {
            RadioEmbed::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
        })
        .event_function(|pad, parent, event| {
            RadioEmbed::catch_panic_pad_function(parent, || false, |imp| imp.src_event(pad, event))
        })
        .activatemode_function(|_pad, parent, mode, active| {
            RadioEmbed::catch_panic_pad_function(
                parent,
                || Err(gst::loggable_error!(CAT, "panic while activating")),
                |imp| imp.src_activate_mode(mode, active),
            )
        })
        .flags(gst::PadFlags::PROXY_CAPS)
        .build()
}

#[glib::object_subclass]
impl ObjectSubclass for RadioEmbed {
    const NAME: &'static str = "GstRadioEmbed";
    type Type = super::RadioEmbed;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let (sinkpad, srcpad) = (sink_pad(klass), src_pad(klass));
        let settings = Settings::default();
        let queue = BatchQueue::default();
        let (batch_size, timeout, leaky) = settings.batching();
        queue.set_batching(batch_size, timeout, leaky);
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(settings),
            engine: LoadSlot::default(),
            state: Mutex::new(None),
            queue,
            stats: Mutex::new(Stats::default()),
            src_active: Mutex::new(false),
        }
    }
}

impl ObjectImpl for RadioEmbed {
    fn properties() -> &'static [glib::ParamSpec] {
        settings::properties()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY) && self.is_running(pspec) {
            return;
        }
        let mut s = lock(&self.settings);
        let latency_before = s.own_latency();
        s.set(pspec.name(), value);
        let latency_changed = s.own_latency() != latency_before;
        let (batch_size, timeout, leaky) = s.batching();
        drop(s);
        self.queue.set_batching(batch_size, timeout, leaky);
        self.with_shared(|shared| shared.set_batch_size(batch_size));
        if latency_changed {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stats" => self.stats_structure().to_value(),
            name => lock(&self.settings).get(name),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("fresh pad");
        obj.add_pad(&self.srcpad).expect("fresh pad");
    }
}

impl GstObjectImpl for RadioEmbed {}

impl ElementImpl for RadioEmbed {
    /// Batch timeouts run on the pipeline clock (a test's `TestClock` included).
    fn set_clock(&self, clock: Option<&gst::Clock>) -> bool {
        self.queue.set_clock(clock.cloned());
        self.parent_set_clock(clock)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "C-RADIOv4 embedding inference",
                "Filter/Analyzer/Video",
                "Runs NVIDIA's C-RADIOv4 vision transformer on batches of frames and \
                 attaches summary and spatial embeddings as RadioEmbedMeta",
                "radioembed developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(caps_formats())
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => {
                let settings = lock(&self.settings).clone();
                let loading = self.start_loading(settings)?;
                if let Err(err) = self.parent_change_state(transition) {
                    self.stop_loading();
                    return Err(err);
                }
                if loading == gst::StateChangeSuccess::Async {
                    let start = gst::message::AsyncStart::builder().src(&*self.obj());
                    let _ = self.obj().post_message(start.build());
                }
                Ok(loading)
            }
            gst::StateChange::PausedToReady => {
                // First, so that a caps event waiting for the model lets go of
                // the sink pad before it is deactivated.
                self.stop_loading();
                self.parent_change_state(transition)
            }
            _ => self.parent_change_state(transition),
        }
    }
}
