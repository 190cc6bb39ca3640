//! distributedAvailabilityGroups: the link as ARM shows it (the 2021-05-01-preview shape the seed uses, and the
//! 2023-08-01+ shape with `databases[]`), its creation as a long-running operation, and the operation's status.

use crate::arm_error;
use crate::routes::{action_prop, not_found, ok, sql_err, str_prop, Handler};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Clone)]
pub(crate) struct Operation {
    status: &'static str,
    error: Option<(String, String)>,
    database: String,
    started: chrono::DateTime<chrono::Utc>,
    /// A link creation completes when the copy is consistent; a role change when its task says so.
    link: bool,
}

/// One distributed availability group of this managed instance, from the HADR catalog.
struct Dag {
    name: String,
    group_id: String,
    database: String,
    partner_ag: String,
    local_ag: String,
    partner_endpoint: Option<String>,
    partner_replica_id: Option<String>,
    local_replica_id: Option<String>,
    sync: bool,
}

/// ARM leaves unknown values out rather than sending nulls (the schemas type them as strings).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        x => x,
    }
}

impl Handler {
    fn dags(&self) -> Vec<Dag> {
        let m = self.api.server.inst.master();
        let q = "SELECT g.name, g.group_id, g.database_name, p.replica_server_name, l.replica_server_name, \
                 p.endpoint_url, p.replica_id, l.replica_id, p.availability_mode \
                 FROM hadr_groups g \
                 LEFT JOIN hadr_replicas p ON p.group_id = g.group_id AND p.is_local = 0 \
                 LEFT JOIN hadr_replicas l ON l.group_id = g.group_id AND l.is_local = 1 \
                 WHERE g.is_distributed = 1 ORDER BY g.name";
        let Ok(mut st) = m.prepare(q) else {
            return vec![];
        };
        let rows = st.query_map([], |r| {
            Ok(Dag {
                name: r.get(0)?,
                group_id: r.get(1)?,
                database: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                partner_ag: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                local_ag: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                partner_endpoint: r.get(5)?,
                partner_replica_id: r.get(6)?,
                local_replica_id: r.get(7)?,
                sync: r.get::<_, Option<String>>(8)?.as_deref() == Some("SYNCHRONOUS_COMMIT"),
            })
        });
        rows.map(|r| r.flatten().collect()).unwrap_or_default()
    }

    /// SQL Server's certificate this link authenticates with: the one bound to the partner's host.
    fn partner_cert(&self, endpoint: Option<&str>) -> Option<Value> {
        let (host, _) = sqlexec::ags::parse_endpoint_url(endpoint?).ok()?;
        let t = self.api.server.trust().ok()?;
        let rows = t.certificates(&self.api.server.inst.master()).ok()?;
        let c = rows.iter().find(|c| c.name.eq_ignore_ascii_case(&host))?;
        Some(json!({
            "certificateName": c.subject,
            "expiryDate": c.expiry_date.and_utc().to_rfc3339(),
        }))
    }

