// SPDX-License-Identifier: MPL-2.0
//! `radio-embed serve`: a web page over an index, and the JSON API it uses.
//!
//! The page and its script are compiled into the binary (no CDN: it works
//! offline). The server reads the index only; it opens no file but the index
//! and the local video files the index names as sources, and only by their
//! number in the index's list of sources, never by a path from a request. It
//! listens on loopback unless told otherwise.

mod api;
mod media;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::routing::{get, post};
use clap::Args;
use gstradio::index;
use gstradio::text::DEFAULT_TEXT_MODEL;

use crate::video_index::init;

/// The address `serve` listens on unless told otherwise: loopback only.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The largest query image `serve` takes, in MiB.
const DEFAULT_MAX_UPLOAD_MIB: usize = 16;

/// `radio-embed serve`.
#[derive(Debug, Args)]
pub struct Serve {
    /// Index file made by `radio-embed index`.
    #[arg(long)]
    db: PathBuf,
    /// Address to listen on; anything but loopback lets other machines query
    /// the index and play its videos.
    #[arg(long, default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// The SigLIP text model for text queries (indexes built with --adaptor
    /// siglip2-g): a folder or a repo id in the Hugging Face cache.
    #[arg(long, default_value = DEFAULT_TEXT_MODEL)]
    text_model: String,
    /// The largest query image accepted, in MiB (larger ones get 413).
    #[arg(long, default_value_t = DEFAULT_MAX_UPLOAD_MIB)]
    max_upload_mib: usize,
}

/// What the handlers share.
struct App {
    db: PathBuf,
    text_model: String,
    /// The largest query image, in bytes.
    max_upload: usize,
    /// The text tower, loaded at the first text query.
    text: std::sync::Mutex<Option<Arc<gstradio::text::TextEncoder>>>,
}

impl Serve {
    /// Serves the page and the API until interrupted.
    pub fn run(self) -> anyhow::Result<()> {
        init()?;
        // Each query runs a pipeline of its own; the weights load once.
        let _keep = gstradio::model_store::keep_loaded();
        // Refused at once rather than at the first query: a file that is not an index.
        let settings = index::read_settings(&self.db)?;
        let app = Arc::new(App {
            db: self.db.clone(),
            text_model: self.text_model.clone(),
            max_upload: self.max_upload_mib << 20,
            text: Default::default(),
        });
        let router = router(app);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(self.addr)
                .await
                .with_context(|| format!("cannot listen on {}", self.addr))?;
            let addr = listener.local_addr()?;
            if !addr.ip().is_loopback() {
                eprintln!(
                    "radio-embed: listening on {addr}, beyond loopback: whoever reaches it can \
                     query the index and play its videos"
                );
            }
            // The first line says where: tests and scripts read it.
            println!(
                "serving {} ({}, {} rows) on http://{addr}/",
                self.db.display(),
                settings.model,
                index::count_rows(&self.db, None)?
            );
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("the server stopped")
        })
    }
}

fn router(app: Arc<App>) -> Router {
    let asset = |kind: &'static str, body: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, kind)], body) })
    };
    Router::new()
        .route(
            "/",
            asset("text/html; charset=utf-8", include_str!("page/index.html")),
        )
        .route(
            "/app.js",
            asset(
                "text/javascript; charset=utf-8",
                include_str!("page/app.js"),
            ),
        )
        .route(
            "/style.css",
            asset("text/css; charset=utf-8", include_str!("page/style.css")),
        )
        .route("/api/info", get(api::info))
        .route("/api/search", post(api::search_image).get(api::search_text))
        .route("/api/similar", get(api::similar))
        .route("/api/thumbnail", get(api::thumbnail))
        .route("/media/{id}", get(media::serve))
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: Serve,
    }

    #[test]
    fn serve_listens_on_loopback_unless_told_otherwise() {
        let cli = Cli::try_parse_from(["serve", "--db", "x.sqlite"]).unwrap();
        assert!(cli.serve.addr.ip().is_loopback());
        assert_eq!(cli.serve.addr.port(), 8080);
        assert_eq!(cli.serve.max_upload_mib, 16);
        let cli =
            Cli::try_parse_from(["serve", "--db", "x.sqlite", "--addr", "0.0.0.0:80"]).unwrap();
        assert!(!cli.serve.addr.ip().is_loopback());
    }
}
