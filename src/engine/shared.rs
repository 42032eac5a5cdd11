// SPDX-License-Identifier: MPL-2.0
//! Many streams, one model: streams that share a model instance hand their
//! preprocessed frames to one [`SharedBatcher`], whose threads run them through
//! the model together, as DeepStream's `nvstreammux` + `nvinfer` do.
//!
//! Each stream has at most one request pending (its caller waits for the
//! answer). A forward fills up to the largest batch size of the members with
//! frames of the oldest request's input size, **round robin**: one frame of each
//! waiting stream in turn, oldest request first, so a stream that sends many
//! frames cannot starve one that sends few, and a request may be answered
//! over several forwards. A forward runs when the oldest request's input size
//! has a full batch, when every active stream has a request in, or when a
//! request reaches its deadline (its stream's `batch-timeout`). A stream that
//! is cancelled (flushing, stopping) or leaves takes its requests out; the
//! others' requests are not disturbed. Two forward threads serve a CPU model,
//! one a GPU model.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Instant;

use candle_core::Tensor;

use crate::model::{AdaptorOutput, RadioModel, RadioOutput};

/// Why a shared forward gave no output.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SharedError {
    /// The stream was cancelled (flushing or stopping) before its answer came.
    #[error("the request was cancelled")]
    Cancelled,
    /// The forward of the batch this request was in failed.
    #[error("{0}")]
    Forward(String),
}

/// What one stream gets back from a shared forward.
#[derive(Debug)]
pub struct SharedOutput {
    /// The outputs of the request's own frames.
    pub output: RadioOutput,
    /// The fewest streams that shared a forward with this request's frames
    /// (1: some of them ran alone).
    pub batch_streams: usize,
}

/// One stream's frames waiting for a forward.
struct Request {
    id: u64,
    stream: u64,
    input: Tensor,
    frames: usize,
    /// (height, width): only requests of one input size share a forward.
    size: (usize, usize),
    deadline: Option<Instant>,
    /// Frames handed to forwards so far, and the outputs back from them, by
    /// first frame (forwards may end out of order).
    taken: usize,
    done: Vec<(usize, RadioOutput)>,
    batch_streams: usize,
}

impl Request {
    fn remaining(&self) -> usize {
        self.frames - self.taken
    }
}

/// Some consecutive frames of a request, in one forward.
struct Slice {
    request: u64,
    stream: u64,
    /// The first frame of the request in the slice.
    start: usize,
    input: Tensor,
    frames: usize,
}

/// A member stream.
#[derive(Debug, Default)]
struct Member {
    batch_size: usize,
    /// Whether the stream may still send frames: a stream at EOS, cancelled,
    /// or not started is not waited for.
    active: bool,
    cancelled: bool,
    /// The request the stream waits for.
    waiting: Option<u64>,
}

#[derive(Default)]
struct Pending {
    requests: VecDeque<Request>,
    members: HashMap<u64, Member>,
    answers: HashMap<u64, Result<SharedOutput, SharedError>>,
    next_request: u64,
    stop: bool,
    stats: InstanceStats,
}

/// What a shared model instance has run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Forwards run.
    pub forwards: u64,
    /// Frames in them, all streams together.
    pub frames: u64,
}

impl Pending {
    fn max_batch(&self) -> usize {
        self.members
            .values()
            .map(|m| m.batch_size)
            .max()
            .unwrap_or(1)
    }

