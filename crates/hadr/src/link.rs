//! The link's replication session over an authenticated mirroring connection. The managed instance dials the
//! SQL Server's endpoint; whichever side is the primary for the database serves the other as its secondary (the
//! dialer says Join when it is the secondary, Offer when it is the primary after a failover), so the connection
//! never has to be reversed. The primary seeds a secondary that has no copy (or resumes an interrupted seeding),
//! then ships its log from the secondary's hardened LSN on; the secondary acks what it hardened, which releases
//! the primary's log and, in synchronous commit, the primary's waiting commits. Planned failover is a handover
//! inside this session; a copy whose history forked (forced failover) is told where, reports what it loses, and
//! is reseeded.

use crate::protocol::Message;
use crate::seeding::SeedSource;
use crate::shipping::{self, LogShipper};
use crate::transport::{
    self, ConnectErrorLog, EndpointSettings, MessageKind, MirrorReader, MirrorWriter,
};
use engine::database::Role;
use engine::{timeline, Database, Instance};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the replica-state views show about one side of a link, and how statements steer it.
#[derive(Debug, Clone, Default)]
pub struct LinkStats {
    pub connected: bool,
    pub last_sent_lsn: u64,
    pub last_hardened_lsn: u64,
    pub last_redone_lsn: u64,
    pub seeding: Option<SeedingStats>,
    pub last_error: Option<(i32, String)>,
    /// The link was removed (DROP AVAILABILITY GROUP): the session ends and releases the log it held.
    pub removed: bool,
    /// Both members of the distributed group are SYNCHRONOUS_COMMIT: once the secondary is in step, the
    /// primary's commits wait for it.
    pub sync_mode: bool,
    pub session_timeout: Option<Duration>,
    /// A planned failover asked of this session, answered through its channel.
    pub request: Option<FailoverRequest>,
    /// The local copy changed role during the session (promoted or stepped down): the catalog must follow.
    pub role_changed: bool,
    /// Sessions started on this link: the one that ends only marks the link disconnected if no newer one
    /// has started meanwhile.
    pub session: u64,
}

/// The link is connected for the life of one session.
struct Connected {
    stats: Stats,
    id: u64,
}

impl Connected {
    fn new(stats: &Stats) -> Connected {
        let mut id = 0;
        if let Ok(mut s) = stats.lock() {
            s.session += 1;
            s.connected = true;
            id = s.session;
        }
        Connected {
            stats: stats.clone(),
            id,
        }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stats.lock() {
            if s.session == self.id {
                s.connected = false;
            }
        }
    }
}

impl LinkStats {
    /// A seeding (or a resumed attempt of it) begins; `database_bytes` is 0 when not known yet.
    fn start_seeding(&mut self, database_bytes: u64) {
        let attempt = self.seeding.as_ref().map(|s| s.attempt).unwrap_or(0) + 1;
        self.seeding = Some(SeedingStats {
            started: Instant::now(),
            started_utc: chrono::Utc::now(),
            finished: None,
            transferred_bytes: 0,
            database_bytes,
            done: false,
            attempt,
        });
    }

    /// `bytes` more were copied; the database is at least `database_bytes` (it may grow during the copy).
    fn seeded(&mut self, bytes: u64, database_bytes: u64) {
        if let Some(sd) = self.seeding.as_mut() {
            sd.transferred_bytes += bytes;
            sd.database_bytes = sd
                .database_bytes
                .max(database_bytes)
                .max(sd.transferred_bytes);
        }
    }

    fn finish_seeding(&mut self) {
        if let Some(sd) = self.seeding.as_mut() {
            sd.done = true;
            sd.finished = Some((Instant::now(), chrono::Utc::now()));
        }
    }
}

/// A planned failover request (T-SQL FAILOVER, REST failover/setRole) for the session to carry out.
#[derive(Debug, Clone)]
pub struct FailoverRequest {
    pub require_synchronized: bool,
    pub reply: std::sync::mpsc::SyncSender<Result<(), (i32, String)>>,
}

#[derive(Debug, Clone)]
pub struct SeedingStats {
    pub started: Instant,
    pub started_utc: chrono::DateTime<chrono::Utc>,
    pub finished: Option<(Instant, chrono::DateTime<chrono::Utc>)>,
    pub transferred_bytes: u64,
    pub database_bytes: u64,
    pub done: bool,
    /// Seedings of this database started on this link (an interrupted one resumes as a new attempt).
    pub attempt: u32,
}

pub type Stats = Arc<Mutex<LinkStats>>;

const PAGES_PER_MESSAGE: u32 = 256;
/// Page messages a seeding keeps in flight before it waits for an ack.
const SEED_WINDOW: u32 = 8;
/// The resume point is made durable (an fsync of the copy and of its control file) every this many messages.
const SEED_CHECKPOINT_EVERY: u32 = 16;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

async fn send(w: &mut MirrorWriter, m: &Message) -> Result<(), String> {
    w.send(&transport::Message::new(MessageKind::Data, m.encode()))
        .await
        .map_err(e)
}

async fn send_shared(w: &tokio::sync::Mutex<MirrorWriter>, m: &Message) -> Result<(), String> {
    send(&mut *w.lock().await, m).await
}

/// A raw block larger than this travels in BlockChunk pieces (the transport's frames are bounded).
const CHUNK: usize = 8 << 20;
/// The largest block a secondary joins from pieces (one transaction's pages; memory is bounded by it).
const MAX_BLOCK: usize = 4 << 30;

