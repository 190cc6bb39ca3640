//! One request's way in: Bearer auth, api-version, body parsing, then the ARM path to its handler.

use crate::{arm_error, json, Api};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct Handler {
    pub api: Arc<Api>,
    pub version: String,
}

pub(crate) fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

pub(crate) fn not_found(message: &str) -> Response {
    arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", message, None)
}

pub(crate) fn sql_err(e: tsql::SqlError) -> Response {
    let code = match e.number {
        15151 | 911 => "ResourceNotFound",
        15208 => "InvalidPublicBlob",
        15232 => "CertificateAlreadyExists",
        _ => "BadRequest",
    };
    let status = match code {
        "ResourceNotFound" => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    arm_error(
        status,
        code,
        &format!("{} (Msg {})", e.message, e.number),
        None,
    )
}

/// `properties.<name>` as a string (keys already lower-cased).
pub(crate) fn str_prop<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get("properties")
        .and_then(|p| p.get(name))
        .and_then(|v| v.as_str())
}

/// A top-level field of an action's body (failover, setRole); also accepted under "properties".
pub(crate) fn action_prop<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(|v| v.as_str())
        .or_else(|| str_prop(body, name))
}

fn no_route(method: &Method, uri: &Uri) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("No route for {method} {}.", uri.path()),
        None,
    )
}

pub(crate) async fn dispatch(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    // Bearer auth first, as ARM does: nothing below runs for an unauthenticated request.
    if let Err(r) = api.auth.check(&headers) {
        return r;
    }
    let version = q
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.clone());
    let Some(version) = version else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
            None,
        );
    };
    if !crate::API_VERSIONS.contains(&version.as_str()) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                crate::API_VERSIONS.join(",")
            ),
            None,
        );
    }
    let segs: Vec<String> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        match json::parse_lenient(&body) {
            Ok(v) => json::lowercase_keys(v),
            Err(e) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    &format!("The request content was invalid and could not be deserialized: {e}"),
                    None,
                )
            }
        }
    };
    let h = Handler {
        api: api.clone(),
        version,
    };
    let mine = |sub: &str, rg: Option<&str>| {
        sub.eq_ignore_ascii_case(&api.subscription)
            && rg.is_none_or(|rg| rg.eq_ignore_ascii_case(&api.resource_group))
    };
    match (&method, l.as_slice()) {
        (
            &Method::GET,
            ["subscriptions", sub, "providers", "microsoft.sql", "managedinstances"],
        ) => h.list_instances(mine(sub, None)),
        (
            &Method::GET,
            ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.sql", "managedinstances"],
        ) => h.list_instances(mine(sub, Some(rg))),
        (
            &Method::GET,
            ["subscriptions", sub, "providers", "microsoft.sql", "locations", _, "operationresults", id],
        ) if mine(sub, None) => h.operation(id),
        (
            m,
            ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.sql", "managedinstances", mi, rest @ ..],
        ) => {
            if !mine(sub, Some(rg)) || !mi.eq_ignore_ascii_case(&api.server.name) {
                return not_found(&format!(
                    "The Resource 'Microsoft.Sql/managedInstances/{}' under resource group '{}' was not found.",
                    segs[7], segs[3]
                ));
            }
            let name = segs.get(9).map(String::as_str).unwrap_or("");
            match (m, rest) {
                (&Method::GET, []) => h.instance(),
                (&Method::POST, ["hybridcertificate"]) => h.hybrid_certificate(&body),
                (&Method::GET, ["servertrustcertificates"]) => h.list_trust_certs(),
                (&Method::GET, ["servertrustcertificates", _]) => h.get_trust_cert(name),
                (&Method::PUT, ["servertrustcertificates", _]) => h.put_trust_cert(name, &body),
                (&Method::DELETE, ["servertrustcertificates", _]) => h.delete_trust_cert(name),
                (&Method::GET, ["endpointcertificates"]) => h.endpoint_certs(None),
                (&Method::GET, ["endpointcertificates", t]) => h.endpoint_certs(Some(t)),
                (&Method::GET, ["distributedavailabilitygroups"]) => h.list_dags(),
                (&Method::GET, ["distributedavailabilitygroups", _]) => h.get_dag(name),
                (&Method::PUT, ["distributedavailabilitygroups", _]) => h.put_dag(name, &body),
                (&Method::PATCH, ["distributedavailabilitygroups", _]) => h.patch_dag(name, &body),
                (&Method::POST, ["distributedavailabilitygroups", _, "failover"]) => {
                    h.failover(name, &body)
                }
                (&Method::POST, ["distributedavailabilitygroups", _, "setrole"]) => {
                    h.set_role(name, &body)
                }
                (&Method::DELETE, ["distributedavailabilitygroups", _]) => h.delete_dag(name),
                _ => no_route(&method, &uri),
            }
        }
        _ => no_route(&method, &uri),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(x) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
