// SPDX-License-Identifier: MPL-2.0
//! A bounded queue of messages and the thread that hands them to a
//! [`Publisher`], so that publishing never stalls the video: when the
//! destination is slow or down, messages wait up to `max_queued`, then the
//! oldest are dropped and counted; a failing destination is retried with
//! back-off.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{PublishError, Publisher};

/// The first wait after a failed publish; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Counters of an outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Messages the destination took.
    pub published: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Times the destination took messages again after failing.
    pub reconnects: u64,
    /// Messages waiting now.
    pub queued: usize,
}

/// What the element tells the user about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEvent {
    /// The queue is full: messages are being dropped, and why the destination
    /// does not take them (if it failed).
    Dropping(Option<String>),
    /// The destination takes messages again after failing.
    Recovered,
}

struct State {
    queue: VecDeque<String>,
    max_queued: usize,
    stats: PublishStats,
    /// Set by [`Outbox::close`]: the worker ends once the queue is empty or the
    /// deadline passed.
    closing: Option<Instant>,
    /// Dropping since the last [`OutboxEvent::Dropping`].
    dropping: bool,
    /// The last failure, while the destination fails.
    failure: Option<String>,
    /// The worker holds a message out of the queue, publishing it.
    in_flight: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Messages on their way to a publisher, on a thread of their own.
pub struct Outbox {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    notify: Arc<dyn Fn(OutboxEvent) + Send + Sync>,
}

impl Outbox {
    /// Starts the thread that feeds `publisher`; `notify` hears when messages
    /// start being dropped and when a failing destination recovers.
    pub fn start(
        publisher: Box<dyn Publisher>,
        max_queued: usize,
        notify: Arc<dyn Fn(OutboxEvent) + Send + Sync>,
    ) -> Result<Self, PublishError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                max_queued: max_queued.max(1),
                stats: PublishStats::default(),
                closing: None,
                dropping: false,
                failure: None,
                in_flight: false,
            }),
            changed: Condvar::new(),
        });
        let worker = {
            let (shared, notify) = (shared.clone(), notify.clone());
            std::thread::Builder::new()
                .name("radio-publish".into())
                .spawn(move || run(&shared, publisher, &*notify))
                .map_err(|e| PublishError::Start(format!("cannot start its thread: {e}")))?
        };
        Ok(Self {
            shared,
            worker: Some(worker),
            notify,
        })
    }

    /// Queues a message without waiting; drops the oldest when the queue is full.
    pub fn push(&self, message: String) {
        let mut state = self.shared.lock();
        let mut started_dropping = None;
        if state.queue.len() >= state.max_queued {
            state.queue.pop_front();
            state.stats.dropped += 1;
            if !state.dropping {
                state.dropping = true;
                started_dropping = Some(state.failure.clone());
            }
        }
        state.queue.push_back(message);
        self.shared.changed.notify_all();
        drop(state);
        if let Some(why) = started_dropping {
            (self.notify)(OutboxEvent::Dropping(why));
        }
    }

    /// The counters now.
    pub fn stats(&self) -> PublishStats {
        let state = self.shared.lock();
        PublishStats {
            queued: state.queue.len() + usize::from(state.in_flight),
            ..state.stats
        }
    }

    /// Waits up to `timeout` for every queued message to be taken; returns
    /// whether they were.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while !state.queue.is_empty() || state.in_flight {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Gives the queued messages up to `grace` to go out, then stops the thread.
    pub fn close(mut self, grace: Duration) -> PublishStats {
        self.shared.lock().closing = Some(Instant::now() + grace);
        self.shared.changed.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        self.stats()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.shared.lock().closing = Some(Instant::now());
            self.shared.changed.notify_all();
        }
    }
}