/// Ship raw blocks in order: small ones together in Blocks messages, a very large one in pieces.
async fn send_blocks(
    w: &tokio::sync::Mutex<MirrorWriter>,
    batch: Vec<Vec<u8>>,
) -> Result<(), String> {
    let mut small = Vec::new();
    for raw in batch {
        if raw.len() <= CHUNK {
            small.push(raw);
            continue;
        }
        if !small.is_empty() {
            let blocks = std::mem::take(&mut small);
            send_shared(w, &Message::Blocks { blocks }).await?;
        }
        let pieces: Vec<&[u8]> = raw.chunks(CHUNK).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let m = Message::BlockChunk {
                data: piece.to_vec(),
                last: i + 1 == pieces.len(),
            };
            send_shared(w, &m).await?;
        }
    }
    if !small.is_empty() {
        send_shared(w, &Message::Blocks { blocks: small }).await?;
    }
    Ok(())
}

async fn recv(r: &mut MirrorReader) -> Result<Message, String> {
    loop {
        let m = r.recv().await.map_err(e)?;
        if m.kind != MessageKind::Data {
            continue;
        }
        let p = m.plain_payload().map_err(e)?;
        return Message::decode(&p)
            .map(|(m, _)| m)
            .map_err(|d| format!("link message: {d:?}"));
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> engine::Result<T> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(e)?
        .map_err(|x| x.message)
}

/// Send a failover request to this link's session and wait for its outcome (blocking; call off the runtime).
pub fn request_failover(
    stats: &Stats,
    require_synchronized: bool,
    timeout: Duration,
) -> Result<(), (i32, String)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    {
        let mut s = stats
            .lock()
            .map_err(|_| (50000, "link state poisoned".to_string()))?;
        if !s.connected {
            return Err((
                41142,
                "The partner of this distributed availability group is not connected, so no planned failover is possible. Check sys.dm_hadr_availability_replica_states (connected_state_desc, last_connect_error_description); a forced failover (FORCE_FAILOVER_ALLOW_DATA_LOSS on the secondary) does not need the partner.".into(),
            ));
        }
        if s.request.is_some() {
            return Err((
                41145,
                "A failover of this distributed availability group is already in progress.".into(),
            ));
        }
        s.request = Some(FailoverRequest {
            require_synchronized,
            reply: tx,
        });
    }
    let r = rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err((
            41144,
            format!("The failover did not complete within {} seconds; check the replica states before retrying.", timeout.as_secs()),
        ))
    });
    if let Ok(mut s) = stats.lock() {
        s.request = None;
    }
    r
}

/// The listening side: serve one accepted connection until it ends. The dialer either joins a database as a
/// secondary (Join) or, being the primary after a failover, offers it (Offer). `admit` decides whether this
/// instance replicates that database (a refusal goes back with its number) and where the session reports.
pub async fn serve_primary(
    inst: Arc<Instance>,
    conn: transport::MirrorConnection,
    admit: impl Fn(&str) -> Result<Stats, (i32, String)>,
    resolve: impl Fn(&str) -> Result<String, (i32, String)>,
) -> Result<(), String> {
    let peer = conn.peer_name.clone();
    let (mut rd, mut wr) = conn.into_split();
    let first = recv(&mut rd).await?;
    if let Message::Resolve { group } = &first {
        let answer = match resolve(group) {
            Ok(database) => Message::Resolved { database },
            Err((number, message)) => Message::Error { number, message },
        };
        return send(&mut wr, &answer).await;
    }
    let database = match &first {
        Message::Join { database, .. } | Message::Offer { database, .. } => database.clone(),
        _ => return Err("the partner did not start with Join or Offer".into()),
    };
    let stats = match admit(&database) {
        Ok(s) => s,
        Err((number, message)) => {
            send(
                &mut wr,
                &Message::Error {
                    number,
                    message: message.clone(),
                },
            )
            .await?;
            return Err(message);
        }
    };
    let r = match first {
        Message::Offer { history, .. } => {
            accept_offer(&inst, &peer, &database, &history, rd, wr, &stats).await
        }
        join => primary_session(&inst, &peer, &database, join, rd, wr, &stats).await,
    };
    if let Ok(mut s) = stats.lock() {
        if let Err(x) = &r {
            if s.last_error.is_none() {
                s.last_error = Some((35206, x.clone()));
            }
        }
    }
    r
}

/// Whose history is newer when both copies think they are primary: the one promoted more often (the high
/// half of an epoch counts promotions), so a copy that missed a forced failover always loses.
fn promotions(h: &[(u64, u64)]) -> u64 {
    h.last().map(|(e, _)| *e >> 32).unwrap_or(0)
}

/// Step down because the partner is primary with a newer history (it was promoted by a forced failover while
/// this copy was down or cut off): from now on this copy refuses writes.
async fn step_down_for(db: &Arc<Database>, peer: &str, stats: &Stats) -> Result<(), String> {
    let d = db.clone();
    blocking(move || {
        d.fence_writes(Duration::from_secs(30))?;
        let r = d.demote();
        d.unfence_writes();
        r
    })
    .await?;
    tracing::warn!(db = %db.name, peer = %peer, "stepped down: the partner became primary with a newer history (a forced failover)");
    if let Ok(mut s) = stats.lock() {
        s.role_changed = true;
    }
    Ok(())
}

