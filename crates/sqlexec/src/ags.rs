//! Availability groups and distributed availability groups: the statements, their catalog in master, and the
//! HADR views (sys.availability_groups, sys.availability_replicas, sys.dm_hadr_availability_replica_states,
//! sys.dm_hadr_database_replica_states). The replication itself is `hadr::link`; this module records who
//! replicates what and shows the live link state next to it.

use crate::exec::{display, engine_err_sql, Conn, Out, Server};
use hadr::link::{LinkStats, Stats};
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;
use tsql::admin::{Admin, AgAction, AvailabilityMode, FailoverMode, ReplicaSpec, SeedingMode};
use tsql::{SqlError, Value};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hadr_groups(
    group_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, is_distributed INTEGER NOT NULL,
    cluster_type TEXT NOT NULL, database_name TEXT, sequence_number INTEGER NOT NULL, create_date TEXT NOT NULL,
    grant_create_any_database INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS hadr_replicas(
    replica_id TEXT PRIMARY KEY, group_id TEXT NOT NULL, ordinal INTEGER NOT NULL, replica_server_name TEXT NOT NULL,
    endpoint_url TEXT, availability_mode TEXT NOT NULL, failover_mode TEXT NOT NULL, seeding_mode TEXT NOT NULL,
    session_timeout INTEGER NOT NULL, is_local INTEGER NOT NULL, create_date TEXT NOT NULL);
";

fn db(e: rusqlite::Error) -> SqlError {
    SqlError::new(50000, 16, format!("master catalog: {e}"))
}

fn guid_text() -> String {
    let g = engine::database::new_guid();
    let h: String = g.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn mode(m: Option<AvailabilityMode>) -> &'static str {
    match m {
        Some(AvailabilityMode::SynchronousCommit) => "SYNCHRONOUS_COMMIT",
        Some(AvailabilityMode::ConfigurationOnly) => "CONFIGURATION_ONLY",
        _ => "ASYNCHRONOUS_COMMIT",
    }
}

fn failover_mode(m: Option<FailoverMode>) -> &'static str {
    match m {
        Some(FailoverMode::Automatic) => "AUTOMATIC",
        Some(FailoverMode::External) => "EXTERNAL",
        _ => "MANUAL",
    }
}

fn seeding(m: Option<SeedingMode>) -> &'static str {
    match m {
        Some(SeedingMode::Manual) => "MANUAL",
        _ => "AUTOMATIC",
    }
}

