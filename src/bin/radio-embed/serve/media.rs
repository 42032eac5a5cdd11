// SPDX-License-Identifier: MPL-2.0
//! `/media/{id}`: the index's `id`-th source (in `/api/info`'s order), when it
//! is a local file, with HTTP range requests so the page's video element can
//! seek. The file is found from the index, never from the request: any other
//! path is a 404.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gstradio::index;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::App;

/// The local file a source names, if the page may play it: a `file://` URI
/// of a regular file that exists.
pub(super) fn playable(source: &str) -> Option<PathBuf> {
    let (path, _) = glib::filename_from_uri(source).ok()?;
    path.is_file().then_some(path)
}

/// `GET /media/{id}`.
pub(super) async fn serve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let not_found = |why: &str| (StatusCode::NOT_FOUND, why.to_string()).into_response();
    let Ok(id) = id.parse::<usize>() else {
        return not_found("no such source");
    };
    let db = app.db.clone();
    let found = tokio::task::spawn_blocking(move || index::sources(&db).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|sources| sources);
    let source = match found {
        Ok(sources) => sources.into_iter().nth(id),
        Err(err) => return (StatusCode::INTERNAL_SERVER_ERROR, err).into_response(),
    };
    let Some(source) = source else {
        return not_found("no such source");
    };
    let Some(path) = playable(&source) else {
        return (
            StatusCode::FORBIDDEN,
            format!("{source} is not a local file this server may play"),
        )
            .into_response();
    };
    match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}
