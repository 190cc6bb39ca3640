//! The OpenAPI (Swagger 2.0, like ARM's own specs) document of exactly what this API serves, kept in the
//! repository as `openapi.json` and served at `GET /openapi.json` without authentication.

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("../openapi.json");

pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