/// Runs an availability-group statement; false if `a` is not one.
pub fn run(conn: &mut Conn, a: &Admin, out: &mut Vec<Out>) -> Result<bool, SqlError> {
    let server = conn.server.clone();
    let inst = server.inst.clone();
    match a {
        Admin::CreateAvailabilityGroup(c) => {
            ensure_new_group(&inst.master(), &c.name.value)?;
            let group_id = guid_text();
            let now = chrono::Local::now()
                .naive_local()
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string();
            let mut database = None;
            if c.distributed {
                if c.replicas.len() != 2 {
                    return Err(SqlError::new(
                        19502,
                        16,
                        "A distributed availability group joins exactly two availability groups (AVAILABILITY GROUP ON N'ag1' WITH (...), N'ag2' WITH (...)).",
                    ));
                }
                for r in &c.replicas {
                    if r.listener_url.is_none() {
                        return Err(SqlError::new(19503, 16, format!("LISTENER_URL is required for availability group '{}' in a distributed availability group.", r.name)));
                    }
                }
                // The distributed group replicates the database of its local member group.
                let m = inst.master();
                database = m
                    .query_row("SELECT database_name FROM hadr_groups WHERE name = ?1 AND is_distributed = 0", [&c.replicas[0].name], |r| r.get::<_, Option<String>>(0))
                    .optional()
                    .map_err(db)?
                    .flatten();
            } else {
                let ct = c.cluster_type().unwrap_or_else(|| "WSFC".into());
                if ct != "NONE" {
                    return Err(SqlError::new(
                        41199,
                        16,
                        format!("CLUSTER_TYPE = {ct} needs a Windows Server Failover Cluster, which does not exist here. Use WITH (CLUSTER_TYPE = NONE) as the seed does."),
                    ));
                }
                if c.databases.len() > 1 {
                    return Err(SqlError::new(
                        41190,
                        16,
                        "The Managed Instance link replicates one database per availability group: create one availability group per database.",
                    ));
                }
                if let Some(d) = c.databases.first() {
                    let dbh = inst.database(&d.value).map_err(engine_err_sql)?;
                    let ctl = dbh.control();
                    if ctl.recovery_model != engine::RecoveryModel::Full {
                        return Err(SqlError::new(
                            1465,
                            16,
                            format!("Database \"{}\" is not in FULL recovery mode. Use ALTER DATABASE [{}] SET RECOVERY FULL, take a full backup, and try again.", dbh.name, dbh.name),
                        ));
                    }
                    if !ctl.backup_chain {
                        return Err(SqlError::new(
                            1475,
                            16,
                            format!("Database \"{}\" needs a full database backup that starts a backup chain before it can join an availability group. Take a full backup without COPY_ONLY (BACKUP DATABASE [{}] TO DISK = '...').", dbh.name, dbh.name),
                        ));
                    }
                    database = Some(dbh.name.clone());
                }
                for r in &c.replicas {
                    if !r.name.eq_ignore_ascii_case(&server.name) {
                        return Err(SqlError::new(
                            35237,
                            16,
                            format!("The replica name '{}' is not this server's name ('{}'): in CREATE AVAILABILITY GROUP the local replica must be @@SERVERNAME.", r.name, server.name),
                        ));
                    }
                }
            }
            let m = inst.master();
            let seq: i64 = m
                .query_row(
                    "SELECT coalesce(max(sequence_number), 0) + 1 FROM hadr_groups",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            m.execute(
                "INSERT INTO hadr_groups(group_id, name, is_distributed, cluster_type, database_name, sequence_number, create_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![group_id, c.name.value, c.distributed as i64, c.cluster_type().unwrap_or_else(|| "NONE".into()), database, seq, now],
            )
            .map_err(db)?;
            for (i, r) in c.replicas.iter().enumerate() {
                let is_local = if c.distributed {
                    m.query_row(
                        "SELECT count(*) FROM hadr_groups WHERE name = ?1 AND is_distributed = 0",
                        [&r.name],
                        |x| x.get::<_, i64>(0),
                    )
                    .map_err(db)?
                        > 0
                } else {
                    true
                };
                insert_replica(&m, &group_id, i, r, is_local, &now)?;
            }
        }
        Admin::AlterAvailabilityGroup { name, action } => {
            // JOIN creates this side of a distributed group: there is nothing to find yet.
            if let AgAction::Join { groups, .. } = action.as_ref() {
                join_from_tsql(&server, &name.value, groups)?;
                return Ok(true);
            }
            let m = inst.master();
            m.execute_batch(SCHEMA).map_err(db)?;
            let gid = existing_group_id(&m, &name.value, "find")?;
            match action.as_ref() {
                AgAction::GrantCreateAnyDatabase => {
                    m.execute(
                        "UPDATE hadr_groups SET grant_create_any_database = 1 WHERE group_id = ?1",
                        [&gid],
                    )
                    .map_err(db)?;
                }
                AgAction::DenyCreateAnyDatabase => {
                    m.execute(
                        "UPDATE hadr_groups SET grant_create_any_database = 0 WHERE group_id = ?1",
                        [&gid],
                    )
                    .map_err(db)?;
                }
                AgAction::ModifyAvailabilityGroup(specs) | AgAction::AddReplica(specs)
                    if !specs.is_empty() =>
                {
                    for r in specs {
                        let n = m
                            .execute(
                                "UPDATE hadr_replicas SET availability_mode = coalesce(?3, availability_mode), failover_mode = coalesce(?4, failover_mode), \
                                 seeding_mode = coalesce(?5, seeding_mode), endpoint_url = coalesce(?6, endpoint_url) \
                                 WHERE group_id = ?1 AND replica_server_name = ?2 COLLATE NOCASE",
                                params![
                                    gid,
                                    r.name,
                                    r.availability_mode.map(|x| mode(Some(x))),
                                    r.failover_mode.map(|x| failover_mode(Some(x))),
                                    r.seeding_mode.map(|x| seeding(Some(x))),
                                    r.listener_url.clone().or(r.endpoint_url.clone())
                                ],
                            )
                            .map_err(db)?;
                        if n == 0 {
                            return Err(SqlError::new(
                                19405,
                                16,
                                format!(
                                    "Availability group '{}' has no member or replica named '{}'.",
                                    name.value, r.name
                                ),
                            ));
                        }
                    }
                    drop(m);
                    // A live link switches between synchronous and asynchronous commit at once.
                    if let Ok((_, d)) = dag_database(&server, &name.value) {
                        refresh_mode(&server, &d, &link_stats(&server, &d));
                    }
                }
                AgAction::ModifyReplica(r) => {
                    m.execute(
                        "UPDATE hadr_replicas SET availability_mode = coalesce(?3, availability_mode), failover_mode = coalesce(?4, failover_mode), seeding_mode = coalesce(?5, seeding_mode) WHERE group_id = ?1 AND replica_server_name = ?2 COLLATE NOCASE",
                        params![gid, r.name, r.availability_mode.map(|x| mode(Some(x))), r.failover_mode.map(|x| failover_mode(Some(x))), r.seeding_mode.map(|x| seeding(Some(x)))],
                    )
                    .map_err(db)?;
                }
                AgAction::Failover => {
                    drop(m);
                    fail_over(&server, &name.value, Failover::Planned)?;
                }
                AgAction::ForceFailoverAllowDataLoss => {
                    drop(m);
                    fail_over(&server, &name.value, Failover::Forced)?;
                }
                AgAction::Set(opts) => {
                    let role = opts
                        .iter()
                        .find(|o| o.name.eq_ignore_ascii_case("ROLE"))
                        .and_then(|o| o.word())
                        .map(|w| w.to_uppercase());
                    match role.as_deref() {
                        Some("SECONDARY") => {
                            drop(m);
                            step_down(&server, &name.value)?;
                        }
                        _ => {
                            return Err(SqlError::new(
                                40000,
                                16,
                                "ALTER AVAILABILITY GROUP … SET supports (ROLE = SECONDARY) here.",
                            ))
                        }
                    }
                }
                _ => return Err(SqlError::new(
                    40000,
                    16,
                    "This ALTER AVAILABILITY GROUP form is not available in this milink build yet.",
                )),
            }
        }
        Admin::DropAvailabilityGroup { name } => {
            let m = inst.master();
            m.execute_batch(SCHEMA).map_err(db)?;
            let gid = existing_group_id(&m, &name.value, "drop")?;
            let database: Option<String> = m
                .query_row(
                    "SELECT database_name FROM hadr_groups WHERE group_id = ?1",
                    [&gid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .flatten();
            m.execute("DELETE FROM hadr_replicas WHERE group_id = ?1", [&gid])
                .map_err(db)?;
            m.execute("DELETE FROM hadr_groups WHERE group_id = ?1", [&gid])
                .map_err(db)?;
            drop(m);
            // Removing the link stops its session and leaves the local copy online; a secondary copy becomes
            // an ordinary, writable database (its next commit starts a new epoch).
            if let Some(task) = server.joins.lock().remove(&name.value.to_lowercase()) {
                task.abort();
            }
            if let Some(d) = database.and_then(|d| inst.database(&d).ok()) {
                if d.role() == engine::database::Role::Secondary {
                    d.promote().map_err(engine_err_sql)?;
                }
                // On the primary, the removed replica's session ends and no longer holds the log.
                if let Some(st) = server.links.lock().remove(&d.name.to_lowercase()) {
                    if let Ok(mut st) = st.lock() {
                        st.removed = true;
                    }
                }
                for (who, _) in d.log_holds() {
                    if who.starts_with("replica:") || who.starts_with("seeding:") {
                        d.release_log(&who).map_err(engine_err_sql)?;
                    }
                }
            }
        }
        _ => return Ok(false),
    }
    let _ = out;
    Ok(true)
}

fn insert_replica(
    m: &rusqlite::Connection,
    gid: &str,
    ordinal: usize,
    r: &ReplicaSpec,
    is_local: bool,
    now: &str,
) -> Result<(), SqlError> {
    m.execute(
        "INSERT INTO hadr_replicas(replica_id, group_id, ordinal, replica_server_name, endpoint_url, availability_mode, failover_mode, seeding_mode, session_timeout, is_local, create_date) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            guid_text(),
            gid,
            ordinal as i64,
            r.name,
            r.endpoint_url.clone().or(r.listener_url.clone()),
            mode(r.availability_mode),
            failover_mode(r.failover_mode),
            seeding(r.seeding_mode),
            r.session_timeout.unwrap_or(10),
            is_local as i64,
            now
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// The live link of a database (the remote member of its distributed group), registered by the endpoint
/// when the managed instance connects.
pub fn link_stats(server: &Server, database: &str) -> Stats {
    server
        .links
        .lock()
        .entry(database.to_lowercase())
        .or_insert_with(|| Arc::new(std::sync::Mutex::new(LinkStats::default())))
        .clone()
}

/// The endpoint hands every authenticated inbound connection here: a secondary joining a database.
pub async fn serve_link(server: Arc<Server>, conn: hadr::transport::MirrorConnection) {
    let peer = conn.peer_name.clone();
    let s2 = server.clone();
    let r = hadr::link::serve_primary(server.inst.clone(), conn, move |database| {
        // Only a database in a distributed availability group on this instance is replicated.
        let in_dag: bool = s2
            .inst
            .master()
            .query_row(
                "SELECT count(*) FROM hadr_groups WHERE is_distributed = 1 AND database_name = ?1 COLLATE NOCASE",
                [database],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .unwrap_or(false);
        if !in_dag {
            return Err((
                35250,
                format!("Database '{database}' is not part of a distributed availability group on '{}': create the availability group and the distributed availability group first.", s2.name),
            ));
        }
        let stats = link_stats(&s2, database);
        refresh_mode(&s2, database, &stats);
        Ok(stats)
    }, |group| {
        let s3 = &server;
        match dag_database(s3, group) {
            Ok((_, d)) => Ok(d),
            Err(e) => Err((e.number, e.message)),
        }
    })
    .await;
    if let Err(e) = r {
        tracing::warn!(peer = %peer, error = %e, "link session ended");
    }
    after_session(&server);
}

/// After a session: a copy that changed role (failover) reverts its distributed groups to asynchronous
/// commit, as the product does after a failover.
fn after_session(server: &Arc<Server>) {
    let changed: Vec<(String, Stats)> = server
        .links
        .lock()
        .iter()
        .filter(|(_, s)| s.lock().map(|s| s.role_changed).unwrap_or(false))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (database, stats) in changed {
        if let Ok(mut s) = stats.lock() {
            s.role_changed = false;
        }
        if let Err(e) = revert_to_async(server, &database) {
            tracing::warn!(db = %database, error = %e.message, "cannot revert the link to asynchronous commit");
        }
        refresh_mode(server, &database, &stats);
    }
}

/// The distributed group replicating `database` here: (group id, name).
fn dag_of(server: &Server, database: &str) -> Result<Option<(String, String)>, SqlError> {
    let m = server.inst.master();
    m.execute_batch(SCHEMA).map_err(db)?;
    m.query_row(
        "SELECT group_id, name FROM hadr_groups WHERE is_distributed = 1 AND database_name = ?1 COLLATE NOCASE",
        [database],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(db)
}

/// Synchronous commit needs SYNCHRONOUS_COMMIT on both members of the distributed group (as in SQL Server);
/// the live session follows the catalog.
pub fn refresh_mode(server: &Server, database: &str, stats: &Stats) {
    let Ok(Some((gid, _))) = dag_of(server, database) else {
        return;
    };
    let m = server.inst.master();
    let (sync, timeout): (bool, i64) = m
        .query_row(
            "SELECT min(availability_mode = 'SYNCHRONOUS_COMMIT'), max(session_timeout) FROM hadr_replicas WHERE group_id = ?1",
            [&gid],
            |r| Ok((r.get::<_, Option<bool>>(0)?.unwrap_or(false), r.get::<_, Option<i64>>(1)?.unwrap_or(10))),
        )
        .unwrap_or((false, 10));
    if let Ok(mut s) = stats.lock() {
        s.sync_mode = sync;
        s.session_timeout = Some(std::time::Duration::from_secs(timeout.clamp(5, 3600) as u64));
    }
}

fn revert_to_async(server: &Server, database: &str) -> Result<(), SqlError> {
    if let Some((gid, _)) = dag_of(server, database)? {
        server
            .inst
            .master()
            .execute(
                "UPDATE hadr_replicas SET availability_mode = 'ASYNCHRONOUS_COMMIT' WHERE group_id = ?1",
                [&gid],
            )
            .map_err(db)?;
    }
    Ok(())
}

/// REST PATCH replicationMode: both members of the distributed group switch mode on this instance.
pub fn set_replication_mode(server: &Server, dag: &str, sync: bool) -> Result<(), SqlError> {
    let (gid, database) = dag_database(server, dag)?;
    server
        .inst
        .master()
        .execute(
            "UPDATE hadr_replicas SET availability_mode = ?2 WHERE group_id = ?1",
            params![
                gid,
                if sync {
                    "SYNCHRONOUS_COMMIT"
                } else {
                    "ASYNCHRONOUS_COMMIT"
                }
            ],
        )
        .map_err(db)?;
    refresh_mode(server, &database, &link_stats(server, &database));
    Ok(())
}

/// A distributed group's id and database, or 15151 / 41194 for what is not one.
fn dag_database(server: &Server, dag: &str) -> Result<(String, String), SqlError> {
    let m = server.inst.master();
    m.execute_batch(SCHEMA).map_err(db)?;
    let gid = existing_group_id(&m, dag, "find")?;
    let (dist, database): (i64, Option<String>) = m
        .query_row(
            "SELECT is_distributed, database_name FROM hadr_groups WHERE group_id = ?1",
            [&gid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    match (dist, database) {
        (1, Some(d)) => Ok((gid, d)),
        _ => Err(SqlError::new(
            41194,
            16,
            format!("'{dag}' is not a distributed availability group replicating a database: with CLUSTER_TYPE = NONE, fail over the distributed availability group of the link."),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// No data loss: the partner must be (or, from REST, become) synchronized.
    Planned,
    /// From REST: planned, switching to synchronous commit first as the product does.
    PlannedSwitchingToSync,
    /// FORCE_FAILOVER_ALLOW_DATA_LOSS, on the secondary: it becomes primary at what it has hardened.
    Forced,
    /// SET (ROLE = SECONDARY) (REST setRole Secondary, Forced): see [`step_down`].
    StepDown,
}

/// Fail the distributed group over to this instance's partner (planned, run on either side) or to this
/// instance (forced, run on the secondary).
pub fn fail_over(server: &Arc<Server>, dag: &str, kind: Failover) -> Result<(), SqlError> {
    if kind == Failover::StepDown {
        return step_down(server, dag);
    }
    let (_, database) = dag_database(server, dag)?;
    let d = server
        .inst
        .database_any_state(&database)
        .map_err(engine_err_sql)?;
    let stats = link_stats(server, &database);
    if kind == Failover::Forced {
        if d.role() == engine::database::Role::Primary {
            return Err(SqlError::new(
                41122,
                16,
                format!("Cannot force a failover of availability group '{dag}' to this instance: its database '{database}' is already the primary here."),
            ));
        }
        if d.control().consistent_at.is_some() {
            return Err(SqlError::new(
                41142,
                16,
                format!("Database '{database}' is still being seeded on this instance and has no consistent copy to fail over to."),
            ));
        }
        d.promote().map_err(engine_err_sql)?;
        let lsn = d.log().durable_lsn();
        tracing::warn!(db = %database, dag, lsn, "forced failover: this copy is primary from LSN {}; anything the former primary committed after LSN {lsn} is not here", lsn + 1);
        if let Ok(mut s) = stats.lock() {
            s.role_changed = true;
        }
        // The session still attached to the former primary ends at its next message; the link task then
        // offers this copy to the former primary when it is back.
        after_session(server);
        return Ok(());
    }
    hadr::link::request_failover(
        &stats,
        kind == Failover::Planned,
        std::time::Duration::from_secs(60),
    )
    .map_err(|(n, m)| SqlError::new(n, 16, m))?;
    if let Ok(mut s) = stats.lock() {
        s.role_changed = true;
    }
    after_session(server);
    Ok(())
}

/// SET (ROLE = SECONDARY): this copy stops taking writes and waits to be offered the partner's history.
pub fn step_down(server: &Arc<Server>, dag: &str) -> Result<(), SqlError> {
    let (_, database) = dag_database(server, dag)?;
    let d = server
        .inst
        .database_any_state(&database)
        .map_err(engine_err_sql)?;
    if d.role() == engine::database::Role::Secondary {
        return Err(SqlError::new(
            41146,
            16,
            format!("Database '{database}' of availability group '{dag}' is already SECONDARY on this instance."),
        ));
    }
    d.fence_writes(std::time::Duration::from_secs(30))
        .map_err(engine_err_sql)?;
    let r = d.demote();
    d.unfence_writes();
    r.map_err(engine_err_sql)?;
    if let Ok(mut s) = link_stats(server, &database).lock() {
        s.role_changed = true;
    }
    after_session(server);
    Ok(())
}

/// Rows of the HADR views.
pub fn rows(server: &Arc<Server>, key: &str) -> Result<Vec<Vec<Value>>, SqlError> {
    let m = server.inst.master();
    m.execute_batch(SCHEMA).map_err(db)?;
    let text = |s: &str| Value::NVarChar(s.to_string());
    let guid = |s: &str| {
        tsql::value::convert(
            &Value::VarChar(s.to_string()),
            &tsql::DataType::UniqueIdentifier,
            None,
        )
        .unwrap_or(Value::Null)
    };
    let dt = |s: &str| {
        tsql::value::convert(
            &Value::VarChar(s.to_string()),
            &tsql::DataType::DateTime,
            None,
        )
        .unwrap_or(Value::Null)
    };
    let mut out = Vec::new();
    match key {
        "sys.availability_groups" => {
            let mut st = m.prepare("SELECT group_id, name, is_distributed, cluster_type, sequence_number FROM hadr_groups ORDER BY sequence_number").map_err(db)?;
            let it = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(db)?;
            for x in it {
                let (gid, name, dist, ct, seq) = x.map_err(db)?;
                let ct_code = match ct.as_str() {
                    "WSFC" => 0,
                    "EXTERNAL" => 1,
                    _ => 2,
                };
                out.push(vec![
                    guid(&gid),
                    text(&name),
                    Value::Int(3),
                    Value::Int(30000),
                    Value::TinyInt(1),
                    text("SECONDARY"),
                    Value::Int(1),
                    Value::Bit(false),
                    Value::Bit(false),
                    Value::Bit(dist != 0),
                    Value::TinyInt(ct_code),
                    text(&ct),
                    Value::Int(0),
                    Value::BigInt(seq),
                    Value::Bit(false),
                ]);
            }
        }
        "sys.availability_replicas" | "sys.dm_hadr_availability_replica_states" => {
            let mut st = m
                .prepare(
                    "SELECT r.replica_id, r.group_id, r.replica_server_name, r.endpoint_url, r.availability_mode, r.failover_mode, r.seeding_mode, \
                     r.session_timeout, r.is_local, r.create_date, g.is_distributed, g.database_name, r.ordinal \
                     FROM hadr_replicas r JOIN hadr_groups g ON g.group_id = r.group_id ORDER BY g.sequence_number, r.ordinal",
                )
                .map_err(db)?;
            type Row = (
                String,
                String,
                String,
                Option<String>,
                String,
                String,
                String,
                i64,
                i64,
                String,
                i64,
                Option<String>,
                i64,
            );
            let all: Vec<Row> = st
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                    ))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            drop(st);
            drop(m);
            for (
                rid,
                gid,
                name,
                url,
                am,
                fm,
                sm,
                timeout,
                local,
                created,
                dist,
                database,
                ordinal,
            ) in all
            {
                if key == "sys.availability_replicas" {
                    out.push(vec![
                        guid(&rid),
                        guid(&gid),
                        Value::Int(ordinal as i32 + 1),
                        text(&name),
                        url.as_deref().map(text).unwrap_or(Value::Null),
                        Value::TinyInt(if am == "SYNCHRONOUS_COMMIT" {
                            1
                        } else if am == "CONFIGURATION_ONLY" {
                            4
                        } else {
                            0
                        }),
                        text(&am),
                        Value::TinyInt(if fm == "AUTOMATIC" {
                            0
                        } else if fm == "EXTERNAL" {
                            2
                        } else {
                            1
                        }),
                        text(&fm),
                        Value::Int(timeout as i32),
                        Value::TinyInt(3),
                        text("ALL"),
                        Value::TinyInt(0),
                        text("NO"),
                        dt(&created),
                        dt(&created),
                        Value::Int(50),
                        Value::TinyInt(if sm == "MANUAL" { 1 } else { 0 }),
                        text(&sm),
                    ]);
                    continue;
                }
                // Live state: the local replica has its database's role, the remote member the other one; the
                // remote member shows its link.
                let primary_here = database
                    .as_deref()
                    .and_then(|d| server.inst.database_any_state(d).ok())
                    .map(|d| d.role() == engine::database::Role::Primary)
                    .unwrap_or(true);
                let local_role = if primary_here { "PRIMARY" } else { "SECONDARY" };
                let remote_role = if primary_here { "SECONDARY" } else { "PRIMARY" };
                let (role, connected, err) = if local != 0 {
                    (local_role, true, None)
                } else {
                    let live = database
                        .as_deref()
                        .and_then(|d| server.links.lock().get(&d.to_lowercase()).cloned());
                    let (connected, err) = match live.and_then(|s| s.lock().ok().map(|s| s.clone()))
                    {
                        Some(s) => (s.connected, s.last_error),
                        None => (false, None),
                    };
                    // A refused handshake never reaches the link: the endpoint keeps the last refusal.
                    let err = err.or_else(|| {
                        if connected {
                            return None;
                        }
                        let h = crate::endpoints::state(server).ok()?;
                        let e = h.errors().last()?;
                        Some((e.number, e.message))
                    });
                    (remote_role, connected, err)
                };
                let _ = dist;
                out.push(vec![
                    guid(&rid),
                    guid(&gid),
                    Value::Bit(local != 0),
                    Value::TinyInt(if role == "PRIMARY" { 1 } else { 2 }),
                    text(role),
                    Value::TinyInt(if local != 0 { 2 } else { 0 }),
                    if local != 0 {
                        text("ONLINE")
                    } else {
                        Value::Null
                    },
                    Value::TinyInt(connected as u8),
                    text(if connected {
                        "CONNECTED"
                    } else {
                        "DISCONNECTED"
                    }),
                    if local != 0 {
                        text("ONLINE")
                    } else {
                        Value::Null
                    },
                    Value::TinyInt(if connected { 2 } else { 0 }),
                    text(if connected { "HEALTHY" } else { "NOT_HEALTHY" }),
                    err.as_ref().map(|e| Value::Int(e.0)).unwrap_or(Value::Null),
                    err.as_ref().map(|e| text(&e.1)).unwrap_or(Value::Null),
                    if err.is_some() {
                        Value::DateTime(chrono::Local::now().naive_local())
                    } else {
                        Value::Null
                    },
                ]);
            }
        }
        "sys.dm_hadr_database_replica_states" => {
            let mut st = m
                .prepare(
                    "SELECT g.group_id, r.replica_id, r.is_local, g.database_name FROM hadr_groups g JOIN hadr_replicas r ON r.group_id = g.group_id \
                     WHERE g.is_distributed = 1 AND g.database_name IS NOT NULL ORDER BY g.sequence_number, r.ordinal",
                )
                .map_err(db)?;
            let all: Vec<(String, String, i64, String)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            drop(st);
            drop(m);
            for (gid, rid, local, database) in all {
                let Ok(d) = server.inst.database_any_state(&database) else {
                    continue;
                };
                let end = d.log().durable_lsn();
                let primary_here = d.role() == engine::database::Role::Primary;
                let live = server.links.lock().get(&database.to_lowercase()).cloned();
                let s = live
                    .and_then(|s| s.lock().ok().map(|s| s.clone()))
                    .unwrap_or_default();
                // The local row describes this copy; the remote row, what the link knows of the other one.
                let (hardened, redone, sent) = if local != 0 {
                    (end, end, end)
                } else {
                    (s.last_hardened_lsn, s.last_redone_lsn, s.last_sent_lsn)
                };
                let queue_kb = if local == 0 && primary_here {
                    d.log().bytes_from(hardened + 1) / 1024
                } else {
                    0
                };
                // As SQL Server shows them: the primary's own copy is SYNCHRONIZED; a secondary is SYNCHRONIZED
                // only while synchronous commit is in force, else SYNCHRONIZING (asynchronous commit never is).
                let state = if local != 0 && d.control().consistent_at.is_some() {
                    "INITIALIZING"
                } else if local != 0 && primary_here {
                    "SYNCHRONIZED"
                } else if !s.connected {
                    "NOT SYNCHRONIZING"
                } else if (primary_here && d.sync_commit_active()) || (local != 0 && s.sync_mode) {
                    "SYNCHRONIZED"
                } else {
                    "SYNCHRONIZING"
                };
                out.push(vec![
                    Value::Int(d.id),
                    guid(&gid),
                    guid(&rid),
                    Value::Bit(local != 0),
                    Value::Bit(local != 0 && primary_here),
                    text(state),
                    text(if state == "NOT SYNCHRONIZING" {
                        "NOT_HEALTHY"
                    } else {
                        "HEALTHY"
                    }),
                    text(d.control().state.desc()),
                    Value::Bit(false),
                    crate::sysviews::lsn(sent),
                    crate::sysviews::lsn(hardened),
                    crate::sysviews::lsn(redone),
                    crate::sysviews::lsn(end),
                    crate::sysviews::lsn(end),
                    Value::BigInt(queue_kb as i64),
                    Value::BigInt(0),
                    Value::BigInt(if hardened >= end || local != 0 {
                        0
                    } else {
                        (chrono::Utc::now().timestamp_micros() - d.log().last_commit_time_us())
                            .max(0)
                            / 1_000_000
                    }),
                ]);
            }
        }
        "sys.dm_hadr_physical_seeding_stats" => {
            drop(m);
            let links: Vec<(String, hadr::link::Stats)> = server
                .links
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (database, stats) in links {
                let Some(sd) = stats.lock().ok().and_then(|s| s.seeding.clone()) else {
                    continue;
                };
                let secs = sd
                    .finished
                    .map(|f| f.0)
                    .unwrap_or_else(std::time::Instant::now)
                    .duration_since(sd.started)
                    .as_secs_f64()
                    .max(0.001);
                let rate = sd.transferred_bytes as f64 / secs;
                let remaining =
                    sd.database_bytes.saturating_sub(sd.transferred_bytes) as f64 / rate.max(1.0);
                let now = chrono::Utc::now().naive_utc();
                let destination = server
                    .inst
                    .database_any_state(&database)
                    .is_ok_and(|d| d.role() == engine::database::Role::Secondary);
                out.push(vec![
                    text(&database),
                    text(if destination { "Destination" } else { "Source" }),
                    text(if sd.done {
                        "Success"
                    } else {
                        "ReadingAndSendingData"
                    }),
                    Value::BigInt(rate as i64),
                    Value::BigInt(sd.transferred_bytes as i64),
                    Value::BigInt(sd.database_bytes as i64),
                    Value::DateTime(now - chrono::Duration::milliseconds((secs * 1000.0) as i64)),
                    Value::DateTime(
                        now + chrono::Duration::milliseconds((remaining * 1000.0) as i64),
                    ),
                    Value::Bit(true),
                ]);
            }
        }
        "sys.dm_hadr_automatic_seeding" => {
            drop(m);
            let links: Vec<(String, hadr::link::Stats)> = server
                .links
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (database, stats) in links {
                let Some(sd) = stats.lock().ok().and_then(|s| s.seeding.clone()) else {
                    continue;
                };
                let db_id = server.inst.database_id(&database).unwrap_or(0);
                out.push(vec![
                    Value::DateTime(sd.started_utc.naive_utc()),
                    sd.finished
                        .map(|f| Value::DateTime(f.1.naive_utc()))
                        .unwrap_or(Value::Null),
                    Value::Int(db_id),
                    text(&database),
                    Value::Bit(true),
                    text(if sd.done { "COMPLETED" } else { "SEEDING" }),
                    Value::Bit(sd.done),
                    Value::Int(0),
                    text("NONE"),
                    Value::Int(0),
                    Value::Int(sd.attempt as i32),
                    Value::BigInt(sd.transferred_bytes as i64),
                ]);
            }
        }
        _ => {}
    }
    let _ = display;
    Ok(out)
}

/// The managed instance joins a distributed availability group whose primary is `source_endpoint`
/// (`TCP://host:port`): it records the group and keeps a link session to the primary running (reconnecting
/// after failures) until the group is dropped. This is what the management API's PUT of a distributed
/// availability group does.
#[allow(clippy::too_many_arguments)]
pub fn join_distributed_group(
    server: &Arc<Server>,
    runtime: &tokio::runtime::Handle,
    settings: hadr::transport::EndpointSettings,
    dag: &str,
    primary_ag: &str,
    local_ag: &str,
    database: &str,
    source_endpoint: &str,
) -> Result<(), SqlError> {
    let (host, port) = parse_endpoint_url(source_endpoint)?;
    let m = server.inst.master();
    m.execute_batch(SCHEMA).map_err(db)?;
    let exists: Option<String> = m
        .query_row(
            "SELECT group_id FROM hadr_groups WHERE name = ?1",
            [dag],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if exists.is_none() {
        let gid = guid_text();
        let now = chrono::Local::now()
            .naive_local()
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string();
        let seq: i64 = m
            .query_row(
                "SELECT coalesce(max(sequence_number), 0) + 1 FROM hadr_groups",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        m.execute(
            "INSERT INTO hadr_groups(group_id, name, is_distributed, cluster_type, database_name, sequence_number, create_date) VALUES (?1, ?2, 1, 'NONE', ?3, ?4, ?5)",
            params![gid, dag, (!database.is_empty()).then_some(database), seq, now],
        )
        .map_err(db)?;
        let spec = |name: &str, url: Option<String>| ReplicaSpec {
            name: name.to_string(),
            endpoint_url: None,
            listener_url: url,
            availability_mode: Some(AvailabilityMode::AsynchronousCommit),
            failover_mode: Some(FailoverMode::Manual),
            seeding_mode: Some(SeedingMode::Automatic),
            session_timeout: Some(20),
            options: vec![],
        };
        insert_replica(
            &m,
            &gid,
            0,
            &spec(primary_ag, Some(source_endpoint.to_string())),
            false,
            &now,
        )?;
        insert_replica(&m, &gid, 1, &spec(local_ag, None), true, &now)?;
    }
    drop(m);
    let (inst, mut db_name, dag_name) =
        (server.inst.clone(), database.to_string(), dag.to_string());
    let server2 = server.clone();
    let task = runtime.spawn(async move {
        let errors = hadr::transport::ConnectErrorLog::default();
        let mut stats = link_stats(&server2, &db_name);
        loop {
            let addr = match tokio::net::lookup_host((host.as_str(), port)).await.ok().and_then(|mut a| a.next()) {
                Some(a) => a,
                None => {
                    if let Ok(mut s) = stats.lock() {
                        s.last_error = Some((1418, format!("The server network address \"TCP://{host}:{port}\" can not be reached or does not exist.")));
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    continue;
                }
            };
            if db_name.is_empty() {
                // Joined with T-SQL: ask the primary which database this group replicates, then record it.
                match hadr::link::resolve_database(&settings, &errors, &host, addr, &dag_name).await {
                    Ok(d) => {
                        if let Err(e) = set_dag_database(&server2, &dag_name, &d) {
                            tracing::warn!(dag = %dag_name, error = %e.message, "cannot record the group's database");
                        }
                        db_name = d;
                        stats = link_stats(&server2, &db_name);
                    }
                    Err((n, m)) => {
                        if let Ok(mut s) = stats.lock() {
                            s.last_error = Some((n, m));
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            refresh_mode(&server2, &db_name, &stats);
            let r = hadr::link::dial(inst.clone(), &settings, &errors, &host, addr, &db_name, stats.clone()).await;
            after_session(&server2);
            match r {
                // A session that ended cleanly ended for a role change: reconnect in the new roles at once.
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(dag = %dag_name, error = %e, "link to the partner ended; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    if let Some(old) = server.joins.lock().insert(dag.to_lowercase(), task) {
        old.abort();
    }
    Ok(())
}

/// `ALTER AVAILABILITY GROUP [DAG] JOIN AVAILABILITY GROUP ON N'<primary AG>' WITH (LISTENER_URL = 'TCP://…', …),
/// N'<local AG>' WITH (…)`: this instance joins the distributed group as its secondary, the T-SQL equivalent of the
/// management API's PUT. The database comes from the primary (automatic seeding brings it), so the link first asks
/// the primary which database the group replicates.
fn join_from_tsql(server: &Arc<Server>, dag: &str, groups: &[ReplicaSpec]) -> Result<(), SqlError> {
    let [primary, local] = groups else {
        return Err(SqlError::new(
            19502,
            16,
            "JOIN AVAILABILITY GROUP ON names exactly two availability groups: the primary's, then this instance's.",
        ));
    };
    let url = primary.listener_url.clone().ok_or_else(|| {
        SqlError::new(
            19503,
            16,
            format!("LISTENER_URL is required for availability group '{}' in a distributed availability group.", primary.name),
        )
    })?;
    ensure_new_group(&server.inst.master(), dag)?;
    let h = crate::endpoints::state(server)?;
    let settings = h.settings().ok_or_else(|| {
        SqlError::new(
            35250,
            16,
            "This instance has no database mirroring endpoint: create one (CREATE ENDPOINT … FOR DATABASE_MIRRORING) before joining a distributed availability group.",
        )
    })?;
    let handle = h.handle().clone();
    join_distributed_group(
        server,
        &handle,
        settings,
        dag,
        &primary.name,
        &local.name,
        "",
        &url,
    )?;
    // The replicas as the statement described them (modes, seeding), not the API's defaults.
    let m = server.inst.master();
    for r in [primary, local] {
        m.execute(
            "UPDATE hadr_replicas SET availability_mode = coalesce(?3, availability_mode), failover_mode = coalesce(?4, failover_mode), \
             seeding_mode = coalesce(?5, seeding_mode), session_timeout = coalesce(?6, session_timeout) \
             WHERE group_id = (SELECT group_id FROM hadr_groups WHERE name = ?1) AND replica_server_name = ?2 COLLATE NOCASE",
            params![
                dag,
                r.name,
                r.availability_mode.map(|x| mode(Some(x))),
                r.failover_mode.map(|x| failover_mode(Some(x))),
                r.seeding_mode.map(|x| seeding(Some(x))),
                r.session_timeout
            ],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// `TCP://host:port` (any case; a `;Server=[…]` suffix is ignored).
pub fn parse_endpoint_url(url: &str) -> Result<(String, u16), SqlError> {
    let u = url.split(';').next().unwrap_or("").trim();
    let rest = u
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("tcp://"))
        .map(|_| &u[6..]);
    let bad = || {
        SqlError::new(
            35201,
            16,
            format!("The endpoint URL '{url}' is not valid: expected TCP://<host>:<port>."),
        )
    };
    let rest = rest.ok_or_else(bad)?;
    let (h, p) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = p.trim_end_matches('/').parse().map_err(|_| bad())?;
    Ok((h.trim_matches(|c| c == '[' || c == ']').to_string(), port))
}

fn set_dag_database(server: &Server, dag: &str, database: &str) -> Result<(), SqlError> {
    server
        .inst
        .master()
        .execute(
            "UPDATE hadr_groups SET database_name = ?2 WHERE name = ?1 AND is_distributed = 1",
            params![dag, database],
        )
        .map_err(db)?;
    Ok(())
}

/// After a restart, an instance resumes every distributed group it had joined as the secondary (REST PUT or
/// T-SQL JOIN: the partner's group is the group's first member). A group this instance created itself lists its
/// own member first and is served from its endpoint instead.
pub fn resume_joins(
    server: &Arc<Server>,
    runtime: &tokio::runtime::Handle,
    settings: &hadr::transport::EndpointSettings,
) -> Result<usize, SqlError> {
    let joins: Vec<(String, String, String, String, String)> = {
        let m = server.inst.master();
        m.execute_batch(SCHEMA).map_err(db)?;
        let mut st = m
            .prepare(
                "SELECT g.name, coalesce(g.database_name, ''), p.replica_server_name, l.replica_server_name, p.endpoint_url \
                 FROM hadr_groups g JOIN hadr_replicas p ON p.group_id = g.group_id AND p.is_local = 0 \
                 JOIN hadr_replicas l ON l.group_id = g.group_id AND l.is_local = 1 \
                 WHERE g.is_distributed = 1 AND p.endpoint_url IS NOT NULL AND p.ordinal = 0",
            )
            .map_err(db)?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows
    };
    let mut n = 0;
    for (dag, database, primary_ag, local_ag, endpoint) in joins {
        // The managed instance always dials, whichever side is primary now.
        {
            join_distributed_group(
                server,
                runtime,
                settings.clone(),
                &dag,
                &primary_ag,
                &local_ag,
                &database,
                &endpoint,
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// 35200 if an availability group of that name exists already.
fn ensure_new_group(m: &rusqlite::Connection, name: &str) -> Result<(), SqlError> {
    m.execute_batch(SCHEMA).map_err(db)?;
    let exists: Option<String> = m
        .query_row(
            "SELECT name FROM hadr_groups WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    match exists {
        Some(_) => Err(SqlError::new(
            35200,
            16,
            format!("An availability group named '{name}' already exists on this instance. Choose another name."),
        )),
        None => Ok(()),
    }
}

/// The group_id of an existing availability group; 15151 names the attempted action ("find", "drop").
fn existing_group_id(
    m: &rusqlite::Connection,
    name: &str,
    action: &str,
) -> Result<String, SqlError> {
    m.query_row(
        "SELECT group_id FROM hadr_groups WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| {
        SqlError::new(
            15151,
            16,
            format!("Cannot {action} the availability group '{name}', because it does not exist or you do not have permission."),
        )
    })
}
