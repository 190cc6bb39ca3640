//! The managed instance's management API: ARM-shaped REST paths under
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}`, with ARM's
//! conventions (api-version, Bearer auth, the error envelope, case-insensitive and lenient JSON, long-running
//! operations). It drives the same engine the T-SQL surface drives: the hybrid certificate becomes a trusted
//! certificate, and a PUT of a distributed availability group makes the managed instance join it.
//!
//! Modules: `routes` (auth, api-version, path dispatch), `auth` (static and signed Bearer tokens), `tls` (HTTPS
//! with the instance's certificate), `openapi` (the served document), `instance`, `certs`, `dags` (resources).

// Handlers answer errors as ready-made ARM responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod auth;
mod certs;
mod dags;
mod instance;
pub mod json;
pub mod openapi;
mod routes;
pub mod tls;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub use auth::Auth;

/// api-versions this API answers (the seed uses 2020-11-01-preview and 2021-05-01-preview).
pub const API_VERSIONS: &[&str] = &[
    "2020-11-01-preview",
    "2021-05-01-preview",
    "2021-08-01-preview",
    "2021-11-01",
    "2022-05-01-preview",
    "2022-08-01-preview",
    "2023-05-01-preview",
    "2023-08-01",
    "2023-08-01-preview",
    "2024-05-01-preview",
];

pub struct Api {
    pub server: Arc<sqlexec::Server>,
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub auth: Auth,
    /// How this managed instance authenticates on the mirroring transport.
    pub settings: hadr::transport::EndpointSettings,
    pub runtime: tokio::runtime::Handle,
    ops: Mutex<HashMap<String, dags::Operation>>,
}

impl Api {
    /// An API accepting only the static token `token`.
    pub fn new(
        server: Arc<sqlexec::Server>,
        subscription: &str,
        resource_group: &str,
        token: &str,
        settings: hadr::transport::EndpointSettings,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Api> {
        let auth = Auth::new(Some(token.to_string()), None);
        Self::with_auth(
            server,
            subscription,
            resource_group,
            auth,
            settings,
            runtime,
        )
    }

    pub fn with_auth(
        server: Arc<sqlexec::Server>,
        subscription: &str,
        resource_group: &str,
        auth: Auth,
        settings: hadr::transport::EndpointSettings,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Api> {
        Arc::new(Api {
            server,
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            location: "local".into(),
            auth,
            settings,
            runtime,
            ops: Mutex::new(HashMap::new()),
        })
    }

    fn mi_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Sql/managedInstances/{}",
            self.subscription, self.resource_group, self.server.name
        )
    }
}

/// The ARM error envelope.
pub fn arm_error(status: StatusCode, code: &str, message: &str, target: Option<&str>) -> Response {
    let mut error = json!({"code": code, "message": message, "details": []});
    if let Some(t) = target {
        error["target"] = json!(t);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .fallback(any(routes::dispatch))
        .with_state(api)
}

/// Serve plain HTTP until `shutdown` completes (loopback only: the caller checks).
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The managed instance's identity on the mirroring transport: its CA and a current endpoint certificate for
/// its FQDN (issued, or renewed before expiry), presented by every link it joins.
pub fn managed_settings(
    server: &Arc<sqlexec::Server>,
) -> Result<hadr::transport::EndpointSettings, String> {
    let store = trust::TrustStore::open(&server.inst.master(), server.inst.data_dir())
        .map_err(|e| e.message)?;
    store
        .ensure_managed_identity(
            &server.inst.master(),
            &server.host,
            trust::now_utc(),
            chrono::Duration::days(365),
            chrono::Duration::days(30),
        )
        .map_err(|e| e.message)?;
    Ok(hadr::transport::EndpointSettings::new(
        server.host.clone(),
        hadr::transport::Role::ManagedInstance,
        Arc::new(hadr::transport::StoreTrust {
            db_path: server.inst.data_dir().join("master.db"),
            store: Arc::new(store),
            identity: hadr::transport::IdentitySource::InstanceEndpoint {
                fqdn: server.host.clone(),
            },
        }),
    ))
}
