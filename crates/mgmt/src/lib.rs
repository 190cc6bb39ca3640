//! The managed instance's management API: ARM-shaped REST paths under
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}`, with ARM's
//! conventions (api-version, Bearer auth, the error envelope, case-insensitive and lenient JSON, long-running
//! operations). It drives the same engine the T-SQL surface drives: the hybrid certificate becomes a trusted
//! certificate, and a PUT of a distributed availability group makes the managed instance join it.

// Handlers answer errors as ready-made ARM responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod json;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

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
    /// Static token (MILINK_API_TOKEN).
    pub token: String,
    /// How this managed instance authenticates on the mirroring transport.
    pub settings: hadr::transport::EndpointSettings,
    pub runtime: tokio::runtime::Handle,
    ops: Mutex<HashMap<String, Operation>>,
}

#[derive(Clone)]
struct Operation {
    status: &'static str,
    error: Option<(String, String)>,
    dag: Option<String>,
    database: Option<String>,
    started: chrono::DateTime<chrono::Utc>,
}

impl Api {
    pub fn new(
        server: Arc<sqlexec::Server>,
        subscription: &str,
        resource_group: &str,
        token: &str,
        settings: hadr::transport::EndpointSettings,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Api> {
        Arc::new(Api {
            server,
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            location: "local".into(),
            token: token.into(),
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
    let body =
        json!({"error": {"code": code, "message": message, "target": target, "details": []}});
    (status, axum::Json(body)).into_response()
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new().fallback(any(dispatch)).with_state(api)
}

/// Serve until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn dispatch(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    // Bearer auth first, as ARM does.
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = auth.len() > 7
        && auth[..7].eq_ignore_ascii_case("bearer ")
        && auth[7..].trim() == api.token;
    if !ok {
        let mut r = arm_error(
            StatusCode::UNAUTHORIZED,
            if auth.is_empty() {
                "AuthenticationFailed"
            } else {
                "InvalidAuthenticationToken"
            },
            if auth.is_empty() {
                "Authentication failed. The 'Authorization' header is missing."
            } else {
                "The access token is invalid."
            },
            None,
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                "Bearer authorization_uri=\"milink token create\", error=\"invalid_token\"",
            ),
        );
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
    if !API_VERSIONS.contains(&version.as_str()) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                API_VERSIONS.join(",")
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
    match (method.clone(), l.as_slice()) {
        (Method::GET, ["subscriptions", _, "providers", "microsoft.sql", "managedinstances"]) => {
            h.list_instances()
        }
        (
            Method::GET,
            ["subscriptions", _, "providers", "microsoft.sql", "locations", _, "operationresults", id],
        ) => h.operation(id),
        (
            m,
            ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.sql", "managedinstances", mi, rest @ ..],
        ) => {
            if !sub.eq_ignore_ascii_case(&api.subscription)
                || !rg.eq_ignore_ascii_case(&api.resource_group)
                || !mi.eq_ignore_ascii_case(&api.server.name)
            {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("The Resource 'Microsoft.Sql/managedInstances/{}' under resource group '{}' was not found.", segs[7], segs[3]),
                    None,
                );
            }
            let orig: Vec<String> = segs[8..].to_vec();
            match (m, rest) {
                (Method::GET, []) => h.instance(),
                (Method::POST, ["hybridcertificate"]) => h.hybrid_certificate(&body),
                (Method::GET, ["servertrustcertificates"]) => h.list_trust_certs(),
                (Method::GET, ["servertrustcertificates", _]) => h.get_trust_cert(&orig[1]),
                (Method::PUT, ["servertrustcertificates", _]) => h.put_trust_cert(&orig[1], &body),
                (Method::DELETE, ["servertrustcertificates", _]) => h.delete_trust_cert(&orig[1]),
                (Method::GET, ["endpointcertificates"]) => h.endpoint_certs(None),
                (Method::GET, ["endpointcertificates", t]) => h.endpoint_certs(Some(t)),
                (Method::GET, ["distributedavailabilitygroups"]) => h.list_dags(),
                (Method::GET, ["distributedavailabilitygroups", _]) => h.get_dag(&orig[1]),
                (Method::PUT, ["distributedavailabilitygroups", _]) => h.put_dag(&orig[1], &body),
                (Method::PATCH, ["distributedavailabilitygroups", _]) => {
                    h.patch_dag(&orig[1], &body)
                }
                (Method::DELETE, ["distributedavailabilitygroups", _]) => h.delete_dag(&orig[1]),
                _ => arm_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("No route for {method} {}.", uri.path()),
                    None,
                ),
            }
        }
        _ => arm_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No route for {method} {}.", uri.path()),
            None,
        ),
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

struct Handler {
    api: Arc<Api>,
    version: String,
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn sql_err(e: tsql::SqlError) -> Response {
    let code = match e.number {
        15151 | 911 => "ResourceNotFound",
        15208 => "InvalidCertificateBlob",
        15232 => "CertificateAlreadyExists",
        _ => "BadRequest",
    };
    let status = if code == "ResourceNotFound" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    arm_error(
        status,
        code,
        &format!("{} (Msg {})", e.message, e.number),
        None,
    )
}

fn str_prop<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get("properties")
        .and_then(|p| p.get(name))
        .and_then(|v| v.as_str())
}

impl Handler {
    fn trust(&self) -> Result<&trust::TrustStore, Response> {
        self.api.server.trust().map_err(sql_err)
    }

    fn instance_json(&self) -> Value {
        json!({
            "id": self.api.mi_id(),
            "name": self.api.server.name,
            "type": "Microsoft.Sql/managedInstances",
            "location": self.api.location,
            "properties": {
                "fullyQualifiedDomainName": self.api.server.host,
                "state": "Ready",
                "provisioningState": "Succeeded",
                "collation": "SQL_Latin1_General_CP1_CI_AS",
                "resourceGroupName": self.api.resource_group,
            }
        })
    }

    fn instance(&self) -> Response {
        ok(self.instance_json())
    }

    fn list_instances(&self) -> Response {
        ok(json!({"value": [self.instance_json()]}))
    }

    /// POST hybridCertificate: SQL Server's certificate public key, trusted for the link.
    fn hybrid_certificate(&self, body: &Value) -> Response {
        let Some(blob) = str_prop(body, "publicblob") else {
            return arm_error(StatusCode::BAD_REQUEST, "InvalidParameterValue", "properties.PublicBlob is required: the 0x… public key of the SQL Server certificate.", Some("properties.PublicBlob"));
        };
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let bytes = match trust::parse_binary_literal(blob) {
            Ok(b) => b,
            Err(e) => return sql_err(sqlexec::trustsql::err(e)),
        };
        let info = match trust::parse_cert(&bytes) {
            Ok(i) => i,
            Err(e) => return sql_err(sqlexec::trustsql::err(e)),
        };
        let name = format!("hybrid:{}", info.thumbprint_hex());
        let m = self.api.server.inst.master();
        if t.cert_id(&m, &name).ok().flatten().is_none() {
            if let Err(e) = t.import_public(&m, &name, &bytes) {
                return sql_err(sqlexec::trustsql::err(e));
            }
        }
        ok(
            json!({"properties": {"publicBlob": blob, "uploadTime": chrono::Utc::now().to_rfc3339()}}),
        )
    }

    fn trust_cert_json(&self, name: &str, der: &[u8]) -> Value {
        let thumb = trust::parse_cert(der)
            .map(|i| i.thumbprint_hex())
            .unwrap_or_default();
        json!({
            "id": format!("{}/serverTrustCertificates/{name}", self.api.mi_id()),
            "name": name,
            "type": "Microsoft.Sql/managedInstances/serverTrustCertificates",
            "properties": {"publicBlob": trust::to_binary_literal(der), "thumbprint": thumb, "certificateName": name}
        })
    }

    fn list_trust_certs(&self) -> Response {
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let m = self.api.server.inst.master();
        let rows = t.certificates(&m).unwrap_or_default();
        let mut v = Vec::new();
        for c in rows
            .iter()
            .filter(|c| c.pvt_key_encryption_type == "NA" && !c.name.starts_with("hybrid:"))
        {
            if let Ok(Some(der)) = t.cert_encoded(&m, c.certificate_id) {
                v.push(self.trust_cert_json(&c.name, &der));
            }
        }
        ok(json!({"value": v}))
    }

    fn get_trust_cert(&self, name: &str) -> Response {
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let m = self.api.server.inst.master();
        match t
            .cert_id(&m, name)
            .ok()
            .flatten()
            .and_then(|id| t.cert_encoded(&m, id).ok().flatten())
        {
            Some(der) => ok(self.trust_cert_json(name, &der)),
            None => arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("The server trust certificate '{name}' was not found."),
                None,
            ),
        }
    }

    fn put_trust_cert(&self, name: &str, body: &Value) -> Response {
        let Some(blob) = str_prop(body, "publicblob") else {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "properties.publicBlob is required.",
                Some("properties.publicBlob"),
            );
        };
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let m = self.api.server.inst.master();
        if let Err(e) = t.import_public_hex(&m, name, blob) {
            return sql_err(sqlexec::trustsql::err(e));
        }
        drop(m);
        self.get_trust_cert(name)
    }

    fn delete_trust_cert(&self, name: &str) -> Response {
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        match t.drop_certificate(&self.api.server.inst.master(), name) {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => sql_err(sqlexec::trustsql::err(e)),
        }
    }

    fn endpoint_certs(&self, kind: Option<&str>) -> Response {
        if kind.is_some_and(|k| !k.eq_ignore_ascii_case("DATABASE_MIRRORING")) {
            return arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "Only the DATABASE_MIRRORING endpoint certificate exists.",
                None,
            );
        }
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        match t
            .endpoint_certificate_public_key(&self.api.server.inst.master(), &self.api.server.host)
        {
            Ok(der) => {
                let one = json!({
                    "id": format!("{}/endpointCertificates/DATABASE_MIRRORING", self.api.mi_id()),
                    "name": "DATABASE_MIRRORING",
                    "type": "Microsoft.Sql/managedInstances/endpointCertificates",
                    "properties": {"publicBlob": trust::to_binary_literal(&der)}
                });
                ok(if kind.is_some() {
                    one
                } else {
                    json!({"value": [one]})
                })
            }
            Err(e) => sql_err(sqlexec::trustsql::err(e)),
        }
    }

    /// The DAGs this managed instance is part of, from the HADR catalog and the live link.
    fn dags(&self) -> Vec<(String, String, String, String, Option<String>)> {
        let m = self.api.server.inst.master();
        let mut out = Vec::new();
        let q = "SELECT g.name, g.database_name, \
                 (SELECT replica_server_name FROM hadr_replicas r WHERE r.group_id = g.group_id AND r.is_local = 0), \
                 (SELECT replica_server_name FROM hadr_replicas r WHERE r.group_id = g.group_id AND r.is_local = 1), \
                 (SELECT endpoint_url FROM hadr_replicas r WHERE r.group_id = g.group_id AND r.is_local = 0) \
                 FROM hadr_groups g WHERE g.is_distributed = 1";
        if let Ok(mut st) = m.prepare(q) {
            if let Ok(rows) = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(4)?,
                ))
            }) {
                out.extend(rows.flatten());
            }
        }
        out
    }

    fn dag_json(&self, dag: &(String, String, String, String, Option<String>)) -> Value {
        let (name, database, partner_ag, local_ag, endpoint) = dag;
        let stats = sqlexec::ags::link_stats(&self.api.server, database);
        let s = stats.lock().map(|s| s.clone()).unwrap_or_default();
        let db = self.api.server.inst.database_any_state(database).ok();
        let (state, progress) = match &db {
            Some(d) if d.control().consistent_at.is_some() => ("Seeding", "InProgress"),
            Some(_) if s.connected => ("Catchup", "Completed"),
            Some(_) => ("Disconnected", "Completed"),
            None => ("CreatingLink", "NotStarted"),
        };
        let hardened = engine::lsn_numeric(s.last_hardened_lsn);
        let err = s.last_error.as_ref().map(|(n, m)| format!("{n}: {m}"));
        let id = format!("{}/distributedAvailabilityGroups/{name}", self.api.mi_id());
        let legacy = self.version.as_str() < "2023-08-01"
            || self.version.starts_with("2021")
            || self.version.starts_with("2022");
        if legacy {
            json!({
                "id": id, "name": name, "type": "Microsoft.Sql/managedInstances/distributedAvailabilityGroups",
                "properties": {
                    "targetDatabase": database,
                    "sourceEndpoint": endpoint,
                    "primaryAvailabilityGroupName": partner_ag,
                    "secondaryAvailabilityGroupName": local_ag,
                    "replicationMode": "Async",
                    "distributedAvailabilityGroupId": name,
                    "linkState": state,
                    "lastHardenedLsn": hardened,
                }
            })
        } else {
            json!({
                "id": id, "name": name, "type": "Microsoft.Sql/managedInstances/distributedAvailabilityGroups",
                "properties": {
                    "distributedAvailabilityGroupName": name,
                    "replicationMode": "Async",
                    "partnerLinkRole": "Primary",
                    "partnerAvailabilityGroupName": partner_ag,
                    "partnerEndpoint": endpoint,
                    "instanceLinkRole": "Secondary",
                    "instanceAvailabilityGroupName": local_ag,
                    "failoverMode": "Manual",
                    "seedingMode": "Automatic",
                    "databases": [{
                        "databaseName": database,
                        "replicaState": state,
                        "seedingProgress": progress,
                        "synchronizationHealth": if s.connected { "Healthy" } else { "NotHealthy" },
                        "connectedState": if s.connected { "Connected" } else { "Disconnected" },
                        "lastReceivedLsn": hardened,
                        "lastHardenedLsn": hardened,
                        "lastCommitLsn": engine::lsn_numeric(s.last_redone_lsn),
                        "mostRecentLinkError": err,
                        "instanceSendReplicationLagSeconds": 0,
                        "instanceRedoReplicationLagSeconds": 0,
                    }]
                }
            })
        }
    }

    fn list_dags(&self) -> Response {
        let v: Vec<Value> = self.dags().iter().map(|d| self.dag_json(d)).collect();
        ok(json!({"value": v}))
    }

    fn get_dag(&self, name: &str) -> Response {
        match self.dags().into_iter().find(|d| d.0.eq_ignore_ascii_case(name)) {
            Some(d) => ok(self.dag_json(&d)),
            None => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("The distributed availability group '{name}' was not found on managed instance '{}'.", self.api.server.name), None),
        }
    }

    /// PUT: join the SQL Server's distributed availability group (both request shapes).
    fn put_dag(&self, name: &str, body: &Value) -> Response {
        let p = |k: &str| str_prop(body, k).map(str::to_string);
        let database = p("targetdatabase").or_else(|| {
            body.get("properties")
                .and_then(|x| x.get("databases"))
                .and_then(|d| d.get(0))
                .and_then(|d| d.get("databasename"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
        let endpoint = p("sourceendpoint").or_else(|| p("partnerendpoint"));
        let primary_ag =
            p("primaryavailabilitygroupname").or_else(|| p("partneravailabilitygroupname"));
        let local_ag = p("secondaryavailabilitygroupname")
            .or_else(|| p("instanceavailabilitygroupname"))
            .unwrap_or_else(|| self.api.server.name.clone());
        let (Some(database), Some(endpoint), Some(primary_ag)) = (database, endpoint, primary_ag)
        else {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "The request needs the database (TargetDatabase or databases[].databaseName), the SQL Server endpoint (SourceEndpoint or partnerEndpoint) and its availability group (PrimaryAvailabilityGroupName or partnerAvailabilityGroupName).",
                Some("properties"),
            );
        };
        // The SQL Server's certificate arrived through hybridCertificate (or serverTrustCertificates); bind it to
        // the host named by the endpoint, which is the peer this link will talk to.
        let host = match sqlexec::ags::parse_endpoint_url(&endpoint) {
            Ok((h, _)) => h,
            Err(e) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValue",
                    &e.message,
                    Some("properties.SourceEndpoint"),
                )
            }
        };
        if let Err(r) = self.bind_hybrid_certificate(&host) {
            return r;
        }
        if let Err(e) = sqlexec::ags::join_distributed_group(
            &self.api.server,
            &self.api.runtime,
            self.api.settings.clone(),
            name,
            &primary_ag,
            &local_ag,
            &database,
            &endpoint,
        ) {
            return sql_err(e);
        }
        let op = format!("{:032x}", u128::from_le_bytes(engine::database::new_guid()));
        self.api.ops.lock().insert(
            op.clone(),
            Operation {
                status: "InProgress",
                error: None,
                dag: Some(name.to_string()),
                database: Some(database),
                started: chrono::Utc::now(),
            },
        );
        let url = format!("/subscriptions/{}/providers/Microsoft.Sql/locations/{}/operationResults/{op}?api-version={}", self.api.subscription, self.api.location, self.version);
        let mut r = (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response();
        let h = r.headers_mut();
        h.insert(
            "azure-asyncoperation",
            HeaderValue::from_str(&url).unwrap_or(HeaderValue::from_static("")),
        );
        h.insert(
            "location",
            HeaderValue::from_str(&url).unwrap_or(HeaderValue::from_static("")),
        );
        h.insert("retry-after", HeaderValue::from_static("1"));
        r
    }

    fn bind_hybrid_certificate(&self, host: &str) -> Result<(), Response> {
        let t = self.trust()?;
        let m = self.api.server.inst.master();
        if t.cert_id(&m, host).ok().flatten().is_some() {
            return Ok(());
        }
        let rows = t.certificates(&m).unwrap_or_default();
        let latest = rows
            .iter()
            .filter(|c| c.name.starts_with("hybrid:"))
            .max_by_key(|c| c.certificate_id);
        let Some(c) = latest else {
            return Err(arm_error(
                StatusCode::BAD_REQUEST,
                "LinkSqlServerCertificateMissing",
                "No SQL Server certificate has been uploaded to this managed instance: POST its public key to hybridCertificate (or PUT a serverTrustCertificate) first.",
                None,
            ));
        };
        let der = t
            .cert_encoded(&m, c.certificate_id)
            .ok()
            .flatten()
            .unwrap_or_default();
        t.import_public(&m, host, &der)
            .map_err(|e| sql_err(sqlexec::trustsql::err(e)))?;
        Ok(())
    }

    fn patch_dag(&self, name: &str, body: &Value) -> Response {
        let mode = str_prop(body, "replicationmode").unwrap_or("Async");
        if !mode.eq_ignore_ascii_case("Async") {
            return arm_error(StatusCode::BAD_REQUEST, "FeatureNotYetSupported", "Synchronous replication from the managed instance side is not available in this milink build yet.", Some("properties.replicationMode"));
        }
        self.get_dag(name)
    }

    fn delete_dag(&self, name: &str) -> Response {
        let mut c = match sqlexec::Conn::new(self.api.server.clone(), 0, "mgmt") {
            Ok(c) => c,
            Err(e) => return sql_err(e),
        };
        let mut out = Vec::new();
        c.execute_batch(
            &format!("DROP AVAILABILITY GROUP [{}]", name.replace(']', "]]")),
            &mut out,
        );
        if let Some(sqlexec::Out::Error(e)) = out
            .into_iter()
            .find(|o| matches!(o, sqlexec::Out::Error(_)))
        {
            return sql_err(e);
        }
        StatusCode::OK.into_response()
    }

    fn operation(&self, id: &str) -> Response {
        let mut ops = self.api.ops.lock();
        let Some(op) = ops.get_mut(id) else {
            return arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("Operation '{id}' was not found."),
                None,
            );
        };
        if op.status == "InProgress" {
            // The link is created once the managed instance holds a consistent copy of the database.
            let db = op.database.clone().unwrap_or_default();
            if self.api.server.inst.database(&db).is_ok() {
                op.status = "Succeeded";
            } else if chrono::Utc::now() - op.started > chrono::Duration::minutes(30) {
                op.status = "Failed";
                op.error = Some(("LinkCreationError".into(), "The link was not initiated in time: check the network path and both certificates.".into()));
            }
        }
        let mut v = json!({"name": id, "status": op.status, "startTime": op.started.to_rfc3339()});
        if let Some((code, message)) = &op.error {
            v["error"] = json!({"code": code, "message": message});
        }
        let _ = &op.dag;
        ok(v)
    }
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