/// The dialer offers its copy as primary. A copy here that is secondary (or absent) joins it. A copy here that
/// is still primary steps down if the offer is newer; otherwise it answers with its own offer and stays primary.
async fn accept_offer(
    inst: &Arc<Instance>,
    peer: &str,
    database: &str,
    theirs: &[(u64, u64)],
    rd: MirrorReader,
    mut wr: MirrorWriter,
    stats: &Stats,
) -> Result<(), String> {
    let primary_here = inst
        .database_any_state(database)
        .ok()
        .filter(|d| d.role() == Role::Primary);
    let Some(db) = primary_here else {
        return secondary_session(inst, database, rd, wr, stats).await;
    };
    let ours = db.timeline();
    if promotions(theirs) > promotions(&ours) {
        step_down_for(&db, peer, stats).await?;
        return secondary_session(inst, database, rd, wr, stats).await;
    }
    send(
        &mut wr,
        &Message::Offer {
            database: database.to_string(),
            history: ours,
        },
    )
    .await?;
    let mut rd = rd;
    match recv(&mut rd).await? {
        j @ Message::Join { .. } => primary_session(inst, peer, database, j, rd, wr, stats).await,
        Message::Error { number, message } => {
            if let Ok(mut s) = stats.lock() {
                s.last_error = Some((number, message.clone()));
            }
            Err(message)
        }
        other => Err(format!("unexpected {other:?} in answer to an offer")),
    }
}