    /// The slices of the next forward if it is due now, else when it will
    /// be (`None`: when something changes).
    fn due(&mut self, now: Instant) -> Result<Vec<Slice>, Option<Instant>> {
        // Frames already in a forward (of another worker) are not waited for.
        let Some(oldest) = self.requests.iter().find(|r| r.remaining() > 0) else {
            return Err(None);
        };
        let size = oldest.size;
        let max = self.max_batch();
        let same_size = |r: &Request| r.size == size;
        let waiting: usize = self
            .requests
            .iter()
            .filter(|r| same_size(r))
            .map(Request::remaining)
            .sum();
        // Each stream has at most one request in: when every active stream
        // has one, no more frames can come.
        let active = self.members.values().filter(|m| m.active).count();
        let deadline = self
            .requests
            .iter()
            .filter(|r| r.remaining() > 0)
            .filter_map(|r| r.deadline)
            .min();
        let full = waiting >= max || self.requests.len() >= active;
        if !full && deadline.is_none_or(|d| d > now) {
            return Err(deadline);
        }
        // Round robin: one frame of each request in turn, oldest first.
        let mut counts = vec![0; self.requests.len()];
        let mut taken = 0;
        while taken < max.min(waiting) {
            for (count, r) in counts.iter_mut().zip(&self.requests) {
                if taken < max && same_size(r) && *count < r.remaining() {
                    *count += 1;
                    taken += 1;
                }
            }
        }
        let slices = self
            .requests
            .iter_mut()
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .map(|(r, count)| {
                let start = r.taken;
                r.taken += count;
                r.input.narrow(0, start, count).map(|input| Slice {
                    request: r.id,
                    stream: r.stream,
                    start,
                    input,
                    frames: count,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>();
        // Narrowing the batch dimension of a 4-d tensor within range cannot fail.
        Ok(slices.unwrap_or_default())
    }

    /// Hands the outputs of a forward (`None`: it failed with `error`) to its
    /// requests, answering those that are complete (or failed) and whose
    /// streams still wait for them.
    fn settle(
        &mut self,
        slices: &[Slice],
        outputs: Result<Vec<RadioOutput>, SharedError>,
        streams: usize,
    ) {
        let outputs = match outputs {
            Ok(outputs) => outputs.into_iter().map(Ok).collect(),
            Err(err) => vec![Err(err); slices.len()],
        };
        for (slice, output) in slices.iter().zip(outputs) {
            let Some(at) = self.requests.iter().position(|r| r.id == slice.request) else {
                continue; // cancelled meanwhile
            };
            let request = &mut self.requests[at];
            request.batch_streams = request.batch_streams.min(streams);
            let answer = match output {
                Ok(output) => {
                    request.done.push((slice.start, output));
                    if done_frames(&request.done) < request.frames {
                        continue;
                    }
                    request.done.sort_by_key(|(start, _)| *start);
                    concat(&request.done).map(|output| SharedOutput {
                        output,
                        batch_streams: request.batch_streams,
                    })
                }
                Err(err) => Err(err),
            };
            let Some(request) = self.requests.remove(at) else {
                continue;
            };
            if self
                .members
                .get(&request.stream)
                .is_some_and(|m| m.waiting == Some(request.id))
            {
                self.answers.insert(request.id, answer);
            }
        }
    }
}

/// Frames in the outputs so far.
fn done_frames(done: &[(usize, RadioOutput)]) -> usize {
    done.iter()
        .map(|(_, o)| o.summary.dim(0).unwrap_or(0))
        .sum()
}

/// The outputs of a request's slices, in order, as one.
fn concat(parts: &[(usize, RadioOutput)]) -> Result<RadioOutput, SharedError> {
    let cat = |f: fn(&RadioOutput) -> &Tensor| {
        let tensors: Vec<&Tensor> = parts.iter().map(|(_, o)| f(o)).collect();
        Tensor::cat(&tensors, 0).map_err(|e| SharedError::Forward(e.to_string()))
    };
    let adaptor_count = parts.first().map_or(0, |(_, o)| o.adaptors.len());
    let adaptors = (0..adaptor_count)
        .map(|i| {
            let cat = |tensors: Vec<&Tensor>| {
                Tensor::cat(&tensors, 0).map_err(|e| SharedError::Forward(e.to_string()))
            };
            let adaptors: Vec<&AdaptorOutput> = parts.iter().map(|(_, o)| &o.adaptors[i]).collect();
            let features: Option<Vec<&Tensor>> =
                adaptors.iter().map(|a| a.features.as_ref()).collect();
            Ok(AdaptorOutput {
                name: adaptors[0].name.clone(),
                summary: cat(adaptors.iter().map(|a| &a.summary).collect())?,
                features: features.map(cat).transpose()?,
            })
        })
        .collect::<Result<_, SharedError>>()?;
    Ok(RadioOutput {
        summary: cat(|o| &o.summary)?,
        features: cat(|o| &o.features)?,
        grid: parts.first().map_or((0, 0), |(_, o)| o.grid),
        adaptors,
    })
}

struct Inner {
    model: Arc<RadioModel>,
    pending: Mutex<Pending>,
    /// Wakes the forward thread: a request, a member change, a stop.
    work: Condvar,
    /// Wakes the streams waiting for answers.
    answered: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The forward thread: batches due requests and answers them.
    fn run(&self) {
        let mut pending = self.lock();
        loop {
            if pending.stop {
                return;
            }
            let batch = match pending.due(Instant::now()) {
                Ok(batch) => batch,
                Err(Some(deadline)) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    pending = self
                        .work
                        .wait_timeout(pending, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
                Err(None) => {
                    pending = self.work.wait(pending).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
            };
            drop(pending);
            let outputs = self.forward(&batch);
            let mut streams: Vec<u64> = batch.iter().map(|s| s.stream).collect();
            streams.sort_unstable();
            streams.dedup();
            pending = self.lock();
            pending.stats.forwards += 1;
            pending.stats.frames += batch.iter().map(|s| s.frames as u64).sum::<u64>();
            pending.settle(&batch, outputs, streams.len());
            self.answered.notify_all();
        }
    }

    /// One forward of `batch`, split back into each slice's outputs.
    fn forward(&self, batch: &[Slice]) -> Result<Vec<RadioOutput>, SharedError> {
        let error = |e: &dyn std::fmt::Display| SharedError::Forward(e.to_string());
        let inputs: Vec<&Tensor> = batch.iter().map(|s| &s.input).collect();
        let x = Tensor::cat(&inputs, 0).map_err(|e| error(&e))?;
        let output = self.model.forward_normalized(&x).map_err(|e| error(&e))?;
        let mut start = 0;
        batch
            .iter()
            .map(|s| {
                start += s.frames;
                output
                    .rows(start - s.frames, s.frames)
                    .map_err(|e| error(&e))
            })
            .collect()
    }
}

/// A model shared by member streams, with the thread that runs their batches.
/// The thread ends when the last member leaves.
pub struct SharedBatcher {
    inner: Arc<Inner>,
}

impl Drop for SharedBatcher {
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.work.notify_all();
    }
}

/// The live batchers by (instance id, model).
type Registry = HashMap<(String, usize), Weak<SharedBatcher>>;
static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);
static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

impl SharedBatcher {
    /// Joins the batcher of `instance_id` for `model` (one is started for the
    /// first member) as a stream of up to `batch_size` frames a request.
    pub fn join(
        instance_id: &str,
        model: &Arc<RadioModel>,
        batch_size: usize,
    ) -> std::io::Result<SharedStream> {
        let key = (instance_id.to_string(), Arc::as_ptr(model) as usize);
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry.retain(|_, batcher| batcher.strong_count() > 0);
        let batcher = match registry.get(&key).and_then(Weak::upgrade) {
            Some(batcher) => batcher,
            None => {
                let batcher = Arc::new(Self::start(model.clone())?);
                registry.insert(key, Arc::downgrade(&batcher));
                batcher
            }
        };
        drop(registry);
        let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        batcher.inner.lock().members.insert(
            stream,
            Member {
                batch_size: batch_size.max(1),
                ..Member::default()
            },
        );
        Ok(SharedStream { batcher, stream })
    }

    /// Starts the forward threads: two on the CPU, so that one forward's
    /// single-threaded parts (norms, softmax, the hand-over to the streams)
    /// overlap another's matrix products; one on a GPU, whose forwards
    /// already queue on one device.
    fn start(model: Arc<RadioModel>) -> std::io::Result<Self> {
        let workers = if model.device().is_cpu() { 2 } else { 1 };
        let inner = Arc::new(Inner {
            model,
            pending: Mutex::new(Pending::default()),
            work: Condvar::new(),
            answered: Condvar::new(),
        });
        let batcher = Self { inner };
        for _ in 0..workers {
            let worker = batcher.inner.clone();
            // On failure the batcher drops, which stops the threads started.
            std::thread::Builder::new()
                .name("radioembed-shared".into())
                .spawn(move || worker.run())?;
        }
        Ok(batcher)
    }
}

/// One stream's membership of a [`SharedBatcher`]; dropping it leaves.
pub struct SharedStream {
    batcher: Arc<SharedBatcher>,
    stream: u64,
}

impl SharedStream {
    fn inner(&self) -> &Inner {
        &self.batcher.inner
    }

    fn update(&self, f: impl FnOnce(&mut Member)) {
        let mut pending = self.inner().lock();
        if let Some(member) = pending.members.get_mut(&self.stream) {
            f(member);
        }
        drop(pending);
        self.inner().work.notify_all();
    }

    /// Runs `input`, a normalized (N, 3, H, W) batch of this stream's frames,
    /// with the other streams' frames of that size; waits no later than
    /// `deadline` for a batch to form (`None`: until one is full).
    pub fn forward(
        &self,
        input: Tensor,
        deadline: Option<Instant>,
    ) -> Result<SharedOutput, SharedError> {
        let (frames, _, height, width) = input
            .dims4()
            .map_err(|e| SharedError::Forward(e.to_string()))?;
        let inner = self.inner();
        let mut pending = inner.lock();
        let id = pending.next_request;
        let member = pending
            .members
            .get_mut(&self.stream)
            .ok_or(SharedError::Cancelled)?;
        if member.cancelled {
            return Err(SharedError::Cancelled);
        }
        member.active = true;
        member.waiting = Some(id);
        pending.next_request += 1;
        pending.requests.push_back(Request {
            id,
            stream: self.stream,
            input,
            frames,
            size: (height, width),
            deadline,
            taken: 0,
            done: Vec::new(),
            batch_streams: usize::MAX,
        });
        inner.work.notify_all();
        loop {
            if let Some(answer) = pending.answers.remove(&id) {
                if let Some(member) = pending.members.get_mut(&self.stream) {
                    member.waiting = None;
                }
                return answer;
            }
            if pending
                .members
                .get(&self.stream)
                .is_none_or(|m| m.cancelled)
            {
                return Err(SharedError::Cancelled);
            }
            pending = inner
                .answered
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Cancels (`true`: flushing, stopping) or resumes the stream. Cancelling
    /// drops its pending request and wakes its waiting [`forward`](Self::forward).
    pub fn set_cancelled(&self, cancelled: bool) {
        let mut pending = self.inner().lock();
        if let Some(member) = pending.members.get_mut(&self.stream) {
            member.cancelled = cancelled;
            member.active &= !cancelled;
            if cancelled {
                member.waiting = None;
            }
        }
        if cancelled {
            pending.requests.retain(|r| r.stream != self.stream);
        }
        drop(pending);
        self.inner().work.notify_all();
        self.inner().answered.notify_all();
    }

    /// The stream ended (EOS): the others no longer wait for its frames.
    pub fn set_idle(&self) {
        self.update(|member| member.active = false);
    }

    /// What the instance has run so far, for all its streams.
    pub fn instance_stats(&self) -> InstanceStats {
        self.inner().lock().stats
    }

    /// The most frames this stream sends in one request.
    pub fn set_batch_size(&self, batch_size: usize) {
        self.update(|member| member.batch_size = batch_size.max(1));
    }
}

impl Drop for SharedStream {
    fn drop(&mut self) {
        self.set_cancelled(true);
        self.inner().lock().members.remove(&self.stream);
        self.inner().work.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn request(id: u64, stream: u64, frames: usize, size: usize) -> Request {
        Request {
            id,
            stream,
            input: Tensor::zeros((frames, 3, size, size), DType::F32, &Device::Cpu).unwrap(),
            frames,
            size: (size, size),
            deadline: None,
            taken: 0,
            done: Vec::new(),
            batch_streams: usize::MAX,
        }
    }

    /// Members (stream, batch size), all active, each waiting for the request
    /// of the same number.
    fn pending(members: &[(u64, usize)]) -> Pending {
        let mut p = Pending::default();
        for &(stream, batch_size) in members {
            let member = Member {
                batch_size,
                active: true,
                waiting: Some(stream),
                ..Member::default()
            };
            p.members.insert(stream, member);
        }
        p
    }

    /// (request, frames) of each slice.
    fn slices(batch: &[Slice]) -> Vec<(u64, usize)> {
        batch.iter().map(|s| (s.request, s.frames)).collect()
    }

    /// Outputs for `batch` whose summary value is the slice's request id.
    fn outputs(batch: &[Slice]) -> Result<Vec<RadioOutput>, SharedError> {
        Ok(batch
            .iter()
            .map(|s| RadioOutput {
                summary: Tensor::full(s.request as f32, (s.frames, 2), &Device::Cpu).unwrap(),
                features: Tensor::zeros((s.frames, 1, 2), DType::F32, &Device::Cpu).unwrap(),
                grid: (1, 1),
                adaptors: Vec::new(),
            })
            .collect())
    }

    #[test]
    fn a_batch_waits_until_full_or_every_stream_is_in() {
        let now = Instant::now();
        let mut p = pending(&[(0, 4), (1, 4), (2, 4)]);
        p.requests.push_back(request(0, 0, 1, 16));
        p.requests.push_back(request(1, 1, 2, 16));
        assert!(matches!(p.due(now), Err(None)), "stream 2 may still send");
        p.requests.push_back(request(2, 2, 1, 16));
        assert_eq!(slices(&p.due(now).unwrap()), [(0, 1), (1, 2), (2, 1)]);
    }

    #[test]
    fn streams_take_turns_frame_by_frame_one_size_at_a_time() {
        let now = Instant::now();
        let mut p = pending(&[(0, 4), (1, 4), (2, 4)]);
        p.requests.push_back(request(0, 0, 4, 16));
        p.requests.push_back(request(1, 1, 1, 32));
        p.requests.push_back(request(2, 2, 3, 16));
        // Largest batch 4, of the oldest request's size: two frames each.
        let first = p.due(now).unwrap();
        assert_eq!(slices(&first), [(0, 2), (2, 2)]);
        p.settle(&first, outputs(&first), 2);
        assert!(p.answers.is_empty(), "both requests have frames left");
        let second = p.due(now).unwrap();
        assert_eq!(slices(&second), [(0, 2), (2, 1)]);
        p.settle(&second, outputs(&second), 2);
        let answer = p.answers.remove(&0).unwrap().unwrap();
        assert_eq!(answer.output.summary.dims(), [4, 2]);
        assert_eq!(answer.batch_streams, 2);
        assert_eq!(
            p.answers.remove(&2).unwrap().unwrap().output.summary.dims(),
            [3, 2]
        );
        // Streams 0 and 2 may send again; stream 1 waits for them or its deadline.
        assert!(matches!(p.due(now), Err(None)));
        for stream in [0, 2] {
            p.members.get_mut(&stream).unwrap().active = false;
        }
        assert_eq!(slices(&p.due(now).unwrap()), [(1, 1)]);
    }

    #[test]
    fn forwards_that_end_out_of_order_answer_in_frame_order() {
        let mut p = pending(&[(0, 2)]);
        let mut r = request(0, 0, 4, 16);
        // Frame i of the request is i: its outputs must come back as 0, 1, 2, 3.
        r.input = Tensor::arange(0f32, 4.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 1, 1, 1))
            .unwrap()
            .broadcast_as((4, 3, 16, 16))
            .unwrap()
            .contiguous()
            .unwrap();
        p.requests.push_back(r);
        let now = Instant::now();
        let first = p.due(now).unwrap();
        let second = p.due(now).unwrap();
        assert!(
            matches!(p.due(now), Err(None)),
            "every frame is in a forward"
        );
        let echo = |batch: &[Slice]| -> Result<Vec<RadioOutput>, SharedError> {
            Ok(batch
                .iter()
                .map(|s| {
                    let first_pixel = s.input.narrow(1, 0, 1).unwrap().narrow(2, 0, 1).unwrap();
                    let values = first_pixel
                        .narrow(3, 0, 1)
                        .unwrap()
                        .reshape((s.frames, 1))
                        .unwrap();
                    RadioOutput {
                        summary: values,
                        features: Tensor::zeros((s.frames, 1, 1), DType::F32, &Device::Cpu)
                            .unwrap(),
                        grid: (1, 1),
                        adaptors: Vec::new(),
                    }
                })
                .collect())
        };
        p.settle(&second, echo(&second), 1);
        p.settle(&first, echo(&first), 1);
        let answer = p.answers.remove(&0).unwrap().unwrap();
        let order: Vec<f32> = answer
            .output
            .summary
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(order, [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_failed_forward_answers_each_of_its_requests() {
        let mut p = pending(&[(0, 4), (1, 4)]);
        p.requests.push_back(request(0, 0, 1, 16));
        p.requests.push_back(request(1, 1, 1, 16));
        let batch = p.due(Instant::now()).unwrap();
        p.settle(&batch, Err(SharedError::Forward("out of memory".into())), 2);
        for id in [0, 1] {
            let answer = p.answers.remove(&id).unwrap();
            assert!(matches!(answer, Err(SharedError::Forward(m)) if m == "out of memory"));
        }
        assert!(p.requests.is_empty());
    }

    #[test]
    fn a_deadline_releases_a_partial_batch() {
        let now = Instant::now();
        let mut p = pending(&[(0, 4), (1, 4)]);
        let mut r = request(0, 0, 1, 16);
        r.deadline = Some(now + std::time::Duration::from_millis(5));
        p.requests.push_back(r);
        assert!(matches!(p.due(now), Err(Some(_))));
        let later = now + std::time::Duration::from_millis(5);
        assert_eq!(slices(&p.due(later).unwrap()), [(0, 1)]);
    }

    #[test]
    fn idle_streams_are_not_waited_for() {
        let mut p = pending(&[(0, 4), (1, 4)]);
        p.members.get_mut(&1).unwrap().active = false;
        p.requests.push_back(request(0, 0, 1, 16));
        assert_eq!(slices(&p.due(Instant::now()).unwrap()), [(0, 1)]);
    }
}