/// The worker: takes the oldest message out of the queue, publishes it, and on
/// failure puts it back (unless newer ones filled the queue meanwhile: then it
/// is the oldest, and dropped) and waits before the next try.
fn run(shared: &Shared, mut publisher: Box<dyn Publisher>, notify: &(dyn Fn(OutboxEvent) + Sync)) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let message = {
            let mut state = shared.lock();
            loop {
                let past_deadline = state.closing.is_some_and(|d| Instant::now() >= d);
                if past_deadline || (state.closing.is_some() && state.queue.is_empty()) {
                    let _ = publisher.flush();
                    return;
                }
                if let Some(message) = state.queue.pop_front() {
                    state.in_flight = true;
                    break message;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        let published = publisher.publish(&message);
        let mut state = shared.lock();
        state.in_flight = false;
        match published {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                state.stats.published += 1;
                let recovered = state.failure.take().is_some();
                if recovered {
                    state.stats.reconnects += 1;
                }
                if state.queue.len() < state.max_queued {
                    state.dropping = false;
                }
                shared.changed.notify_all();
                drop(state);
                if recovered {
                    notify(OutboxEvent::Recovered);
                }
            }
            Err(err) => {
                state.failure = Some(err.to_string());
                if state.queue.len() < state.max_queued {
                    state.queue.push_front(message);
                } else {
                    state.stats.dropped += 1;
                }
                shared.changed.notify_all();
                let wait = backoff.min(
                    state
                        .closing
                        .map_or(backoff, |d| d.saturating_duration_since(Instant::now())),
                );
                drop(shared.changed.wait_timeout(state, wait));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A destination that records what it took and can be switched off.
    #[derive(Clone, Default)]
    struct Recorder {
        taken: Arc<Mutex<Vec<String>>>,
        down: Arc<AtomicBool>,
        tries: Arc<AtomicUsize>,
    }

    impl Publisher for Recorder {
        fn publish(&mut self, message: &str) -> Result<(), PublishError> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(PublishError::Unavailable("switched off".into()));
            }
            self.taken.lock().unwrap().push(message.to_string());
            Ok(())
        }
    }

    type Notify = Arc<dyn Fn(OutboxEvent) + Send + Sync>;

    fn events() -> (Arc<Mutex<Vec<OutboxEvent>>>, Notify) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, Arc::new(move |e| sink.lock().unwrap().push(e)))
    }

    #[test]
    fn messages_go_out_in_order() {
        let recorder = Recorder::default();
        let (_, notify) = events();
        let outbox = Outbox::start(Box::new(recorder.clone()), 8, notify).unwrap();
        for i in 0..5 {
            outbox.push(format!("m{i}"));
        }
        assert!(outbox.drain(Duration::from_secs(5)));
        let stats = outbox.close(Duration::from_secs(1));
        assert_eq!(
            *recorder.taken.lock().unwrap(),
            ["m0", "m1", "m2", "m3", "m4"]
        );
        assert_eq!((stats.published, stats.dropped, stats.queued), (5, 0, 0));
    }

    #[test]
    fn a_down_destination_drops_the_oldest_then_recovers() {
        let recorder = Recorder::default();
        recorder.down.store(true, Ordering::SeqCst);
        let (seen, notify) = events();
        let outbox = Outbox::start(Box::new(recorder.clone()), 3, notify).unwrap();
        outbox.push("m0".into());
        // Once a try failed (a second try comes after the failure is recorded),
        // the drops say why.
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.tries.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the worker never tried");
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 1..10 {
            outbox.push(format!("m{i}"));
        }
        let stats = outbox.stats();
        assert_eq!((stats.dropped, stats.queued), (7, 3));
        assert_eq!(
            seen.lock().unwrap()[0],
            OutboxEvent::Dropping(Some("destination unavailable: switched off".into()))
        );
        recorder.down.store(false, Ordering::SeqCst);
        assert!(outbox.drain(Duration::from_secs(10)));
        let stats = outbox.close(Duration::from_secs(1));
        assert_eq!(*recorder.taken.lock().unwrap(), ["m7", "m8", "m9"]);
        assert_eq!(
            (stats.published, stats.dropped, stats.reconnects),
            (3, 7, 1)
        );
        assert_eq!(seen.lock().unwrap().last(), Some(&OutboxEvent::Recovered));
    }

    #[test]
    fn close_gives_up_on_a_down_destination_after_the_grace() {
        let recorder = Recorder::default();
        recorder.down.store(true, Ordering::SeqCst);
        let (_, notify) = events();
        let outbox = Outbox::start(Box::new(recorder), 3, notify).unwrap();
        outbox.push("m".into());
        let started = Instant::now();
        let stats = outbox.close(Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!((stats.published, stats.queued), (0, 1));
    }
}
