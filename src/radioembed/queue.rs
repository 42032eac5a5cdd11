// SPDX-License-Identifier: MPL-2.0
//! The bounded hand-over between the sink pad (upstream's thread) and the source
//! pad task that batches frames, runs the model and pushes downstream.
//!
//! Upstream blocks only while a whole batch is already waiting, so it is never
//! stalled by more than one batch; a leaky queue never blocks it, and frames
//! that arrive while a whole batch waits pass without embeddings instead. Serialized events travel in the same queue, so
//! they stay in order with the buffers; one reaching the head closes the batch.
//!
//! Downstream's answers reach upstream as GStreamer's `queue` passes them on: a
//! flow error (NOT_LINKED, NOT_NEGOTIATED, ERROR) is returned to the next buffer
//! or serialized event, while EOS from downstream only drops buffers up to the
//! next event that starts something new (SEGMENT, STREAM_START, EOS) and makes
//! upstream's buffers return EOS until one arrives; events keep flowing.

use std::collections::VecDeque;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use gst::prelude::*;

use super::caps::StreamFormat;

/// One entry of the queue.
pub(crate) enum Item {
    /// A buffer; `embed` says whether this frame gets embeddings; `arrived` is
    /// the queue clock's time when it was queued.
    Buffer {
        buffer: gst::Buffer,
        embed: bool,
        frame_index: u64,
        arrived: gst::ClockTime,
    },
    /// A serialized event, forwarded after everything before it.
    Event(gst::Event),
    /// A caps event with the stream format made from it on the sink pad's thread.
    Caps(gst::Event, Box<StreamFormat>),
    /// A drain request: answered once everything before it was pushed.
    Drain(SyncSender<()>),
}

/// How a buffer was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Queued as asked.
    Queued,
    /// Queued to pass without embeddings: a leaky queue had a whole batch waiting.
    Skipped,
}

/// A buffer taken from the queue into a batch.
pub(crate) struct Queued {
    pub buffer: gst::Buffer,
    pub embed: bool,
    pub frame_index: u64,
}

/// What the source pad task does next.
pub(crate) enum Work {
    /// Embed the `embed` buffers of this list (in one forward), then push all in order.
    Batch(Vec<Queued>),
    /// Forward an event.
    Event(gst::Event),
    /// Switch to a new stream format, then forward its caps event.
    Caps(gst::Event, Box<StreamFormat>),
    /// Answer a drain request.
    Drain(SyncSender<()>),
}

struct Inner {
    items: VecDeque<Item>,
    buffers: usize,
    /// Queued buffers that are to be embedded.
    embeds: usize,
    /// Never block upstream: skip embedding instead.
    leaky: bool,
    flushing: bool,
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// Downstream returned EOS and nothing queued could be pushed after it.
    downstream_eos: bool,
    /// Frames per forward, also the most buffers queued before upstream waits.
    batch_size: usize,
    /// Longest wait of a batch's first frame; `None`: no limit.
    timeout: Option<gst::ClockTime>,
    /// The clock batch timeouts run on: the element's, else the system clock.
    clock: gst::Clock,
}

impl Inner {
    /// Takes the front item if it is a buffer, with its arrival time.
    fn pop_buffer(&mut self) -> Option<(Queued, gst::ClockTime)> {
        match self.items.pop_front()? {
            Item::Buffer {
                buffer,
                embed,
                frame_index,
                arrived,
            } => {
                self.buffers -= 1;
                self.embeds -= usize::from(embed);
                let queued = Queued {
                    buffer,
                    embed,
                    frame_index,
                };
                Some((queued, arrived))
            }
            other => {
                self.items.push_front(other);
                None
            }
        }
    }
}

/// Events after which a downstream that returned EOS takes buffers again.
fn reopens_downstream(event: &gst::Event) -> bool {
    matches!(
        event.type_(),
        gst::EventType::Segment | gst::EventType::StreamStart
    )
}

/// The queue shared by the two threads. The lock and condition variable are
/// shared with the clock's callback that wakes a batch at its deadline.
pub(crate) struct BatchQueue {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Condvar>,
}

impl Default for BatchQueue {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                items: VecDeque::new(),
                buffers: 0,
                embeds: 0,
                leaky: false,
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
                downstream_eos: false,
                batch_size: 1,
                timeout: None,
                clock: gst::SystemClock::obtain(),
            })),
            changed: Arc::new(Condvar::new()),
        }
    }
}

