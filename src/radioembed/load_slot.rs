// SPDX-License-Identifier: MPL-2.0
//! The loaded model as the streaming threads see it while it loads on a thread
//! of its own: not there, loading, ready or failed. A thread that needs it (the
//! sink pad's, for a caps event) waits while it loads, and is let go when the load
//! ends or when the element stops. A flush does not let it go: FLUSH_STOP waits
//! for the streaming thread, as it waits for any slow element.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Names one load, so that a load cancelled meanwhile cannot complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// Why [`LoadSlot::wait`] has no value to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Nothing is loaded or loading: the element is stopped (or stopping).
    Stopped,
    /// The load failed; its error is already on the bus.
    Failed,
}

enum Stage<T> {
    Stopped,
    Loading,
    Ready(T),
    Failed,
}

struct Inner<T> {
    stage: Stage<T>,
    /// Counts the loads begun and stopped: a [`Ticket`] of an older one is stale.
    generation: u64,
}

/// A value made on another thread, that streaming threads wait for.
pub(crate) struct LoadSlot<T> {
    inner: Mutex<Inner<T>>,
    changed: Condvar,
}

impl<T> Default for LoadSlot<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                stage: Stage::Stopped,
                generation: 0,
            }),
            changed: Condvar::new(),
        }
    }
}

impl<T: Clone> LoadSlot<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a load: the value is gone until [`complete`](Self::complete) is
    /// called with the returned ticket.
    pub fn begin(&self) -> Ticket {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.stage = Stage::Loading;
        Ticket(inner.generation)
    }

    /// Ends the load `ticket` names with its value (`None`: it failed) and wakes
    /// the waiting threads. Returns false, and keeps nothing, when the load was
    /// cancelled by [`stop`](Self::stop) or replaced by a newer one.
    pub fn complete(&self, ticket: Ticket, value: Option<T>) -> bool {
        let mut inner = self.lock();
        if inner.generation != ticket.0 || !matches!(inner.stage, Stage::Loading) {
            return false;
        }
        inner.stage = value.map_or(Stage::Failed, Stage::Ready);
        self.changed.notify_all();
        true
    }

    /// Whether `ticket` names the load under way, not a cancelled one.
    pub fn is_current(&self, ticket: Ticket) -> bool {
        let inner = self.lock();
        inner.generation == ticket.0 && matches!(inner.stage, Stage::Loading)
    }

    /// Drops the value or cancels the load under way, waking the waiting
    /// threads. Returns whether a load was under way.
    pub fn stop(&self) -> bool {
        let mut inner = self.lock();
        let was_loading = matches!(inner.stage, Stage::Loading);
        inner.generation += 1;
        inner.stage = Stage::Stopped;
        self.changed.notify_all();
        was_loading
    }

    /// The value, if it is there now.
    pub fn get(&self) -> Option<T> {
        match &self.lock().stage {
            Stage::Ready(value) => Some(value.clone()),
            _ => None,
        }
    }

    /// The value, waiting while it loads.
    pub fn wait(&self) -> Result<T, Unavailable> {
        let mut inner = self.lock();
        loop {
            match &inner.stage {
                Stage::Ready(value) => return Ok(value.clone()),
                Stage::Failed => return Err(Unavailable::Failed),
                Stage::Stopped => return Err(Unavailable::Stopped),
                Stage::Loading => {}
            }
            inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use super::*;

    /// Runs `wait` on another thread and checks it is still waiting a moment later.
    fn waiter(slot: &Arc<LoadSlot<u32>>) -> thread::JoinHandle<Result<u32, Unavailable>> {
        let handle = {
            let slot = slot.clone();
            thread::spawn(move || slot.wait())
        };
        thread::sleep(Duration::from_millis(50));
        assert!(!handle.is_finished(), "wait returned while loading");
        handle
    }

    #[test]
    fn a_waiter_gets_the_value_once_loaded() {
        let slot = Arc::new(LoadSlot::default());
        assert_eq!(slot.wait(), Err(Unavailable::Stopped));
        let ticket = slot.begin();
        let waiting = waiter(&slot);
        assert!(slot.complete(ticket, Some(7)));
        assert_eq!(waiting.join().unwrap(), Ok(7));
        assert_eq!(slot.get(), Some(7));
    }

    #[test]
    fn a_failed_load_lets_waiters_go() {
        let slot = Arc::new(LoadSlot::<u32>::default());
        let ticket = slot.begin();
        let waiting = waiter(&slot);
        assert!(slot.complete(ticket, None));
        assert_eq!(waiting.join().unwrap(), Err(Unavailable::Failed));
    }

    #[test]
    fn a_cancelled_load_cannot_complete() {
        let slot = Arc::new(LoadSlot::default());
        let old = slot.begin();
        let waiting = waiter(&slot);
        assert!(slot.stop(), "a load was under way");
        assert_eq!(waiting.join().unwrap(), Err(Unavailable::Stopped));
        assert!(!slot.is_current(old));
        assert!(!slot.complete(old, Some(1)));
        assert_eq!(slot.get(), None);

        // A new load is not completed by the old one's ticket either.
        let new = slot.begin();
        assert!(!slot.complete(old, Some(1)));
        assert!(slot.is_current(new));
        assert!(slot.complete(new, Some(2)));
        assert_eq!(slot.get(), Some(2));
        assert!(!slot.stop(), "nothing was loading");
    }
}
