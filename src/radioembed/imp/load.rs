// SPDX-License-Identifier: MPL-2.0
//! Loading the model in READY→PAUSED: inside the state change (`async=false`), or
//! on a thread of its own while the state change returns ASYNC (the default), the
//! way a sink prerolls: ASYNC_START now, then the state committed and ASYNC_DONE
//! once the model is there, or an error and the state change aborted. A state
//! change down meanwhile cancels the load: it returns at once, and the load's
//! thread finishes on its own and throws its result away.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::error::error_message;
use super::super::load_slot::Ticket;
use super::{CAT, RadioEmbed, Settings, State, lock};
use crate::engine::{Engine, SharedBatcher};
use crate::model::CpuMatmul;
use crate::model_store::{
    AdaptorRequest, DownloadProgress, adaptor_checkpoint, locate, shared_model,
};
use crate::preprocess::Preprocessor;

/// What a load makes: the model with this stream's options, and the
/// preprocessor for its device.
type Loaded = (Arc<Engine>, Preprocessor);

/// GStreamer's state lock of an element (`GST_STATE_LOCK`), held by a load that
/// ends on its own thread while it commits the element's state, so that it
/// cannot interleave with a `set_state` from the application.
struct StateLock<'a>(&'a gst::Element);

impl<'a> StateLock<'a> {
    fn new(element: &'a gst::Element) -> Self {
        // SAFETY: `state_lock` is the element's GRecMutex, initialised with the
        // element and alive as long as the reference we hold; it is reached
        // through a raw pointer (no Rust reference to memory other threads lock).
        unsafe { glib::ffi::g_rec_mutex_lock(state_lock(element)) };
        Self(element)
    }
}

/// The element's `GST_STATE_LOCK`.
fn state_lock(element: &gst::Element) -> *mut glib::ffi::GRecMutex {
    // SAFETY: a field address of the live GstElement, no reference made.
    unsafe { std::ptr::addr_of_mut!((*element.as_ptr()).state_lock) }
}

impl Drop for StateLock<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by this thread in `new`.
        unsafe { glib::ffi::g_rec_mutex_unlock(state_lock(self.0)) };
    }
}

impl RadioEmbed {
    /// READY→PAUSED: loads the model, or starts loading it on its own thread
    /// (returns `Async`; the caller posts ASYNC_START once the pads are active).
    /// Errors are on the bus when this returns `Err`.
    pub(super) fn start_loading(
        &self,
        settings: Settings,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let ticket = self.engine.begin();
        self.post_progress(
            gst::ProgressType::Start,
            &format!("Loading model {}", settings.model),
            None,
        );
        if !settings.async_load {
            return match self.load(&settings) {
                Ok(loaded) => {
                    self.install(ticket, loaded, &settings.model);
                    Ok(gst::StateChangeSuccess::Success)
                }
                Err(message) => {
                    self.fail(ticket, message, &settings.model);
                    Err(gst::StateChangeError)
                }
            };
        }
        let model = settings.model.clone();
        let element = self.obj().clone();
        let spawned = std::thread::Builder::new()
            .name("radioembed-load".into())
            .spawn(move || {
                let imp = element.imp();
                let loaded = imp.load(&settings);
                imp.finish_async(ticket, loaded, &settings.model);
            });
        if let Err(err) = spawned {
            let message = gst::error_msg!(
                gst::CoreError::Thread,
                ("cannot start the thread that loads the model: {err}")
            );
            self.fail(ticket, message, &model);
            return Err(gst::StateChangeError);
        }
        Ok(gst::StateChangeSuccess::Async)
    }

    /// PAUSED→READY: drops the model, or cancels its load and says so.
    pub(super) fn stop_loading(&self) {
        if self.engine.stop() {
            let model = lock(&self.settings).model.clone();
            gst::info!(CAT, imp = self, "loading {model} cancelled");
            self.post_progress(
                gst::ProgressType::Canceled,
                &format!("Loading model {model} cancelled"),
                None,
            );
        }
        *lock(&self.state) = None;
    }

