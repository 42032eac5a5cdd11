// SPDX-License-Identifier: MPL-2.0
//! The JSON API under `/api/`: the same ranking as `radio-embed search --json`,
//! each result with the URLs of its thumbnail and, when the source is a local
//! file, of its video.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gstradio::index::{self, AdaptorVectors, SearchFilter};
use gstradio::text::TEXT_ADAPTOR;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::media::playable;
use crate::search::{self, FrameSearch, Ranked};

/// Results when a request does not say.
const DEFAULT_K: usize = 24;

/// The most results a request may ask for.
const MAX_K: usize = 1000;

/// An error as the API returns it: a status and `{"error": message}`.
pub(super) struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self(StatusCode::UNPROCESSABLE_ENTITY, format!("{err:#}"))
    }
}

impl From<index::IndexError> for ApiError {
    fn from(err: index::IndexError) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking work (GStreamer, the model, the index) off the server's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// The parameters every search takes, as `radio-embed search` takes them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchParams {
    /// Number of results (default 24).
    k: Option<usize>,
    /// One result per frame instead of moments.
    #[serde(default)]
    frames: bool,
    /// A glob over the sources.
    source: Option<String>,
    /// Stream time, seconds or HH:MM:SS[.mmm].
    after: Option<String>,
    /// Stream time, seconds or HH:MM:SS[.mmm].
    before: Option<String>,
    min_score: Option<f32>,
    /// The text of a text search.
    text: Option<String>,
}

impl SearchParams {
    fn search(&self) -> ApiResult<FrameSearch> {
        let k = self.k.unwrap_or(DEFAULT_K);
        if !(1..=MAX_K).contains(&k) {
            return Err(ApiError::bad_request(format!("k must be 1 to {MAX_K}")));
        }
        let time = |t: &Option<String>| {
            t.as_deref()
                .filter(|t| !t.is_empty())
                .map(search::stream_time)
                .transpose()
                .map_err(ApiError::bad_request)
        };
        let source = self
            .source
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(search::source_glob)
            .transpose()
            .map_err(ApiError::bad_request)?;
        Ok(FrameSearch {
            k,
            frames: self.frames,
            filter: SearchFilter {
                source,
                after_ns: time(&self.after)?,
                before_ns: time(&self.before)?,
                min_score: self.min_score,
            },
        })
    }
}

/// The results as `search --json` gives them, each with `thumbnail` and,
/// for a playable source, `media` URLs.
fn results(db: &Path, ranked: Ranked) -> ApiResult<Json<Value>> {
    let sources = index::sources(db)?;
    let rows = ranked
        .json()
        .into_iter()
        .map(|mut row| {
            let source = row["source"].as_str().unwrap_or_default().to_string();
            let frame = row["frame_index"].as_u64().unwrap_or_default();
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("source", &source)
                .append_pair("frame", &frame.to_string())
                .finish();
            row["thumbnail"] = format!("/api/thumbnail?{query}").into();
            if let Some(id) = sources.iter().position(|s| *s == source)
                && playable(&source).is_some()
            {
                row["media"] = format!("/media/{id}").into();
            }
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// `GET /api/info`: the index, its sources and what queries it takes.
pub(super) async fn info(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let db = &app.db;
        let settings = index::read_settings(db)?;
        let sources: Vec<Value> = index::sources(db)?
            .into_iter()
            .enumerate()
            .map(|(id, source)| {
                let media = playable(&source).map(|_| format!("/media/{id}"));
                json!({ "source": source, "media": media })
            })
            .collect();
        let adaptors = index::adaptor_names(db, AdaptorVectors::Frames)?;
        Ok(Json(json!({
            "db": db.display().to_string(),
            "model": settings.model,
            "input": settings.input,
            "summary_dim": settings.summary_dim,
            "rows": index::count_rows(db, None)?,
            "sources": sources,
            "text": adaptors.iter().any(|a| a == TEXT_ADAPTOR),
        })))
    })
    .await
}

/// The body of an upload of at most `limit` bytes; one that announces more is
/// refused before it is read.
async fn upload(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the query image is over {} MiB", limit >> 20),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// `POST /api/search`: the body is a query image (PNG, JPEG, ...).
pub(super) async fn search_image(
    State(app): State<Arc<App>>,
    Query(params): Query<SearchParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let body = upload(&headers, body, app.max_upload).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the body must be a query image"));
    }
    let search = params.search()?;
    blocking(move || {
        let image = QueryFile::write(&body).map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot keep the upload: {e}"),
            )
        })?;
        let query = search::embed_image(&app.db, image.path())?;
        results(&app.db, search.rank(&app.db, &query)?)
    })
    .await
}

/// `GET /api/search?text=...`: a text query (indexes with siglip2-g vectors).
pub(super) async fn search_text(
    State(app): State<Arc<App>>,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<Value>> {
    let Some(text) = params.text.clone() else {
        return Err(ApiError::bad_request("give text=... or POST a query image"));
    };
    let search = params.search()?;
    blocking(move || {
        index::require_adaptor(&app.db, TEXT_ADAPTOR, AdaptorVectors::Frames)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let encoder = {
            let mut loaded = app.text.lock().unwrap_or_else(|e| e.into_inner());
            match &*loaded {
                Some(encoder) => encoder.clone(),
                None => loaded
                    .insert(Arc::new(search::load_text_encoder(&app.text_model)?))
                    .clone(),
            }
        };
        let query = search::embed_text(&encoder, &text)?;
        results(&app.db, search.rank_text(&app.db, &query)?)
    })
    .await
}

/// A source's frame, as requests name it.
#[derive(Debug, Deserialize)]
pub(super) struct FrameParams {
    source: String,
    frame: u64,
}

/// The frame a "more like this" starts from (`source` is the filter's glob there).
#[derive(Debug, Deserialize)]
pub(super) struct LikeParams {
    like_source: String,
    like_frame: u64,
}

/// `GET /api/similar?like_source=...&like_frame=N&...`: "more like this", the
/// frame's stored summary as the query.
pub(super) async fn similar(
    State(app): State<Arc<App>>,
    Query(like): Query<LikeParams>,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<Value>> {
    let search = params.search()?;
    blocking(move || {
        let query = index::summary(&app.db, &like.like_source, like.like_frame)?
            .ok_or_else(|| ApiError::not_found("no such frame in the index"))?;
        results(&app.db, search.rank(&app.db, &query)?)
    })
    .await
}

/// `GET /api/thumbnail?source=...&frame=N`: the frame's JPEG.
pub(super) async fn thumbnail(
    State(app): State<Arc<App>>,
    Query(frame): Query<FrameParams>,
) -> ApiResult<Response> {
    blocking(move || {
        let jpeg = index::thumbnail(&app.db, &frame.source, frame.frame)?
            .ok_or_else(|| ApiError::not_found("no thumbnail for this frame"))?;
        Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            jpeg,
        )
            .into_response())
    })
    .await
}

/// An uploaded query image, as a file the query pipeline reads; removed when dropped.
struct QueryFile(std::path::PathBuf);

impl QueryFile {
    fn write(bytes: &[u8]) -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("radio-embed-query-{}-{n}", std::process::id()));
        // Never through a file someone else put there.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let this = Self(path);
        std::io::Write::write_all(&mut file, bytes)?;
        Ok(this)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for QueryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
