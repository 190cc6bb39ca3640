//! The link's replication session over an authenticated mirroring connection. The secondary dials the
//! primary's endpoint and asks to join a database; the primary seeds it if it has no copy (or resumes an
//! interrupted seeding), then ships its log from the secondary's hardened LSN on, forever. The secondary acks
//! what it hardened, which releases the primary's log. Reconnects resume from the secondary's own state.

use crate::protocol::Message;
use crate::seeding::SeedSource;
use crate::shipping::{self, LogShipper};
use crate::transport::{
    self, ConnectErrorLog, EndpointSettings, MessageKind, MirrorReader, MirrorWriter,
};
use engine::{Database, Instance};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the replica-state views show about one side of a link.
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

/// Primary side: serve one accepted connection until it ends. Once the secondary has said which database it
/// joins, `admit` decides whether this instance replicates it (a refusal goes back to the secondary with its
/// number) and where the session reports.
pub async fn serve_primary(
    inst: Arc<Instance>,
    conn: transport::MirrorConnection,
    admit: impl Fn(&str) -> Result<Stats, (i32, String)>,
) -> Result<(), String> {
    let peer = conn.peer_name.clone();
    let (mut rd, mut wr) = conn.into_split();
    let Message::Join {
        database,
        have_lsn,
        next_page,
        guid,
    } = recv(&mut rd).await?
    else {
        return Err("the secondary did not start with Join".into());
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
    let r = serve_joined(
        &inst,
        &peer,
        &database,
        (have_lsn, next_page, guid),
        rd,
        wr,
        &stats,
    )
    .await;
    if let Ok(mut s) = stats.lock() {
        s.connected = false;
        if let Err(x) = &r {
            s.last_error = Some((35206, x.clone()));
        }
    }
    r
}

async fn serve_joined(
    inst: &Arc<Instance>,
    peer: &str,
    database: &str,
    (have_lsn, next_page, guid): (u64, u32, [u8; 16]),
    mut rd: MirrorReader,
    mut wr: MirrorWriter,
    stats: &Stats,
) -> Result<(), String> {
    let peer = peer.to_string();
    let db = match inst.database(database) {
        Ok(d) => d,
        Err(x) => {
            send(
                &mut wr,
                &Message::Error {
                    number: x.number,
                    message: x.message.clone(),
                },
            )
            .await?;
            return Err(x.message);
        }
    };
    stats.lock().map_err(e)?.connected = true;
    let from = if have_lsn == 0 || guid != db.guid {
        seed(&db, &peer, next_page, &mut rd, &mut wr, stats).await?
    } else {
        have_lsn + 1
    };
    let shipper = Arc::new(Mutex::new(
        blocking({
            let (db, peer) = (db.clone(), peer.clone());
            move || LogShipper::new(&db, &peer, from)
        })
        .await?,
    ));
    // Acks come back on their own task; the log is released as the secondary hardens it.
    let acks = {
        let (shipper, stats) = (shipper.clone(), stats.clone());
        tokio::spawn(async move {
            while let Ok(Message::Ack {
                hardened, redone, ..
            }) = recv(&mut rd).await
            {
                if let Ok(s) = shipper.lock() {
                    s.acknowledge(hardened);
                }
                if let Ok(mut st) = stats.lock() {
                    st.last_hardened_lsn = hardened;
                    st.last_redone_lsn = redone;
                }
            }
        })
    };
    loop {
        if acks.is_finished() {
            break;
        }
        if stats.lock().map(|s| s.removed).unwrap_or(false) {
            acks.abort();
            let _ = acks.await;
            let (db, hold) = (db.clone(), format!("replica:{peer}"));
            blocking(move || db.release_log(&hold)).await?;
            return Ok(());
        }
        let batch = {
            let s = shipper.clone();
            blocking(move || {
                s.lock()
                    .expect("shipper")
                    .next_batch(4 << 20, Duration::from_millis(100))
            })
            .await?
        };
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        send(&mut wr, &Message::Blocks { blocks: batch }).await?;
        if let Ok(mut st) = stats.lock() {
            st.last_sent_lsn = shipper.lock().map(|s| s.next_lsn - 1).unwrap_or(0);
            let _ = n;
        }
    }
    stats.lock().map_err(e)?.connected = false;
    Ok(())
}

/// Fuzzy page copy, flow-controlled by the secondary's acks; returns the LSN shipping starts from.
async fn seed(
    db: &Arc<Database>,
    peer: &str,
    next_page: u32,
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
    send(
        wr,
        &Message::SeedBegin {
            database: db.name.clone(),
            guid: db.guid,
            page_size: c.page_size,
            epoch: c.epoch,
            start_lsn: src.start_lsn,
        },
    )
    .await?;
    // The secondary says where its copy stands (a resumed seeding continues there).
    let mut next = match recv(rd).await? {
        Message::Ack { next_page: n, .. } => n.max(next_page).max(1),
        other => return Err(format!("unexpected {other:?} during seeding")),
    };
    {
        let mut st = stats.lock().map_err(e)?;
        let attempt = st.seeding.as_ref().map(|s| s.attempt).unwrap_or(0) + 1;
        st.seeding = Some(SeedingStats {
            started: Instant::now(),
            started_utc: chrono::Utc::now(),
            finished: None,
            transferred_bytes: 0,
            database_bytes: 0,
            done: false,
            attempt,
        });
    }
    let src = Arc::new(Mutex::new(src));
    loop {
        let s = src.clone();
        let (count, pages) =
            blocking(move || s.lock().expect("seed").read_chunk(next, PAGES_PER_MESSAGE)).await?;
        if pages.is_empty() {
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
        match recv(rd).await? {
            Message::Ack { .. } => {}
            Message::Error { message, .. } => return Err(message),
            other => return Err(format!("unexpected {other:?} during seeding")),
        }
        if let Ok(mut st) = stats.lock() {
            if let Some(sd) = st.seeding.as_mut() {
                sd.transferred_bytes += bytes;
                sd.database_bytes = count as u64 * c.page_size as u64;
            }
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
        if let Some(sd) = st.seeding.as_mut() {
            sd.done = true;
            sd.finished = Some((Instant::now(), chrono::Utc::now()));
        }
    }
    Ok(start + 1)
}

/// Secondary side: connect to the primary's endpoint, join `database` and replicate until the connection ends.
pub async fn run_secondary(
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
    let (mut rd, mut wr) = conn.into_split();
    let existing = inst.database_any_state(database).ok();
    let (have_lsn, next_page, guid) = match &existing {
        Some(db) => {
            let c = db.control();
            if c.consistent_at.is_some() {
                (0, c.seed_next_page, db.guid)
            } else {
                (db.log().durable_lsn(), 0, db.guid)
            }
        }
        None => (0, 1, [0; 16]),
    };
    send(
        &mut wr,
        &Message::Join {
            database: database.to_string(),
            have_lsn,
            next_page,
            guid,
        },
    )
    .await?;
    stats.lock().map_err(e)?.connected = true;
    let mut target = existing;
    let mut chunks = 0u32;
    loop {
        let m = match recv(&mut rd).await {
            Ok(m) => m,
            Err(x) => {
                stats.lock().map_err(e)?.connected = false;
                return Err(x);
            }
        };
        match m {
            Message::SeedBegin {
                database,
                guid,
                page_size,
                epoch,
                start_lsn,
            } => {
                let i = inst.clone();
                let t =
                    blocking(move || i.seed_target(&database, guid, page_size, epoch, start_lsn))
                        .await?;
                let next = t.control().seed_next_page.max(1);
                target = Some(t);
                send(
                    &mut wr,
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
                chunks += 1;
                let durable_now = chunks.is_multiple_of(SEED_CHECKPOINT_EVERY);
                blocking(move || {
                    t.seed_write_pages(&pages)?;
                    if durable_now {
                        t.seed_checkpoint(next)?;
                    }
                    Ok(())
                })
                .await?;
                send(
                    &mut wr,
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
                blocking(move || t.seed_copy_done(end_lsn, page_count)).await?;
            }
            Message::Blocks { blocks } => {
                let t = target.clone().ok_or("log before the database exists")?;
                let hardened = blocking(move || shipping::apply(&t, &blocks)).await?;
                if let Ok(mut s) = stats.lock() {
                    s.last_hardened_lsn = hardened;
                    s.last_redone_lsn = hardened;
                }
                send(
                    &mut wr,
                    &Message::Ack {
                        hardened,
                        redone: hardened,
                        next_page: 0,
                    },
                )
                .await?;
            }
            Message::Error { number, message } => {
                if let Ok(mut s) = stats.lock() {
                    s.last_error = Some((number, message.clone()));
                }
                return Err(message);
            }
            other => return Err(format!("unexpected {other:?} from the primary")),
        }
    }
}