    /// The end of a load on its own thread: commits the state change it left
    /// pending, unless a state change down cancelled it meanwhile.
    fn finish_async(&self, ticket: Ticket, loaded: Result<Loaded, gst::ErrorMessage>, model: &str) {
        let element = self.obj();
        let committed = {
            let _state_lock = StateLock::new(element.upcast_ref());
            if !self.engine.is_current(ticket) {
                gst::debug!(CAT, imp = self, "dropping the load of a cancelled start");
                return;
            }
            match loaded {
                Ok(loaded) => {
                    self.install(ticket, loaded, model);
                    element.continue_state(gst::StateChangeReturn::Success)
                }
                Err(message) => {
                    self.fail(ticket, message, model);
                    element.abort_state();
                    return;
                }
            }
        };
        match committed {
            Ok(_) => {
                // No running time: the element has no clock to wait on.
                let done = gst::message::AsyncDone::builder().src(&*element).build();
                let _ = element.post_message(done);
            }
            Err(_) => gst::warning!(CAT, imp = self, "the loaded model's state did not commit"),
        }
    }

    /// Makes a successful load the element's streaming state.
    fn install(&self, ticket: Ticket, (engine, preprocessor): Loaded, model: &str) {
        *lock(&self.state) = Some(State {
            preprocessor: Some(preprocessor),
            format: None,
        });
        *lock(&self.stats) = Default::default();
        self.engine.complete(ticket, Some(engine));
        self.post_progress(
            gst::ProgressType::Complete,
            &format!("Model {model} loaded"),
            None,
        );
    }

    /// Reports a failed load and lets a caps event waiting for it go.
    fn fail(&self, ticket: Ticket, message: gst::ErrorMessage, model: &str) {
        self.post_progress(
            gst::ProgressType::Error,
            &format!("Model {model} could not be loaded"),
            None,
        );
        self.post_error_message(message);
        self.engine.complete(ticket, None);
    }

    /// Posts a GST_MESSAGE_PROGRESS with code `model`; `percent` (of a
    /// download) goes into the message's structure too.
    fn post_progress(&self, type_: gst::ProgressType, text: &str, percent: Option<u32>) {
        let mut builder = gst::message::Progress::builder(type_, "model", text).src(&*self.obj());
        if let Some(percent) = percent {
            builder = builder.other_field("percent", percent);
        }
        let _ = self.obj().post_message(builder.build());
    }

    /// Reports a download as CONTINUE progress messages.
    fn report_download(&self, p: DownloadProgress) {
        self.post_progress(
            gst::ProgressType::Continue,
            &format!("Downloading {}: {} %", p.file, p.percent),
            Some(p.percent),
        );
    }

    /// Finds (or downloads) and loads (or shares) the model, and makes the
    /// engine and preprocessor of this stream.
    fn load(&self, settings: &Settings) -> Result<Loaded, gst::ErrorMessage> {
        let dir = locate(&settings.model, &mut |p| self.report_download(p))
            .map_err(|e| error_message(&e.into(), None))?;
        let device = settings.device();
        let dtype = settings.dtype(&device);
        gst::info!(
            CAT,
            imp = self,
            "loading {} on {device} as {dtype:?}",
            dir.display()
        );
        let adaptor = match &settings.adaptor {
            None => None,
            Some(name) => Some(AdaptorRequest {
                name: name.clone(),
                checkpoint: match &settings.adaptor_checkpoint {
                    Some(path) => path.into(),
                    None => adaptor_checkpoint(&dir, &mut |p| self.report_download(p))
                        .map_err(|e| error_message(&e.into(), None))?,
                },
            }),
        };
        let model = shared_model(&dir, &device, dtype, adaptor.as_ref()).map_err(|e| {
            let context = format!("Failed to load model {}", settings.model);
            error_message(&e.into(), Some(&context))
        })?;
        if model.device().is_cpu()
            && let Ok(matmul) = CpuMatmul::current()
        {
            gst::info!(CAT, imp = self, "CPU matrix products: {matmul}");
        }
        let shared = if settings.model_instance_id.is_empty() {
            None
        } else {
            let joined = SharedBatcher::join(
                &settings.model_instance_id,
                &model,
                settings.batch_size as usize,
            );
            Some(joined.map_err(|err| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ("cannot start the thread of the shared model instance: {err}")
                )
            })?)
        };
        let source_id = settings
            .source_id
            .clone()
            .unwrap_or_else(|| self.obj().name().to_string());
        let engine = Engine::new(model, settings.engine_options(source_id), shared)
            .map_err(|e| error_message(&e, None))?;
        let preprocessor = engine
            .preprocessor()
            .map_err(|e| error_message(&e.into(), None))?;
        Ok((Arc::new(engine), preprocessor))
    }
}