impl BatchQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the batch size, the timeout and whether the queue is leaky; a
    /// waiting batch sees them at once.
    pub fn set_batching(&self, batch_size: usize, timeout: Option<gst::ClockTime>, leaky: bool) {
        let mut inner = self.lock();
        inner.batch_size = batch_size.max(1);
        inner.timeout = timeout;
        inner.leaky = leaky;
        self.changed.notify_all();
    }

    /// Runs batch timeouts on `clock` (the element's; `None`: the system clock).
    /// Frames already queued count their wait from now, on the new clock.
    pub fn set_clock(&self, clock: Option<gst::Clock>) {
        let mut inner = self.lock();
        inner.clock = clock.unwrap_or_else(gst::SystemClock::obtain);
        let now = inner.clock.time();
        for item in &mut inner.items {
            if let Item::Buffer { arrived, .. } = item {
                *arrived = now;
            }
        }
        self.changed.notify_all();
    }

    /// Adds a buffer, waiting while a whole batch is already queued; a leaky
    /// queue instead takes it at once, without embedding it when a whole batch
    /// of frames to embed is waiting. Returns whether it was skipped so, or the
    /// last downstream flow error, so errors and flushing reach upstream;
    /// after EOS from downstream the buffer is dropped and EOS returned.
    pub fn push_buffer(
        &self,
        buffer: gst::Buffer,
        embed: bool,
        frame_index: u64,
    ) -> Result<Admitted, gst::FlowError> {
        let mut inner = self.lock();
        loop {
            if inner.flushing {
                return Err(gst::FlowError::Flushing);
            }
            inner.flow?;
            if inner.downstream_eos {
                return Err(gst::FlowError::Eos);
            }
            if inner.leaky || inner.buffers < inner.batch_size {
                break;
            }
            inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
        let skipped = embed && inner.leaky && inner.embeds >= inner.batch_size;
        let embed = embed && !skipped;
        inner.buffers += 1;
        inner.embeds += usize::from(embed);
        let arrived = inner.clock.time();
        inner.items.push_back(Item::Buffer {
            buffer,
            embed,
            frame_index,
            arrived,
        });
        self.changed.notify_all();
        Ok(if skipped {
            Admitted::Skipped
        } else {
            Admitted::Queued
        })
    }

    /// Adds an event or drain request. Refused with `Flushing`, or with the flow
    /// error downstream returned (the event could never be pushed).
    pub fn push_event(&self, item: Item) -> Result<(), gst::FlowError> {
        let mut inner = self.lock();
        if inner.flushing {
            return Err(gst::FlowError::Flushing);
        }
        inner.flow?;
        if let Item::Event(event) = &item
            && reopens_downstream(event)
        {
            inner.downstream_eos = false;
        }
        inner.items.push_back(item);
        self.changed.notify_all();
        Ok(())
    }

    /// Starts or stops flushing. Flushing drops everything queued and wakes both sides.
    pub fn set_flushing(&self, flushing: bool) {
        let mut inner = self.lock();
        inner.flushing = flushing;
        inner.items.clear();
        inner.buffers = 0;
        inner.embeds = 0;
        if !flushing {
            inner.flow = Ok(gst::FlowSuccess::Ok);
            inner.downstream_eos = false;
        }
        self.changed.notify_all();
    }

    /// Downstream returned EOS: drops the queued buffers before the next event
    /// that downstream takes next (a SEGMENT, STREAM_START or EOS; other events
    /// and drain requests stay, in order). With no such event queued, upstream's
    /// buffers get EOS until a reopening one arrives.
    pub fn downstream_eos(&self) {
        let mut inner = self.lock();
        let next = inner.items.iter().position(|item| {
            matches!(item, Item::Event(e)
                if reopens_downstream(e) || e.type_() == gst::EventType::Eos)
        });
        let end = next.unwrap_or(inner.items.len());
        let after = inner.items.split_off(end);
        let before = inner.items.len();
        let dropped_embeds = inner
            .items
            .iter()
            .filter(|item| matches!(item, Item::Buffer { embed: true, .. }))
            .count();
        inner
            .items
            .retain(|item| !matches!(item, Item::Buffer { .. }));
        inner.buffers -= before - inner.items.len();
        inner.embeds -= dropped_embeds;
        inner.items.extend(after);
        inner.downstream_eos = next.is_none();
        self.changed.notify_all();
    }

    /// Downstream was relinked or renegotiated (a RECONFIGURE): clears a
    /// NOT_LINKED or NOT_NEGOTIATED flow; true if it did, so the task should
    /// start again.
    pub fn retry_after_reconfigure(&self) -> bool {
        let mut inner = self.lock();
        let stuck = matches!(
            inner.flow,
            Err(gst::FlowError::NotLinked | gst::FlowError::NotNegotiated)
        );
        if inner.flushing || !stuck {
            return false;
        }
        inner.flow = Ok(gst::FlowSuccess::Ok);
        self.changed.notify_all();
        true
    }

    /// Records what downstream answered, for upstream to see.
    pub fn set_flow(&self, flow: Result<gst::FlowSuccess, gst::FlowError>) {
        let mut inner = self.lock();
        inner.flow = flow;
        self.changed.notify_all();
    }

    /// Waits for the next piece of work: a full batch, a batch whose oldest frame
    /// waited the timeout, a batch closed by an event, or an event. `None` when
    /// flushing.
    pub fn next_work(&self) -> Option<Work> {
        let mut inner = self.lock();
        let mut batch = Vec::new();
        let mut embeds = 0;
        let mut first_arrived: Option<gst::ClockTime> = None;
        loop {
            if inner.flushing {
                return None;
            }
            while embeds < inner.batch_size {
                if let Some((queued, arrived)) = inner.pop_buffer() {
                    if queued.embed {
                        embeds += 1;
                        first_arrived.get_or_insert(arrived);
                    }
                    batch.push(queued);
                    self.changed.notify_all();
                    continue;
                }
                match inner.items.pop_front() {
                    Some(Item::Event(event)) if batch.is_empty() => {
                        return Some(Work::Event(event));
                    }
                    Some(Item::Caps(event, format)) if batch.is_empty() => {
                        return Some(Work::Caps(event, format));
                    }
                    Some(Item::Drain(done)) if batch.is_empty() => return Some(Work::Drain(done)),
                    // An event closes the batch before it; it comes next time.
                    Some(item) => {
                        inner.items.push_front(item);
                        return Some(Work::Batch(batch));
                    }
                    None => break,
                }
            }
            if embeds >= inner.batch_size || (!batch.is_empty() && embeds == 0) {
                return Some(Work::Batch(batch));
            }
            // A deadline past the clock's range (an endless timeout) is no deadline.
            let deadline = first_arrived
                .zip(inner.timeout)
                .and_then(|(arrived, timeout)| arrived.checked_add(timeout));
            inner = match deadline {
                Some(deadline) if inner.clock.time() >= deadline => {
                    return Some(Work::Batch(batch));
                }
                Some(deadline) => self.wait_until(inner, deadline),
                None => self.changed.wait(inner).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

impl BatchQueue {
    /// Waits for a change or for `deadline` on the queue's clock, whichever
    /// comes first: the clock's callback wakes the task at the deadline.
    fn wait_until<'a>(
        &self,
        inner: MutexGuard<'a, Inner>,
        deadline: gst::ClockTime,
    ) -> MutexGuard<'a, Inner> {
        let id = inner.clock.new_single_shot_id(deadline);
        let (shared, changed) = (self.inner.clone(), self.changed.clone());
        let scheduled = id.wait_async(move |_, _, _| {
            let _inner = shared.lock().unwrap_or_else(|e| e.into_inner());
            changed.notify_all();
        });
        let inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
        if scheduled.is_ok() {
            id.unschedule();
        }
        inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues an empty buffer.
    fn push(q: &BatchQueue, embed: bool, frame_index: u64) -> Result<Admitted, gst::FlowError> {
        q.push_buffer(gst::Buffer::new(), embed, frame_index)
    }

    fn batch_embeds(work: Option<Work>) -> Vec<bool> {
        match work {
            Some(Work::Batch(b)) => b.iter().map(|q| q.embed).collect(),
            _ => panic!("expected a batch"),
        }
    }

    fn batch_indices(work: Option<Work>) -> Vec<u64> {
        match work {
            Some(Work::Batch(b)) => b.iter().map(|q| q.frame_index).collect(),
            _ => panic!("expected a batch"),
        }
    }

    /// A started queue taking up to 8 buffers, with no timeout.
    fn queue() -> BatchQueue {
        gst::init().unwrap();
        let q = BatchQueue::default();
        q.set_flushing(false);
        q.set_batching(8, None, false);
        q
    }

    fn is_event(work: Option<Work>, type_: gst::EventType) -> bool {
        matches!(work, Some(Work::Event(e)) if e.type_() == type_)
    }

    #[test]
    fn full_batches_then_events_close_partial_ones() {
        let q = queue();
        for i in 0..3 {
            push(&q, true, i).unwrap();
        }
        q.push_event(Item::Event(gst::event::Eos::new())).unwrap();
        q.set_batching(2, Some(gst::ClockTime::from_seconds(60)), false);
        assert_eq!(batch_indices(q.next_work()), vec![0, 1]);
        assert_eq!(batch_indices(q.next_work()), vec![2]);
        assert!(is_event(q.next_work(), gst::EventType::Eos));
    }

    #[test]
    fn timeout_releases_a_partial_batch_on_the_queue_clock() {
        let q = std::sync::Arc::new(queue());
        let clock = gst_check::TestClock::new();
        q.set_clock(Some(clock.clone().upcast()));
        q.set_batching(4, Some(gst::ClockTime::from_mseconds(30)), false);
        push(&q, true, 0).unwrap();
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || batch_indices(q.next_work()))
        };
        // The task waits on the clock for the batch's deadline, 30 ms after arrival.
        let id = clock.wait_for_next_pending_id();
        assert_eq!(id.time(), gst::ClockTime::from_mseconds(30));
        clock.advance_time(29_000_000);
        assert!(
            clock.process_next_clock_id().is_none(),
            "due before its deadline"
        );
        assert!(!waiter.is_finished());
        clock.advance_time(1_000_000);
        assert!(clock.process_next_clock_id().is_some());
        assert_eq!(waiter.join().unwrap(), vec![0]);
    }

    #[test]
    fn skipped_frames_ride_along_without_waiting() {
        let q = queue();
        push(&q, false, 0).unwrap();
        assert_eq!(batch_indices(q.next_work()), vec![0]);
    }

    #[test]
    fn flushing_refuses_and_wakes() {
        gst::init().unwrap();
        let q = BatchQueue::default();
        assert_eq!(push(&q, true, 0), Err(gst::FlowError::Flushing));
        q.set_flushing(false);
        q.set_flow(Err(gst::FlowError::Eos));
        assert_eq!(push(&q, true, 0), Err(gst::FlowError::Eos));
        q.set_flushing(true);
        assert!(q.next_work().is_none());
    }

    #[test]
    fn downstream_eos_drops_buffers_but_lets_events_through() {
        let q = queue();
        for i in 0..3 {
            push(&q, true, i).unwrap();
        }
        q.push_event(Item::Event(gst::event::Eos::new())).unwrap();
        q.downstream_eos();
        // The buffers are gone, the EOS is next and upstream still gets OK.
        assert!(is_event(q.next_work(), gst::EventType::Eos));
        push(&q, true, 3).unwrap();

        // Nothing pushable queued: buffers get EOS until a new segment comes.
        q.downstream_eos();
        assert_eq!(push(&q, true, 4), Err(gst::FlowError::Eos));
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        q.push_event(Item::Event(gst::event::Segment::new(&segment)))
            .unwrap();
        assert!(is_event(q.next_work(), gst::EventType::Segment));
        push(&q, true, 5).unwrap();
        q.set_batching(1, None, false);
        assert_eq!(batch_indices(q.next_work()), vec![5]);
    }

    #[test]
    fn flow_errors_refuse_events_until_cleared() {
        let q = queue();
        q.set_flow(Err(gst::FlowError::NotLinked));
        assert_eq!(
            q.push_event(Item::Event(gst::event::Eos::new())),
            Err(gst::FlowError::NotLinked)
        );
        assert!(q.retry_after_reconfigure());
        assert!(!q.retry_after_reconfigure(), "nothing left to clear");
        q.push_event(Item::Event(gst::event::Eos::new())).unwrap();
    }

    #[test]
    fn an_endless_timeout_waits_for_a_full_batch() {
        let q = queue();
        push(&q, true, 0).unwrap();
        push(&q, true, 1).unwrap();
        // The largest timeout overflows any arrival: it means "no deadline", no panic.
        q.set_batching(2, Some(gst::ClockTime::MAX), false);
        assert_eq!(batch_indices(q.next_work()), vec![0, 1]);
    }

    #[test]
    fn a_new_batch_size_applies_to_the_waiting_batch() {
        let q = std::sync::Arc::new(queue());
        q.set_batching(4, None, false);
        push(&q, true, 0).unwrap();
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || batch_indices(q.next_work()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        q.set_batching(1, None, false);
        assert_eq!(waiter.join().unwrap(), vec![0]);
    }

    #[test]
    fn a_leaky_queue_never_blocks_and_skips_beyond_one_batch() {
        let q = queue();
        q.set_batching(2, None, true);
        let admitted: Vec<_> = (0..5).map(|i| push(&q, true, i).unwrap()).collect();
        use Admitted::{Queued, Skipped};
        assert_eq!(admitted, [Queued, Queued, Skipped, Skipped, Skipped]);
        // The batch takes the first two; the skipped ones follow in order.
        assert_eq!(batch_embeds(q.next_work()), [true, true]);
        // Once the batch is taken, new frames are embedded again.
        assert_eq!(push(&q, true, 5).unwrap(), Queued);
        q.set_batching(1, None, true);
        assert_eq!(batch_embeds(q.next_work()), [false, false, false, true]);
    }

    #[test]
    fn a_queue_that_is_not_leaky_skips_nothing() {
        let q = std::sync::Arc::new(queue());
        q.set_batching(1, None, false);
        assert_eq!(push(&q, true, 0).unwrap(), Admitted::Queued);
        let blocked = {
            let q = q.clone();
            std::thread::spawn(move || push(&q, true, 1).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!blocked.is_finished(), "upstream waits for room");
        assert_eq!(batch_indices(q.next_work()), [0]);
        assert_eq!(blocked.join().unwrap(), Admitted::Queued);
    }
}