    fn dag_json(&self, d: &Dag) -> Value {
        let stats = sqlexec::ags::link_stats(&self.api.server, &d.database);
        let s = stats.lock().map(|s| s.clone()).unwrap_or_default();
        let db = self.api.server.inst.database_any_state(&d.database).ok();
        // seedingProgress is free text in Microsoft's schema: while seeding it carries how far the copy is.
        let seeding = s.seeding.as_ref().filter(|sd| !sd.done).map(|sd| {
            let pct = sd.transferred_bytes as f64 * 100.0 / sd.database_bytes.max(1) as f64;
            format!(
                "InProgress ({:.0}%, {:.1} of {:.1} MB)",
                pct.min(100.0),
                sd.transferred_bytes as f64 / 1048576.0,
                sd.database_bytes as f64 / 1048576.0
            )
        });
        let (state, progress) = match &db {
            Some(db) if db.control().consistent_at.is_some() => (
                "Seeding",
                seeding.unwrap_or_else(|| "InProgress".to_string()),
            ),
            Some(_) if s.connected => ("Catchup", "Completed".to_string()),
            Some(_) => ("Disconnected", "Completed".to_string()),
            None if seeding.is_some() => ("Seeding", seeding.unwrap_or_default()),
            None => ("CreatingLink", "NotStarted".to_string()),
        };
        let hardened = engine::lsn_numeric(s.last_hardened_lsn);
        let err = s.last_error.as_ref().map(|(n, m)| format!("{n}: {m}"));
        let mode = if d.sync { "Sync" } else { "Async" };
        let primary_here = db.as_ref().is_some_and(|db| {
            db.role() == engine::database::Role::Primary && db.control().consistent_at.is_none()
        });
        let (instance_role, partner_role) = if primary_here {
            ("Primary", "Secondary")
        } else {
            ("Secondary", "Primary")
        };
        let id = format!(
            "{}/distributedAvailabilityGroups/{}",
            self.api.mi_id(),
            d.name
        );
        let ty = "Microsoft.Sql/managedInstances/distributedAvailabilityGroups";
        let properties = if self.version.as_str() < "2023-08" {
            json!({
                "targetDatabase": d.database,
                "sourceEndpoint": d.partner_endpoint,
                "primaryAvailabilityGroupName": d.partner_ag,
                "secondaryAvailabilityGroupName": d.local_ag,
                "replicationMode": mode,
                "distributedAvailabilityGroupId": d.group_id,
                "sourceReplicaId": d.partner_replica_id,
                "targetReplicaId": d.local_replica_id,
                "linkState": state,
                "lastHardenedLsn": hardened,
            })
        } else {
            json!({
                "distributedAvailabilityGroupName": d.name,
                "distributedAvailabilityGroupId": d.group_id,
                "replicationMode": mode,
                "partnerLinkRole": partner_role,
                "partnerAvailabilityGroupName": d.partner_ag,
                "partnerEndpoint": d.partner_endpoint,
                "instanceLinkRole": instance_role,
                "instanceAvailabilityGroupName": d.local_ag,
                "failoverMode": "Manual",
                "seedingMode": "Automatic",
                "databases": [{
                    "databaseName": d.database,
                    "instanceReplicaId": d.local_replica_id,
                    "partnerReplicaId": d.partner_replica_id,
                    "replicaState": state,
                    "seedingProgress": progress,
                    "synchronizationHealth": if s.connected { "HEALTHY" } else { "NOT_HEALTHY" },
                    "connectedState": if s.connected { "CONNECTED" } else { "DISCONNECTED" },
                    "lastReceivedLsn": hardened,
                    "lastHardenedLsn": hardened,
                    "lastCommitLsn": engine::lsn_numeric(s.last_redone_lsn),
                    "mostRecentLinkError": err,
                    "partnerAuthCertValidity": self.partner_cert(d.partner_endpoint.as_deref()),
                    "instanceSendReplicationLagSeconds": 0,
                    "instanceRedoReplicationLagSeconds": 0,
                }]
            })
        };
        strip_nulls(json!({"id": id, "name": d.name, "type": ty, "properties": properties}))
    }

    pub(crate) fn list_dags(&self) -> Response {
        let v: Vec<Value> = self.dags().iter().map(|d| self.dag_json(d)).collect();
        ok(json!({ "value": v }))
    }

    pub(crate) fn get_dag(&self, name: &str) -> Response {
        match self.dags().iter().find(|d| d.name.eq_ignore_ascii_case(name)) {
            Some(d) => ok(self.dag_json(d)),
            None => not_found(&format!(
                "The distributed availability group '{name}' was not found on managed instance '{}'.",
                self.api.server.name
            )),
        }
    }