/// Primary side of a session, from the secondary's Join on.
async fn primary_session(
    inst: &Arc<Instance>,
    peer: &str,
    database: &str,
    join: Message,
    mut rd: MirrorReader,
    mut wr: MirrorWriter,
    stats: &Stats,
) -> Result<(), String> {
    // Join's next_page is informational: the secondary answers SeedBegin with where its copy really stands.
    let Message::Join {
        have_lsn,
        guid,
        history,
        ..
    } = join
    else {
        return Err("the secondary did not start with Join".into());
    };
    let peer = peer.to_string();
    let refuse = |number: i32, message: String| Message::Error { number, message };
    let db = match inst.database(database) {
        Ok(d) if d.role() == Role::Primary => d,
        Ok(d) => {
            let m = format!("Database '{}' is a secondary on this instance, not the primary: it cannot serve another secondary. Fail over first (the partner's FORCE_FAILOVER_ALLOW_DATA_LOSS, or a planned FAILOVER).", d.name);
            send(&mut wr, &refuse(41140, m.clone())).await?;
            return Err(m);
        }
        Err(x) => {
            send(&mut wr, &refuse(x.number, x.message.clone())).await?;
            return Err(x.message);
        }
    };
    let connected = Connected::new(stats);
    if let Ok(mut s) = stats.lock() {
        s.last_error = None;
    }
    let from = if have_lsn == 0 || guid != db.guid {
        seed(&db, &peer, &mut rd, &mut wr, stats).await?
    } else {
        let fork = timeline::fork_point(&db.timeline(), db.log().durable_lsn(), &history, have_lsn);
        if fork < have_lsn {
            send(&mut wr, &Message::Rewind { fork_lsn: fork }).await?;
            return Err(format!(
                "the copy of '{database}' on '{peer}' forked from this one after LSN {fork}: it discards LSNs {}-{have_lsn} and is reseeded",
                fork + 1
            ));
        }
        have_lsn + 1
    };
    let shipper = Arc::new(Mutex::new(
        blocking({
            let (db, peer) = (db.clone(), peer.clone());
            move || LogShipper::new(&db, &peer, from)
        })
        .await?,
    ));
    // The secondary holds everything before `from` (it said so in Join, or the seeding brought it there): a
    // synchronous commit must never wait for an ack of log it will not be sent.
    if let Ok(mut st) = stats.lock() {
        // What it holds is applied too: a session's redo finishes before the next session joins.
        st.last_hardened_lsn = from - 1;
        st.last_redone_lsn = from - 1;
    }
    db.replica_hardened(from - 1);
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    // Acks come back on their own task (releasing the log and waiting commits); anything else goes to the
    // controller below.
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Message>(16);
    let reader = {
        let acker = shipper.lock().map_err(e)?.acker();
        let (stats, db) = (stats.clone(), db.clone());
        tokio::spawn(async move {
            while let Ok(m) = recv(&mut rd).await {
                match m {
                    Message::Ack {
                        hardened, redone, ..
                    } => {
                        db.replica_hardened(hardened);
                        acker.acknowledge(hardened);
                        if let Ok(mut st) = stats.lock() {
                            st.last_hardened_lsn = hardened;
                            st.last_redone_lsn = redone;
                        }
                    }
                    other => {
                        if ctl_tx.send(other).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let shipping = {
        let (shipper, stats, wr, stop) = (shipper.clone(), stats.clone(), wr.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let s = shipper.clone();
                let batch = blocking(move || {
                    s.lock()
                        .expect("shipper")
                        .next_batch(4 << 20, Duration::from_millis(50))
                })
                .await?;
                if batch.is_empty() {
                    continue;
                }
                send_blocks(&wr, batch).await?;
                let sent = shipper.lock().map(|s| s.next_lsn - 1).unwrap_or(0);
                if let Ok(mut st) = stats.lock() {
                    st.last_sent_lsn = sent;
                }
            }
            Ok::<(), String>(())
        })
    };
    let mut removed = false;
    let mut shipping = shipping;
    let mut shipped = false;
    let result = loop {
        let incoming = tokio::select! {
            m = ctl_rx.recv() => match m {
                Some(m) => Some(m),
                None => break Err(format!("'{peer}' closed the link")),
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => None,
        };
        if shipping.is_finished() {
            let why = match (&mut shipping).await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "stopped".into(),
                Err(e) => e.to_string(),
            };
            shipped = true;
            break Err(format!("shipping log to '{peer}' failed: {why}"));
        }
        if stats.lock().map(|s| s.removed).unwrap_or(false) {
            removed = true;
            break Ok(());
        }
        if db.role() != Role::Primary {
            break Ok(()); // stepped down (SET (ROLE = SECONDARY)): nothing to ship any more
        }
        manage_sync(&db, stats, false);
        // A planned failover asked here (T-SQL, REST) or by the secondary.
        let (require_synchronized, reply) = match incoming {
            Some(Message::FailoverRequest {
                require_synchronized,
            }) => (require_synchronized, None),
            Some(Message::Error { number, message }) => break Err(format!("{number}: {message}")),
            Some(_) => continue,
            None => {
                let asked = stats.lock().ok().and_then(|mut s| s.request.take());
                match asked {
                    Some(r) => (r.require_synchronized, Some(r.reply)),
                    None => continue,
                }
            }
        };
        let r = hand_over(&db, stats, &wr, &mut ctl_rx, require_synchronized).await;
        let done = r.is_ok();
        match reply {
            Some(tx) => {
                let _ = tx.send(r);
            }
            None => {
                if let Err((number, message)) = r {
                    let _ = send_shared(&wr, &Message::FailoverResult { number, message }).await;
                }
            }
        }
        if done {
            break Ok(());
        }
    };
    stop.store(true, Ordering::SeqCst);
    reader.abort();
    let _ = reader.await;
    if !shipped {
        let _ = shipping.await;
    }
    // Only the latest session speaks for the secondary: an older one ending must not switch off its gate.
    if stats
        .lock()
        .map(|s| s.session == connected.id)
        .unwrap_or(true)
    {
        db.disable_sync_commit();
    }
    drop(connected);
    if removed || db.role() != Role::Primary {
        // Only now that no ack can renew it: a removed replica, or one this copy no longer serves as primary
        // (it failed over), no longer holds the log.
        let (db, hold) = (db.clone(), format!("replica:{peer}"));
        blocking(move || db.release_log(&hold)).await?;
    }
    result
}

/// Synchronous commit follows the configuration and the secondary's progress: it starts once the secondary is
/// close behind (commits then wait for it) and ends when the mode is asynchronous or a commit timed out on it.
fn manage_sync(db: &Database, stats: &Stats, forced: bool) {
    let Ok(s) = stats.lock() else { return };
    let want = s.sync_mode || forced;
    let active = db.sync_commit_active();
    if want && !active {
        let behind = db.log().bytes_from(s.last_hardened_lsn + 1);
        if behind <= 1 << 20 {
            db.enable_sync_commit(
                s.last_hardened_lsn,
                s.session_timeout.unwrap_or(Duration::from_secs(10)),
            );
        }
    } else if !want && active {
        db.disable_sync_commit();
    }
}

/// Planned failover on the primary: be synchronized, fence writes, let the secondary harden the last block,
/// hand over, step down. Nothing acknowledged can be lost: every commit acknowledged before the fence is
/// hardened on the secondary, and nothing commits after it.
async fn hand_over(
    db: &Arc<Database>,
    stats: &Stats,
    wr: &Arc<tokio::sync::Mutex<MirrorWriter>>,
    ctl: &mut mpsc::Receiver<Message>,
    require_synchronized: bool,
) -> Result<(), (i32, String)> {
    let name = db.name.clone();
    if require_synchronized && !db.sync_commit_active() {
        return Err((41142, format!("The availability replica for database '{name}' cannot fail over to its partner: the partner is not SYNCHRONIZED. Set AVAILABILITY_MODE = SYNCHRONOUS_COMMIT for both members of the distributed availability group (ALTER AVAILABILITY GROUP … MODIFY AVAILABILITY GROUP ON …) and wait until synchronization_state_desc is SYNCHRONIZED.")));
    }
    // The REST failover switches to synchronous commit itself, as the product's planned failover does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !db.sync_commit_active() {
        manage_sync(db, stats, true);
        if Instant::now() > deadline {
            return Err((41143, format!("The secondary of database '{name}' did not catch up within 30 seconds (log send queue {} KB): it is not synchronized, so a planned failover would lose data.", db.log().bytes_from(stats.lock().map(|s| s.last_hardened_lsn).unwrap_or(0) + 1) / 1024)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = db.clone();
    blocking(move || d.fence_writes(Duration::from_secs(10)))
        .await
        .map_err(|m| (50000, m))?;
    let unfence = |db: &Arc<Database>| db.unfence_writes();
    let end = db.log().last_assigned_lsn();
    {
        let d = db.clone();
        if let Err(m) = blocking(move || d.log().wait_durable(end)).await {
            unfence(db);
            return Err((50000, m));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.lock().map(|s| s.last_hardened_lsn).unwrap_or(0) < end {
        if Instant::now() > deadline {
            unfence(db);
            return Err((41143, format!("The secondary of database '{name}' did not harden the log up to LSN {end} within 10 seconds; the failover was cancelled and the primary takes writes again.")));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Err(m) = send_shared(wr, &Message::Handover { end_lsn: end }).await {
        unfence(db);
        return Err((
            41142,
            format!("The partner could not be told to take over: {m}. The failover was cancelled."),
        ));
    }
    // From here on the partner may be primary: never take writes again without knowing it is not — unless it
    // said outright that it did not take over. It drains its redo first, so give it time under load.
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ctl.recv().await {
                Some(Message::HandoverDone { epoch }) => return Ok(epoch),
                Some(Message::Error { number, message }) => return Err(Some((number, message))),
                Some(_) => continue,
                None => return Err(None),
            }
        }
    })
    .await
    .unwrap_or(Err(None));
    let answer = match answer {
        Ok(epoch) => Ok(epoch),
        Err(Some((n, m))) => {
            unfence(db);
            return Err((
                n,
                format!("The partner did not take over: {m}. This copy is still the primary."),
            ));
        }
        Err(None) => Err((
            41144,
            "the partner closed the link or did not confirm the handover within 60 seconds"
                .to_string(),
        )),
    };
    let demoted = db.demote();
    unfence(db);
    if let Ok(mut s) = stats.lock() {
        s.role_changed = true;
    }
    demoted.map_err(|e| (e.number, e.message))?;
    match answer {
        Ok(epoch) => {
            tracing::info!(db = %name, end, epoch, "planned failover: the partner is primary from LSN {}", end + 1);
            Ok(())
        }
        Err((n, m)) => Err((n, format!("{m}. This copy stepped down anyway (it must never take writes while the partner may be primary): both are SECONDARY until FORCE_FAILOVER_ALLOW_DATA_LOSS on one of them."))),
    }
}

/// Fuzzy page copy, flow-controlled by the secondary's acks; returns the LSN shipping starts from.
async fn seed(
    db: &Arc<Database>,
    peer: &str,
    rd: &mut MirrorReader,
    wr: &mut MirrorWriter,
    stats: &Stats,
) -> Result<u64, String> {
    let src = blocking({
        let (db, peer) = (db.clone(), peer.to_string());
        move || SeedSource::begin(&db, &peer)
    })
    .await?;
    let c = db.control();
    let src = Arc::new(Mutex::new(src));
    let pages = {
        let s = src.clone();
        blocking(move || s.lock().expect("seed").read_chunk(1, 0))
            .await?
            .0
    };
    let start_lsn = src.lock().map_err(e)?.start_lsn;
    send(
        wr,
        &Message::SeedBegin {
            database: db.name.clone(),
            guid: db.guid,
            page_size: c.page_size,
            epoch: c.epoch,
            start_lsn,
            pages,
        },
    )
    .await?;
    // The secondary says where its copy stands (a resumed seeding continues there).
    let mut next = match recv(rd).await? {
        // Only the secondary knows whether it resumed its copy or had to start over (a new start LSN).
        Message::Ack { next_page: n, .. } => n.max(1),
        other => return Err(format!("unexpected {other:?} during seeding")),
    };
    stats
        .lock()
        .map_err(e)?
        .start_seeding(pages as u64 * c.page_size as u64);
    // Up to SEED_WINDOW messages travel unacknowledged: the copy streams instead of paying a round trip per
    // message, and memory stays bounded by the window.
    let mut in_flight = 0u32;
    loop {
        let s = src.clone();
        let (count, pages) =
            blocking(move || s.lock().expect("seed").read_chunk(next, PAGES_PER_MESSAGE)).await?;
        if pages.is_empty() {
            for _ in 0..in_flight {
                seed_ack(rd).await?;
            }
            let end = src.lock().map_err(e)?.end_lsn();
            send(
                wr,
                &Message::SeedEnd {
                    end_lsn: end,
                    page_count: count,
                },
            )
            .await?;
            break;
        }
        let bytes: u64 = pages.iter().map(|p| p.1.len() as u64).sum();
        next = pages.last().map(|p| p.0 + 1).unwrap_or(next);
        send(wr, &Message::Pages { pages }).await?;
        in_flight += 1;
        if in_flight >= SEED_WINDOW {
            in_flight -= 1;
            seed_ack(rd).await?;
        }
        if let Ok(mut st) = stats.lock() {
            st.seeded(bytes, count as u64 * c.page_size as u64);
        }
    }
    let start = src.lock().map_err(e)?.start_lsn;
    // The replica's own hold (taken by the shipper) covers start+1 before the seeding's hold goes.
    blocking({
        let (db, peer) = (db.clone(), peer.to_string());
        move || LogShipper::new(&db, &peer, start + 1).map(|_| ())
    })
    .await?;
    let src = Arc::try_unwrap(src)
        .map_err(|_| "seeding still in use".to_string())?
        .into_inner()
        .map_err(e)?;
    blocking(move || src.finish()).await?;
    if let Ok(mut st) = stats.lock() {
        st.finish_seeding();
    }
    Ok(start + 1)
}

/// During seeding the secondary answers each page message with an Ack (or says why it cannot go on).
async fn seed_ack(rd: &mut MirrorReader) -> Result<(), String> {
    match recv(rd).await? {
        Message::Ack { .. } => Ok(()),
        Message::Error { message, .. } => Err(message),
        other => Err(format!("unexpected {other:?} during seeding")),
    }
}

/// Ask the partner which database its distributed availability group `group` replicates.
pub async fn resolve_database(
    settings: &EndpointSettings,
    errors: &ConnectErrorLog,
    peer_name: &str,
    addr: SocketAddr,
    group: &str,
) -> Result<String, (i32, String)> {
    let conn = transport::connect(settings, errors, peer_name, addr)
        .await
        .map_err(|x| (x.number, x.message))?;
    let (mut rd, mut wr) = conn.into_split();
    let err = |m: String| (35206, m);
    send(
        &mut wr,
        &Message::Resolve {
            group: group.to_string(),
        },
    )
    .await
    .map_err(err)?;
    match recv(&mut rd).await.map_err(err)? {
        Message::Resolved { database } => Ok(database),
        Message::Error { number, message } => Err((number, message)),
        other => Err(err(format!("unexpected {other:?} in answer to Resolve"))),
    }
}

/// The dialing side (the managed instance): connect to the partner's endpoint for `database` and replicate until
/// the connection ends, as the secondary, or as the primary when this copy is primary (after a failover).
pub async fn dial(
    inst: Arc<Instance>,
    settings: &EndpointSettings,
    errors: &ConnectErrorLog,
    peer_name: &str,
    addr: SocketAddr,
    database: &str,
    stats: Stats,
) -> Result<(), String> {
    let conn = transport::connect(settings, errors, peer_name, addr)
        .await
        .map_err(|x| {
            if let Ok(mut s) = stats.lock() {
                s.last_error = Some((x.number, x.message.clone()));
            }
            x.to_string()
        })?;
    let peer = conn.peer_name.clone();
    let (mut rd, mut wr) = conn.into_split();
    let primary_here = inst
        .database_any_state(database)
        .ok()
        .filter(|d| d.role() == Role::Primary && d.control().consistent_at.is_none());
    let r = match primary_here {
        Some(db) => {
            send(
                &mut wr,
                &Message::Offer {
                    database: database.to_string(),
                    history: db.timeline(),
                },
            )
            .await?;
            match recv(&mut rd).await? {
                j @ Message::Join { .. } => {
                    primary_session(&inst, &peer, database, j, rd, wr, &stats).await
                }
                Message::Offer { history, .. } => {
                    if promotions(&history) > promotions(&db.timeline()) {
                        step_down_for(&db, &peer, &stats).await?;
                        secondary_session(&inst, database, rd, wr, &stats).await
                    } else {
                        let m = format!("Both '{peer}' and this instance are primary for database '{database}' with equally recent histories. Make one of them secondary: ALTER AVAILABILITY GROUP [<dag>] SET (ROLE = SECONDARY) on the one whose changes are to be discarded.");
                        if let Ok(mut s) = stats.lock() {
                            s.last_error = Some((41147, m.clone()));
                        }
                        Err(m)
                    }
                }
                Message::Error { number, message } => {
                    if let Ok(mut s) = stats.lock() {
                        s.last_error = Some((number, message.clone()));
                    }
                    Err(message)
                }
                other => Err(format!("unexpected {other:?} in answer to an offer")),
            }
        }
        None => secondary_session(&inst, database, rd, wr, &stats).await,
    };
    r
}

/// Secondary side of a session: join, then take seeding, log and failover messages from the primary.
async fn secondary_session(
    inst: &Arc<Instance>,
    database: &str,
    mut rd: MirrorReader,
    mut wr: MirrorWriter,
    stats: &Stats,
) -> Result<(), String> {
    let existing = inst.database_any_state(database).ok();
    let (have_lsn, next_page, guid, history) = match &existing {
        Some(db) => {
            let c = db.control();
            if c.consistent_at.is_some() {
                (0, c.seed_next_page, db.guid, c.timeline())
            } else {
                (db.log().durable_lsn(), 0, db.guid, c.timeline())
            }
        }
        None => (0, 1, [0; 16], Vec::new()),
    };
    send(
        &mut wr,
        &Message::Join {
            database: database.to_string(),
            have_lsn,
            next_page,
            guid,
            history,
        },
    )
    .await?;
    let _connected = Connected::new(stats);
    // Messages arrive on their own task, so a local failover request can be sent while waiting for them; the
    // small channel keeps TCP's backpressure on the primary.
    let (tx, mut rx) = mpsc::channel::<Result<Message, String>>(16);
    let reader = tokio::spawn(async move {
        loop {
            let m = recv(&mut rd).await;
            let end = m.is_err();
            if tx.send(m).await.is_err() || end {
                break;
            }
        }
    });
    let applier = Applier::start(stats);
    let copied: SeedMark = Default::default();
    let r = secondary_loop(inst, existing, &mut rx, &mut wr, stats, &applier, &copied).await;
    reader.abort();
    // A seeding cut off mid-copy keeps every page it received: the next attempt resumes after them.
    let mark = copied.lock().ok().and_then(|mut m| m.take());
    if let (Err(_), Some((t, next))) = (&r, mark) {
        if t.control().consistent_at.is_some() {
            let _ = blocking(move || t.seed_checkpoint(next)).await;
        }
    }
    // Whatever was hardened is applied before the session is over.
    let drained = applier.finish().await;
    r.and(drained)
}

/// Redo on its own task, so hardening (and acknowledging) the next log never waits for applying the last.
struct Applier {
    tx: mpsc::Sender<ApplyJob>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

enum ApplyJob {
    Blocks(Arc<Database>, Vec<engine::log::format::Block>, u64),
    /// Answered once everything queued before it is applied.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

impl Applier {
    fn start(stats: &Stats) -> Applier {
        // Few jobs in the queue (each up to 32 MB of blocks): redo's backlog is read back from the log instead.
        let (tx, mut rx) = mpsc::channel::<ApplyJob>(4);
        let stats = stats.clone();
        let task = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    ApplyJob::Blocks(db, mut blocks, mut last) => {
                        // Everything already queued goes in the same apply: one SQLite transaction, one
                        // published snapshot, so redo keeps up when log arrives faster than one apply takes.
                        let mut barrier = None;
                        let mut bytes: usize = blocks.iter().map(|b| b.data.len()).sum();
                        while bytes < 64 << 20 {
                            let Ok(next) = rx.try_recv() else { break };
                            match next {
                                ApplyJob::Blocks(_, more, l) => {
                                    bytes += more.iter().map(|b| b.data.len()).sum::<usize>();
                                    blocks.extend(more);
                                    last = l;
                                }
                                ApplyJob::Barrier(done) => {
                                    barrier = Some(done);
                                    break;
                                }
                            }
                        }
                        blocking(move || db.apply_hardened(blocks)).await?;
                        if let Ok(mut s) = stats.lock() {
                            s.last_redone_lsn = last;
                        }
                        if let Some(done) = barrier {
                            let _ = done.send(());
                        }
                    }
                    ApplyJob::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
            Ok(())
        });
        Applier { tx, task }
    }

    async fn apply(
        &self,
        db: Arc<Database>,
        blocks: Vec<engine::log::format::Block>,
        last: u64,
    ) -> Result<(), String> {
        self.tx
            .send(ApplyJob::Blocks(db, blocks, last))
            .await
            .map_err(|_| "redo stopped".to_string())
    }

    /// Wait until everything queued is applied.
    async fn drain(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(ApplyJob::Barrier(tx)).await.is_err() || rx.await.is_err() {
            return Err("redo stopped".into());
        }
        Ok(())
    }

    /// Apply what is queued, then stop; the redo error if there was one.
    async fn finish(self) -> Result<(), String> {
        drop(self.tx);
        self.task.await.map_err(e)?
    }
}

/// The seeding target and the page after the last one written to it (not yet a durable resume point).
type SeedMark = Arc<Mutex<Option<(Arc<Database>, u32)>>>;

async fn secondary_loop(
    inst: &Arc<Instance>,
    mut target: Option<Arc<Database>>,
    rx: &mut mpsc::Receiver<Result<Message, String>>,
    wr: &mut MirrorWriter,
    stats: &Stats,
    applier: &Applier,
    copied: &SeedMark,
) -> Result<(), String> {
    let mut chunks = 0u32;
    let mut pending: Option<std::sync::mpsc::SyncSender<Result<(), (i32, String)>>> = None;
    // A message taken from the queue while gathering log blocks, handled on the next turn.
    let mut deferred: Option<Result<Message, String>> = None;
    // Redo progress is reported when idle, once log flows in this session (never during a seeding's handshake).
    let mut acked_redone = 0u64;
    let mut shipping = false;
    let mut big: Vec<u8> = Vec::new();
    loop {
        // Checked on every turn: under a steady stream of log the timer below would never fire.
        let asked = stats.lock().ok().and_then(|mut s| s.request.take());
        if let Some(r) = asked {
            let seeding = target
                .as_ref()
                .is_none_or(|t| t.control().consistent_at.is_some());
            if seeding {
                // The primary is streaming the copy and expects nothing else; there is nothing to fail over to.
                let _ = r.reply.send(Err((
                    41142,
                    "This copy is still being seeded: it cannot become the primary until seeding completes.".into(),
                )));
            } else {
                send(
                    wr,
                    &Message::FailoverRequest {
                        require_synchronized: r.require_synchronized,
                    },
                )
                .await?;
                pending = Some(r.reply);
            }
        }
        let m = match deferred.take() {
            Some(m) => m?,
            None => tokio::select! {
                m = rx.recv() => m.ok_or("the link closed")??,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    // Idle: tell the primary how far redo got since the last ack (its redo queue view).
                    let (hardened, redone) = stats.lock().map(|s| (s.last_hardened_lsn, s.last_redone_lsn)).unwrap_or((0, 0));
                    if shipping && redone > acked_redone && hardened > 0 {
                        send(wr, &Message::Ack { hardened, redone, next_page: 0 }).await?;
                        acked_redone = redone;
                    }
                    continue;
                }
            },
        };
        // The pieces of one very large block are joined before it is hardened like any other.
        let m = match m {
            Message::BlockChunk { data, last } => {
                if big.len() + data.len() > MAX_BLOCK {
                    return Err(format!(
                        "a log block from the primary exceeds {} GiB",
                        MAX_BLOCK >> 30
                    ));
                }
                big.extend_from_slice(&data);
                if !last {
                    continue;
                }
                Message::Blocks {
                    blocks: vec![std::mem::take(&mut big)],
                }
            }
            other => other,
        };
        match m {
            Message::SeedBegin {
                database,
                guid,
                page_size,
                epoch,
                start_lsn,
                pages,
            } => {
                // The destination's view of the seeding (sys.dm_hadr_physical_seeding_stats, REST progress).
                if let Ok(mut s) = stats.lock() {
                    s.start_seeding(pages as u64 * page_size as u64);
                }
                let i = inst.clone();
                let t =
                    blocking(move || i.seed_target(&database, guid, page_size, epoch, start_lsn))
                        .await?;
                let next = t.control().seed_next_page.max(1);
                target = Some(t);
                send(
                    wr,
                    &Message::Ack {
                        hardened: 0,
                        redone: 0,
                        next_page: next,
                    },
                )
                .await?;
            }
            Message::Pages { pages } => {
                let t = target.clone().ok_or("pages before SeedBegin")?;
                let next = pages.last().map(|p| p.0 + 1).unwrap_or(0);
                let bytes: u64 = pages.iter().map(|p| p.1.len() as u64).sum();
                if let Ok(mut s) = stats.lock() {
                    s.seeded(bytes, 0);
                }
                chunks += 1;
                let durable_now = chunks.is_multiple_of(SEED_CHECKPOINT_EVERY);
                let t2 = t.clone();
                blocking(move || {
                    t2.seed_write_pages(&pages)?;
                    if durable_now {
                        t2.seed_checkpoint(next)?;
                    }
                    Ok(())
                })
                .await?;
                if let Ok(mut m) = copied.lock() {
                    *m = Some((t, next));
                }
                send(
                    wr,
                    &Message::Ack {
                        hardened: 0,
                        redone: 0,
                        next_page: next,
                    },
                )
                .await?;
            }
            Message::SeedEnd {
                end_lsn,
                page_count,
            } => {
                let t = target.clone().ok_or("SeedEnd before SeedBegin")?;
                applier.drain().await?;
                // The copy is complete: from here on an interruption resumes by redo, not by copying.
                if let Ok(mut m) = copied.lock() {
                    *m = None;
                }
                blocking(move || t.seed_copy_done(end_lsn, page_count)).await?;
                if let Ok(mut s) = stats.lock() {
                    s.finish_seeding();
                }
            }
            Message::Blocks { mut blocks } => {
                // Whatever log already waits behind this message is hardened with it: one fsync, one ack.
                let mut bytes: usize = blocks.iter().map(Vec::len).sum();
                while bytes < 32 << 20 {
                    match rx.try_recv() {
                        Ok(Ok(Message::Blocks { blocks: more })) => {
                            bytes += more.iter().map(Vec::len).sum::<usize>();
                            blocks.extend(more);
                        }
                        Ok(other) => {
                            deferred = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let t = target.clone().ok_or("log before the database exists")?;
                if t.role() == Role::Primary {
                    return Err(format!("database '{}' is primary here now (a forced failover): it takes no more log from the former primary", t.name));
                }
                // Acknowledge once hardened (a synchronous primary waits for exactly that); redo follows on
                // the applier's task.
                let t2 = t.clone();
                let (hardened, blocks) = blocking(move || shipping::harden(&t2, &blocks)).await?;
                let redone = match stats.lock() {
                    Ok(mut s) => {
                        s.last_hardened_lsn = hardened;
                        s.last_redone_lsn
                    }
                    Err(_) => 0,
                };
                send(
                    wr,
                    &Message::Ack {
                        hardened,
                        redone,
                        next_page: 0,
                    },
                )
                .await?;
                acked_redone = redone;
                shipping = true;
                applier.apply(t, blocks, hardened).await?;
            }
            Message::Handover { end_lsn } => {
                let t = target
                    .clone()
                    .ok_or("handover before the database exists")?;
                applier.drain().await?;
                let have = t.log().durable_lsn();
                if have != end_lsn || t.control().consistent_at.is_some() {
                    let message = format!("This copy of '{}' holds the log up to LSN {have}, not {end_lsn}: it cannot take over.", t.name);
                    send(
                        wr,
                        &Message::Error {
                            number: 41142,
                            message: message.clone(),
                        },
                    )
                    .await?;
                    return Err(message);
                }
                let d = t.clone();
                let epoch = blocking(move || d.promote()).await?;
                send(wr, &Message::HandoverDone { epoch }).await?;
                tracing::info!(db = %t.name, end_lsn, "planned failover: this copy is the primary now");
                if let Ok(mut s) = stats.lock() {
                    s.role_changed = true;
                }
                if let Some(tx) = pending.take() {
                    let _ = tx.send(Ok(()));
                }
                return Ok(());
            }
            Message::FailoverResult { number, message } => {
                if let Some(tx) = pending.take() {
                    let _ = tx.send(if number == 0 {
                        Ok(())
                    } else {
                        Err((number, message))
                    });
                }
            }
            Message::Rewind { fork_lsn } => {
                let t = target.clone().ok_or("rewind before the database exists")?;
                applier.drain().await?;
                let i = inst.clone();
                let (first, last, saved) = blocking(move || discard_fork(&i, &t, fork_lsn)).await?;
                let message = format!("This copy's history forked from the primary's after LSN {fork_lsn} (a forced failover): its LSNs {first}-{last} were never on the primary and are lost; they are kept in {saved}. The database is reseeded from the primary.");
                tracing::warn!(db = %database_name(&target), "{message}");
                if let Ok(mut s) = stats.lock() {
                    s.last_error = Some((41148, message.clone()));
                }
                return Err(message);
            }
            Message::Error { number, message } => {
                if let Ok(mut s) = stats.lock() {
                    s.last_error = Some((number, message.clone()));
                }
                if let Some(tx) = pending.take() {
                    let _ = tx.send(Err((number, message.clone())));
                }
                return Err(message);
            }
            other => return Err(format!("unexpected {other:?} from the primary")),
        }
    }
}

fn database_name(t: &Option<Arc<Database>>) -> String {
    t.as_ref().map(|d| d.name.clone()).unwrap_or_default()
}

/// A copy whose history forked after `fork_lsn`: keep its divergent log blocks in a file (so a DBA can see
/// what was lost), then drop the copy so the next join reseeds it. Returns the lost range and the file.
fn discard_fork(
    inst: &Arc<Instance>,
    db: &Arc<Database>,
    fork_lsn: u64,
) -> engine::Result<(u64, u64, String)> {
    let last = db.log().durable_lsn();
    let first = fork_lsn + 1;
    let dir = inst.data_dir().join("lost_log");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}_{first}_{last}.mlog", db.name));
    let mut out = Vec::new();
    for lsn in first.max(db.log().first_lsn())..=last {
        out.extend_from_slice(&db.log().read_raw(lsn)?.0);
    }
    std::fs::write(&path, out)?;
    let name = db.name.clone();
    inst.drop_database(&name)?;
    Ok((first, last, path.display().to_string()))
}
