//! The bounded hand-over between the sink pad (upstream's thread) and the source
//! pad task that batches frames, runs the model and pushes downstream.
//!
//! Upstream blocks only while a whole batch is already waiting, so it is never
//! stalled by more than one batch. Serialized events travel in the same queue, so
//! they stay in order with the buffers; one reaching the head closes the batch.

use std::collections::VecDeque;
use std::sync::mpsc::SyncSender;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One entry of the queue.
pub(crate) enum Item {
    /// A buffer; `embed` says whether this frame gets embeddings.
    Buffer {
        buffer: gst::Buffer,
        embed: bool,
        frame_index: u64,
        arrived: Instant,
    },
    /// A serialized event, forwarded after everything before it.
    Event(gst::Event),
    /// A drain request: answered once everything before it was pushed.
    Drain(SyncSender<()>),
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
    /// Answer a drain request.
    Drain(SyncSender<()>),
}

struct Inner {
    items: VecDeque<Item>,
    buffers: usize,
    flushing: bool,
    flow: Result<gst::FlowSuccess, gst::FlowError>,
}

/// The queue shared by the two threads.
pub(crate) struct BatchQueue {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Default for BatchQueue {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                buffers: 0,
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
            }),
            changed: Condvar::new(),
        }
    }
}

impl BatchQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a buffer, waiting while `capacity` buffers are already queued. Returns
    /// the last downstream flow result, so errors and flushing reach upstream.
    pub fn push_buffer(
        &self,
        item: Item,
        capacity: usize,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut inner = self.lock();
        loop {
            if inner.flushing {
                return Err(gst::FlowError::Flushing);
            }
            inner.flow?;
            if inner.buffers < capacity {
                break;
            }
            inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
        inner.buffers += 1;
        inner.items.push_back(item);
        self.changed.notify_all();
        inner.flow
    }

    /// Adds an event or drain request; false when flushing.
    pub fn push_event(&self, item: Item) -> bool {
        let mut inner = self.lock();
        if inner.flushing {
            return false;
        }
        inner.items.push_back(item);
        self.changed.notify_all();
        true
    }

    /// Starts or stops flushing. Flushing drops everything queued and wakes both sides.
    pub fn set_flushing(&self, flushing: bool) {
        let mut inner = self.lock();
        inner.flushing = flushing;
        inner.items.clear();
        inner.buffers = 0;
        if !flushing {
            inner.flow = Ok(gst::FlowSuccess::Ok);
        }
        self.changed.notify_all();
    }

    /// Records what downstream answered, for upstream to see.
    pub fn set_flow(&self, flow: Result<gst::FlowSuccess, gst::FlowError>) {
        let mut inner = self.lock();
        inner.flow = flow;
        self.changed.notify_all();
    }

    /// Waits for the next piece of work: a full batch, a batch whose oldest frame
    /// waited `timeout`, a batch closed by an event, or an event. `None` when flushing.
    pub fn next_work(&self, batch_size: usize, timeout: Duration) -> Option<Work> {
        let mut inner = self.lock();
        let mut batch = Vec::new();
        let mut embeds = 0;
        let mut deadline: Option<Instant> = None;
        loop {
            if inner.flushing {
                return None;
            }
            while embeds < batch_size {
                match inner.items.front() {
                    Some(Item::Buffer { .. }) => {
                        let Some(Item::Buffer {
                            buffer,
                            embed,
                            frame_index,
                            arrived,
                        }) = inner.items.pop_front()
                        else {
                            unreachable!("front was a buffer");
                        };
                        inner.buffers -= 1;
                        if embed {
                            embeds += 1;
                            deadline.get_or_insert(arrived + timeout);
                        }
                        batch.push(Queued {
                            buffer,
                            embed,
                            frame_index,
                        });
                        self.changed.notify_all();
                    }
                    Some(_) if batch.is_empty() => {
                        return match inner.items.pop_front() {
                            Some(Item::Event(event)) => Some(Work::Event(event)),
                            Some(Item::Drain(done)) => Some(Work::Drain(done)),
                            _ => unreachable!("front was not a buffer"),
                        };
                    }
                    Some(_) => return Some(Work::Batch(batch)),
                    None => break,
                }
            }
            if embeds >= batch_size || (!batch.is_empty() && embeds == 0) {
                return Some(Work::Batch(batch));
            }
            inner = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Some(Work::Batch(batch));
                    }
                    self.changed
                        .wait_timeout(inner, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(inner).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(embed: bool, frame_index: u64) -> Item {
        Item::Buffer {
            buffer: gst::Buffer::new(),
            embed,
            frame_index,
            arrived: Instant::now(),
        }
    }

    fn batch_indices(work: Option<Work>) -> Vec<u64> {
        match work {
            Some(Work::Batch(b)) => b.iter().map(|q| q.frame_index).collect(),
            _ => panic!("expected a batch"),
        }
    }

    #[test]
    fn full_batches_then_events_close_partial_ones() {
        gst::init().unwrap();
        let q = BatchQueue::default();
        q.set_flushing(false);
        for i in 0..3 {
            q.push_buffer(buffer(true, i), 8).unwrap();
        }
        assert!(q.push_event(Item::Event(gst::event::Eos::new())));
        let long = Duration::from_secs(60);
        assert_eq!(batch_indices(q.next_work(2, long)), vec![0, 1]);
        assert_eq!(batch_indices(q.next_work(2, long)), vec![2]);
        assert!(matches!(q.next_work(2, long), Some(Work::Event(_))));
    }

    #[test]
    fn timeout_releases_a_partial_batch() {
        gst::init().unwrap();
        let q = BatchQueue::default();
        q.set_flushing(false);
        q.push_buffer(buffer(true, 0), 8).unwrap();
        let started = Instant::now();
        assert_eq!(
            batch_indices(q.next_work(4, Duration::from_millis(30))),
            vec![0]
        );
        assert!(started.elapsed() >= Duration::from_millis(25));
    }

    #[test]
    fn skipped_frames_ride_along_without_waiting() {
        gst::init().unwrap();
        let q = BatchQueue::default();
        q.set_flushing(false);
        q.push_buffer(buffer(false, 0), 8).unwrap();
        assert_eq!(
            batch_indices(q.next_work(4, Duration::from_secs(60))),
            vec![0]
        );
    }

    #[test]
    fn flushing_refuses_and_wakes() {
        gst::init().unwrap();
        let q = BatchQueue::default();
        assert_eq!(
            q.push_buffer(buffer(true, 0), 8),
            Err(gst::FlowError::Flushing)
        );
        q.set_flushing(false);
        q.set_flow(Err(gst::FlowError::Eos));
        assert_eq!(q.push_buffer(buffer(true, 0), 8), Err(gst::FlowError::Eos));
        q.set_flushing(true);
        assert!(q.next_work(1, Duration::from_secs(60)).is_none());
    }
}