    /// PUT: join the SQL Server's distributed availability group (both request shapes).
    pub(crate) fn put_dag(&self, name: &str, body: &Value) -> Response {
        let bad = |what: &str, message: &str| {
            arm_error(
                StatusCode::BAD_REQUEST,
                &format!("InvalidDistributedAvailabilityGroupsCreateOrUpdateRequest{what}"),
                message,
                Some("properties"),
            )
        };
        let p = |k: &str| str_prop(body, k).map(str::to_string);
        let dbs = body
            .get("properties")
            .and_then(|x| x.get("databases"))
            .and_then(|d| d.as_array())
            .cloned()
            .unwrap_or_default();
        if dbs.len() > 1 {
            return bad(
                "Databases",
                "A link replicates one database: databases[] takes a single entry.",
            );
        }
        if p("instancelinkrole").is_some_and(|r| r.eq_ignore_ascii_case("Primary")) {
            return bad("", "This managed instance joins links as the secondary: instanceLinkRole Primary is not supported.");
        }
        let database = p("targetdatabase").or_else(|| {
            dbs.first()
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
            return bad("", "The request needs the database (TargetDatabase or databases[].databaseName), the SQL Server endpoint (SourceEndpoint or partnerEndpoint) and its availability group (PrimaryAvailabilityGroupName or partnerAvailabilityGroupName).");
        };
        // The SQL Server's certificate arrived through hybridCertificate (or serverTrustCertificates); bind it to
        // the host named by the endpoint, which is the peer this link will talk to.
        let host = match sqlexec::ags::parse_endpoint_url(&endpoint) {
            Ok((h, _)) => h,
            Err(e) => return bad("PartnerEndpoint", &e.message),
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
        let op = self.new_operation(database, true);
        self.accepted(&op)
    }

    fn bind_hybrid_certificate(&self, host: &str) -> Result<(), Response> {
        let t = self.api.server.trust().map_err(sql_err)?;
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
                "ManagedInstanceLinkCertificateNotFoundOnManagedInstance",
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

    pub(crate) fn patch_dag(&self, name: &str, body: &Value) -> Response {
        let mode = str_prop(body, "replicationmode").unwrap_or("Async");
        let sync = match mode.to_ascii_lowercase().as_str() {
            "sync" => true,
            "async" => false,
            _ => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValue",
                    &format!("replicationMode '{mode}' is not valid: use Async or Sync."),
                    Some("properties.replicationMode"),
                )
            }
        };
        if let Err(e) = sqlexec::ags::set_replication_mode(&self.api.server, name, sync) {
            return sql_err(e);
        }
        self.get_dag(name)
    }

    /// POST …/failover {"failoverType": "Planned" | "ForcedAllowDataLoss"}: a planned failover swaps the
    /// roles with the partner (to the managed instance, or back to SQL Server), switching to synchronous commit
    /// first as the product does; a forced one makes the managed instance primary at what it has hardened.
    pub(crate) fn failover(&self, name: &str, body: &Value) -> Response {
        let kind = match action_prop(body, "failovertype")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("planned") => sqlexec::ags::Failover::PlannedSwitchingToSync,
            Some("forcedallowdataloss") => sqlexec::ags::Failover::Forced,
            _ => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValue",
                    "failoverType must be Planned or ForcedAllowDataLoss.",
                    Some("failoverType"),
                )
            }
        };
        self.role_change(name, kind)
    }

    /// POST …/setRole {"instanceRole": "Primary" | "Secondary", "roleChangeType": "Planned" | "Forced"}.
    pub(crate) fn set_role(&self, name: &str, body: &Value) -> Response {
        let want_primary = match action_prop(body, "instancerole")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("primary") => true,
            Some("secondary") => false,
            _ => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValue",
                    "instanceRole must be Primary or Secondary.",
                    Some("instanceRole"),
                )
            }
        };
        let forced = match action_prop(body, "rolechangetype")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("forced") => true,
            Some("planned") | None => false,
            _ => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValue",
                    "roleChangeType must be Planned or Forced.",
                    Some("roleChangeType"),
                )
            }
        };
        let Some(d) = self
            .dags()
            .into_iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
        else {
            return self.get_dag(name);
        };
        let primary_here = self
            .api
            .server
            .inst
            .database_any_state(&d.database)
            .is_ok_and(|db| db.role() == engine::database::Role::Primary);
        if primary_here == want_primary {
            return arm_error(
                StatusCode::CONFLICT,
                "DistributedAvailabilityGroupSetRoleInstanceAlreadyInRequestedRole",
                &format!(
                    "The managed instance is already {} in distributed availability group '{}'.",
                    if want_primary { "Primary" } else { "Secondary" },
                    d.name
                ),
                None,
            );
        }
        let kind = match (want_primary, forced) {
            (true, true) => sqlexec::ags::Failover::Forced,
            (false, true) => sqlexec::ags::Failover::StepDown,
            (_, false) => sqlexec::ags::Failover::PlannedSwitchingToSync,
        };
        self.role_change(name, kind)
    }

    /// Check what can be checked now (409s), then run the role change as a long-running operation.
    fn role_change(&self, name: &str, kind: sqlexec::ags::Failover) -> Response {
        let Some(d) = self
            .dags()
            .into_iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
        else {
            return self.get_dag(name);
        };
        let conflict =
            |code: &str, message: String| arm_error(StatusCode::CONFLICT, code, &message, None);
        if self
            .api
            .ops
            .lock()
            .values()
            .any(|o| !o.link && o.status == "InProgress")
        {
            return conflict(
                "DistributedAvailabilityGroupSetRoleChangeRoleAlreadyInProgress",
                format!(
                    "A role change of distributed availability group '{}' is already in progress.",
                    d.name
                ),
            );
        }
        let stats = sqlexec::ags::link_stats(&self.api.server, &d.database);
        let s = stats.lock().map(|s| s.clone()).unwrap_or_default();
        let db = self.api.server.inst.database_any_state(&d.database).ok();
        if kind == sqlexec::ags::Failover::PlannedSwitchingToSync {
            if !s.connected {
                return conflict(
                    "DistributedAvailabilityGroupFailoverSecondariesNotSynchronizing",
                    format!("The partner of distributed availability group '{}' is not connected, so a planned failover would lose data. Check mostRecentLinkError, or use failoverType ForcedAllowDataLoss.", d.name),
                );
            }
            if let Some(db) = &db {
                // What the secondary has yet to receive (known on the primary) or to redo (known here).
                let primary_here = db.role() == engine::database::Role::Primary;
                let send_queue = if primary_here {
                    db.log().bytes_from(s.last_hardened_lsn + 1)
                } else {
                    0
                };
                let redo_queue = if primary_here {
                    0
                } else {
                    db.log()
                        .bytes_from(s.last_redone_lsn + 1)
                        .saturating_sub(db.log().bytes_from(s.last_hardened_lsn + 1))
                };
                const LIMIT: u64 = 256 << 20;
                if send_queue > LIMIT {
                    return conflict("DistributedAvailabilityGroupFailoverLogSendQueueSizeTooBig", format!("The log send queue is {} MB; a planned failover waits for it to drain below {} MB.", send_queue >> 20, LIMIT >> 20));
                }
                if redo_queue > LIMIT {
                    return conflict("DistributedAvailabilityGroupFailoverRedoQueueSizeTooBig", format!("The redo queue is {} MB; a planned failover waits for it to drain below {} MB.", redo_queue >> 20, LIMIT >> 20));
                }
            }
        }
        let op = self.new_operation(d.database.clone(), false);
        let (api, dag, id) = (self.api.clone(), d.name.clone(), op.clone());
        self.api.runtime.spawn_blocking(move || {
            let r = sqlexec::ags::fail_over(&api.server, &dag, kind);
            if let Some(o) = api.ops.lock().get_mut(&id) {
                match r {
                    Ok(()) => o.status = "Succeeded",
                    Err(e) => {
                        o.status = "Failed";
                        let code = match e.number {
                            41142 => {
                                "DistributedAvailabilityGroupFailoverSecondariesNotSynchronizing"
                            }
                            41143 => "DistributedAvailabilityGroupFailoverLogSendQueueSizeTooBig",
                            41145 => {
                                "DistributedAvailabilityGroupSetRoleChangeRoleAlreadyInProgress"
                            }
                            41122 | 41146 => {
                                "DistributedAvailabilityGroupSetRoleInstanceAlreadyInRequestedRole"
                            }
                            _ => "DistributedAvailabilityGroupFailoverFailed",
                        };
                        o.error = Some((code.into(), format!("Msg {}: {}", e.number, e.message)));
                    }
                }
            }
        });
        self.accepted(&op)
    }

    /// A long-running operation, InProgress until a link's copy is consistent (`link`) or its task says so.
    fn new_operation(&self, database: String, link: bool) -> String {
        let op = format!("{:032x}", u128::from_le_bytes(engine::database::new_guid()));
        self.api.ops.lock().insert(
            op.clone(),
            Operation {
                status: "InProgress",
                error: None,
                database,
                started: chrono::Utc::now(),
                link,
            },
        );
        op
    }

    fn accepted(&self, op: &str) -> Response {
        let url = format!(
            "/subscriptions/{}/providers/Microsoft.Sql/locations/{}/operationResults/{op}?api-version={}",
            self.api.subscription, self.api.location, self.version
        );
        let mut r = StatusCode::ACCEPTED.into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&url) {
            h.insert("azure-asyncoperation", v.clone());
            h.insert("location", v);
        }
        h.insert("retry-after", HeaderValue::from_static("1"));
        r
    }

    pub(crate) fn delete_dag(&self, name: &str) -> Response {
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

    pub(crate) fn operation(&self, id: &str) -> Response {
        let mut ops = self.api.ops.lock();
        let Some(op) = ops.get_mut(id) else {
            return not_found(&format!("Operation '{id}' was not found."));
        };
        if op.status == "InProgress" && op.link {
            // The link is created once the managed instance holds a consistent copy of the database.
            if self.api.server.inst.database(&op.database).is_ok() {
                op.status = "Succeeded";
            } else if chrono::Utc::now() - op.started > chrono::Duration::minutes(30) {
                op.status = "Failed";
                op.error = Some(("LinkCreationError".into(), "The link was not initiated in time: check the network path and both certificates.".into()));
            }
        }
        let mut v = json!({"id": id, "name": id, "status": op.status, "startTime": op.started.to_rfc3339()});
        if let Some((code, message)) = &op.error {
            v["error"] = json!({"code": code, "message": message});
        }
        ok(v)
    }
}
