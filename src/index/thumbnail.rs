// SPDX-License-Identifier: MPL-2.0
//! A row's JPEG thumbnail, made only for rows the index keeps.
//!
//! Encoding a thumbnail costs more than storing a row, and with near-duplicate
//! suppression most frames of a fixed camera are merged into an earlier row.
//! So a row carries a thumbnail *to be made*: the writer starts it when it
//! keeps the row (the encoder works on another thread meanwhile) and waits for
//! it only when it writes the row out, a transaction later.

use std::fmt;
use std::sync::mpsc::Receiver;

/// A row's thumbnail: a JPEG, or the means to make one.
pub struct Thumbnail(Stage);

enum Stage {
    /// Not started: starts an encoder whose JPEG comes on the channel (a
    /// channel closed without one: no thumbnail).
    Deferred(Box<dyn FnOnce() -> Receiver<Vec<u8>> + Send>),
    /// Being encoded.
    Encoding(Receiver<Vec<u8>>),
    /// Encoded, or given up.
    Done(Option<Vec<u8>>),
}

impl Thumbnail {
    /// An encoded JPEG.
    pub fn jpeg(bytes: Vec<u8>) -> Self {
        Self(Stage::Done(Some(bytes)))
    }

    /// A thumbnail that `start` makes if the row is kept; `start` hands the
    /// work to another thread and returns the channel its JPEG will come on.
    /// A row that is not kept drops `start` uncalled.
    pub fn deferred(start: impl FnOnce() -> Receiver<Vec<u8>> + Send + 'static) -> Self {
        Self(Stage::Deferred(Box::new(start)))
    }

    /// Starts making the thumbnail, if it is not started yet.
    pub(super) fn start(&mut self) {
        self.0 = match std::mem::replace(&mut self.0, Stage::Done(None)) {
            Stage::Deferred(start) => Stage::Encoding(start()),
            stage => stage,
        };
    }

    /// Waits for the JPEG (starting it if needed) and returns it; `None` when
    /// the encoder gave none.
    pub(super) fn wait(&mut self) -> Option<&[u8]> {
        self.start();
        if let Stage::Encoding(jpeg) = &self.0 {
            self.0 = Stage::Done(jpeg.recv().ok());
        }
        self.bytes()
    }

    /// The JPEG, if it is encoded already.
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Stage::Done(jpeg) => jpeg.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Stage::Deferred(_) => f.write_str("Thumbnail(deferred)"),
            Stage::Encoding(_) => f.write_str("Thumbnail(encoding)"),
            Stage::Done(jpeg) => {
                write!(f, "Thumbnail({} bytes)", jpeg.as_ref().map_or(0, Vec::len))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_thumbnail_starts_once_and_yields_its_jpeg() {
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = started.clone();
        let mut t = Thumbnail::deferred(move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            std::thread::spawn(move || tx.send(vec![0xff, 0xd8]).unwrap());
            rx
        });
        assert_eq!(t.bytes(), None);
        t.start();
        t.start();
        assert_eq!(t.wait(), Some(&[0xff, 0xd8][..]));
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn an_encoder_that_gives_up_leaves_no_thumbnail() {
        let mut t = Thumbnail::deferred(|| std::sync::mpsc::sync_channel(1).1);
        assert_eq!(t.wait(), None);
        assert_eq!(format!("{t:?}"), "Thumbnail(0 bytes)");
    }
}
