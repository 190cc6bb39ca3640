//! Database mirroring endpoints on the SQL endpoint: CREATE / ALTER / DROP ENDPOINT … FOR DATABASE_MIRRORING,
//! sys.endpoints, sys.tcp_endpoints and sys.database_mirroring_endpoints, and the running
//! [`hadr::transport::Endpoint`] behind them.
//!
//! - Endpoints are kept in master (`milink_endpoints`); [`start_at_boot`] restarts the STARTED one when
//!   `milink serve` starts. One DATABASE_MIRRORING endpoint per instance (7862, as SQL Server).
//! - AUTHENTICATION = CERTIFICATE c binds the certificate through `TrustStore::set_endpoint_certificate` (it
//!   must exist and have its private key here; DROP CERTIFICATE then refuses while the endpoint uses it).
//! - Windows authentication cannot exist here. `WINDOWS … CERTIFICATE c` / `CERTIFICATE c WINDOWS …` are
//!   accepted and authenticate with the certificate part (sys.database_mirroring_endpoints still shows e.g.
//!   WINDOWS_NEGOTIATE_CERTIFICATE). When ONLY Windows authentication is configured (or AUTHENTICATION is
//!   omitted: SQL Server's default is WINDOWS NEGOTIATE) the statement succeeds with informational message
//!   [`WINDOWS_ONLY_INFO`] saying so, and the endpoint refuses every connection, in both directions, with a
//!   message naming the endpoint and the fix (ALTER ENDPOINT … AUTHENTICATION = … CERTIFICATE c).
//! - LISTENER_PORT accepts 0 (the OS picks a free port; sys.tcp_endpoints shows the bound port and
//!   is_dynamic_port = 1) and ports up to 65535 (SQL Server stops at 32767), so tests can use ephemeral ports.
//! - ALTER ENDPOINT takes effect live: STOPPED / DISABLED close the listener, a new port or address restarts
//!   it, anything else reconfigures it for the next connection.
//! - `milink serve --managed` runs [`start_managed`]: the instance CA and endpoint certificate (renewed in the
//!   background) and a started endpoint on `--mirror-listen`, without T-SQL. It appears in the views as
//!   `Hadr_endpoint`.
//!
//! The async work runs on a small runtime owned per [`Server`] (statements run on plain or blocking
//! threads; we never `block_on` from inside a runtime: work is spawned and awaited through a std channel).

use crate::exec::{display, Conn, Out, Server};
use hadr::transport::{
    self, Algorithm, ConnectError, ConnectErrorLog, Encryption, Endpoint, EndpointSettings,
    IdentitySource, MirrorConnection, Role, StoreTrust, TrustSource,
};
use parking_lot::Mutex;
use rusqlite::params;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tsql::admin::{
    Admin, EncryptionAlgorithm, EncryptionMode, EndpointDef, EndpointState, ListenerIp,
    MirroringRole, WindowsAuth,
};
use tsql::types::Len;
use tsql::{DataType, SqlError, Value};

/// Informational message sent when only Windows authentication is configured.
pub const WINDOWS_ONLY_INFO: i32 = 50000;
/// First endpoint_id of user endpoints (1-5 are SQL Server's built-in TSQL endpoints).
const FIRST_ENDPOINT_ID: i32 = 65536;
/// The managed instance's own endpoint, as the views show it.
pub const MANAGED_ENDPOINT_NAME: &str = "Hadr_endpoint";
/// Managed instance endpoint certificates: validity, renewal lead and check interval.
const MANAGED_CERT_VALIDITY_DAYS: i64 = 365;
const MANAGED_RENEW_BEFORE_DAYS: i64 = 30;
const MANAGED_RENEW_CHECK: Duration = Duration::from_secs(3600);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS milink_endpoints(
    endpoint_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    state INTEGER NOT NULL,
    port INTEGER NOT NULL,
    ip TEXT,
    role INTEGER NOT NULL,
    windows TEXT,
    certificate TEXT,
    certificate_first INTEGER NOT NULL DEFAULT 0,
    encryption INTEGER NOT NULL,
    algorithms TEXT NOT NULL,
    create_date TEXT NOT NULL
)";

/// One DATABASE_MIRRORING endpoint as stored in master.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub endpoint_id: i32,
    pub name: String,
    /// 0 STARTED, 1 STOPPED, 2 DISABLED (sys.endpoints.state).
    pub state: u8,
    /// 0 = dynamic.
    pub port: u16,
    /// None = LISTENER_IP = ALL.
    pub ip: Option<String>,
    /// 1 PARTNER, 2 WITNESS, 3 ALL.
    pub role: u8,
    pub windows: Option<WindowsAuth>,
    pub certificate: Option<String>,
    pub certificate_first: bool,
    pub encryption: EncryptionMode,
    pub algorithms: Vec<EncryptionAlgorithm>,
}

fn state_desc(s: u8) -> &'static str {
    match s {
        0 => "STARTED",
        1 => "STOPPED",
        _ => "DISABLED",
    }
}

fn windows_word(w: WindowsAuth) -> &'static str {
    match w {
        WindowsAuth::Ntlm => "NTLM",
        WindowsAuth::Kerberos => "KERBEROS",
        WindowsAuth::Negotiate => "NEGOTIATE",
    }
}

impl EndpointConfig {
    /// sys.database_mirroring_endpoints.connection_auth / connection_auth_desc.
    pub fn connection_auth(&self) -> (u8, String) {
        let w = self.windows.map(windows_word);
        let wn = |w: &str| match w {
            "NTLM" => 0u8,
            "KERBEROS" => 1,
            _ => 2,
        };
        match (w, self.certificate.is_some()) {
            (Some(w), false) => (1 + wn(w), format!("WINDOWS_{w}")),
            (None, _) => (4, "CERTIFICATE".into()),
            (Some(w), true) if self.certificate_first => {
                (8 + wn(w), format!("CERTIFICATE_WINDOWS_{w}"))
            }
            (Some(w), true) => (5 + wn(w), format!("WINDOWS_{w}_CERTIFICATE")),
        }
    }

    /// encryption_algorithm / encryption_algorithm_desc (SQL Server's codes 0-8).
    pub fn encryption_algorithm(&self) -> (u8, &'static str) {
        use EncryptionAlgorithm::*;
        let algs: &[EncryptionAlgorithm] = if self.algorithms.is_empty() {
            &[Aes]
        } else {
            &self.algorithms
        };
        match (self.encryption, algs) {
            (EncryptionMode::Disabled, _) => (0, "NONE"),
            (EncryptionMode::Required, [Rc4]) => (1, "RC4"),
            (EncryptionMode::Required, [Aes]) => (2, "AES"),
            (EncryptionMode::Supported, [Rc4]) => (3, "NONE, RC4"),
            (EncryptionMode::Supported, [Aes]) => (4, "NONE, AES"),
            (EncryptionMode::Required, [Rc4, Aes]) => (5, "RC4, AES"),
            (EncryptionMode::Required, _) => (6, "AES, RC4"),
            (EncryptionMode::Supported, [Rc4, Aes]) => (7, "NONE, RC4, AES"),
            (EncryptionMode::Supported, _) => (8, "NONE, AES, RC4"),
        }
    }

    fn role_desc(&self) -> &'static str {
        match self.role {
            1 => "PARTNER",
            2 => "WITNESS",
            3 => "ALL",
            _ => "NONE",
        }
    }

    fn transport_encryption(&self) -> (Encryption, Algorithm) {
        use EncryptionAlgorithm::*;
        let e = match self.encryption {
            EncryptionMode::Disabled => Encryption::Disabled,
            EncryptionMode::Supported => Encryption::Supported,
            EncryptionMode::Required => Encryption::Required,
        };
        let a = match self.algorithms.as_slice() {
            [Rc4] => Algorithm::Rc4,
            [Aes, Rc4] => Algorithm::AesRc4,
            [Rc4, Aes] => Algorithm::Rc4Aes,
            _ => Algorithm::Aes,
        };
        (e, a)
    }

    fn listen_addr(&self) -> Result<SocketAddr, SqlError> {
        let ip = match &self.ip {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(a) => a.parse::<IpAddr>().map_err(|_| {
                SqlError::new(
                    7887,
                    16,
                    format!("The IP address '{a}' specified in LISTENER_IP is not a numeric IPv4 or IPv6 address."),
                )
            })?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

fn alg_text(a: &[EncryptionAlgorithm]) -> String {
    a.iter()
        .map(|x| match x {
            EncryptionAlgorithm::Aes => "AES",
            EncryptionAlgorithm::Rc4 => "RC4",
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn alg_parse(s: &str) -> Vec<EncryptionAlgorithm> {
    s.split_whitespace()
        .filter_map(|w| match w {
            "AES" => Some(EncryptionAlgorithm::Aes),
            "RC4" => Some(EncryptionAlgorithm::Rc4),
            _ => None,
        })
        .collect()
}

fn mode_code(m: EncryptionMode) -> i64 {
    match m {
        EncryptionMode::Disabled => 0,
        EncryptionMode::Supported => 1,
        EncryptionMode::Required => 2,
    }
}

// ------------------------------------------------------------------------------------ storage

fn db_err(e: rusqlite::Error) -> SqlError {
    SqlError::new(50000, 16, format!("endpoint catalog: {e}"))
}

fn load(c: &rusqlite::Connection) -> Result<Vec<EndpointConfig>, SqlError> {
    c.execute_batch(SCHEMA).map_err(db_err)?;
    let mut st = c
        .prepare("SELECT endpoint_id, name, state, port, ip, role, windows, certificate, certificate_first, encryption, algorithms FROM milink_endpoints ORDER BY endpoint_id")
        .map_err(db_err)?;
    let rows = st
        .query_map([], |r| {
            let windows: Option<String> = r.get(6)?;
            let enc: i64 = r.get(9)?;
            let algs: String = r.get(10)?;
            Ok(EndpointConfig {
                endpoint_id: r.get(0)?,
                name: r.get(1)?,
                state: r.get::<_, i64>(2)? as u8,
                port: r.get::<_, i64>(3)? as u16,
                ip: r.get(4)?,
                role: r.get::<_, i64>(5)? as u8,
                windows: windows.map(|w| match w.as_str() {
                    "NTLM" => WindowsAuth::Ntlm,
                    "KERBEROS" => WindowsAuth::Kerberos,
                    _ => WindowsAuth::Negotiate,
                }),
                certificate: r.get(7)?,
                certificate_first: r.get::<_, i64>(8)? != 0,
                encryption: match enc {
                    0 => EncryptionMode::Disabled,
                    1 => EncryptionMode::Supported,
                    _ => EncryptionMode::Required,
                },
                algorithms: alg_parse(&algs),
            })
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows)
}

/// `create`: a new row (a concurrent CREATE of the one mirroring endpoint fails with 7862); else an update.
fn save(c: &rusqlite::Connection, e: &EndpointConfig, create: bool) -> Result<(), SqlError> {
    c.execute_batch(SCHEMA).map_err(db_err)?;
    if create {
        let exists: i64 = c
            .query_row("SELECT count(*) FROM milink_endpoints", [], |r| r.get(0))
            .map_err(db_err)?;
        if exists > 0 {
            return Err(one_mirroring_endpoint());
        }
    }
    c.execute(
        "INSERT INTO milink_endpoints(endpoint_id, name, state, port, ip, role, windows, certificate, certificate_first, encryption, algorithms, create_date)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, datetime('now'))
         ON CONFLICT(endpoint_id) DO UPDATE SET name = excluded.name, state = excluded.state, port = excluded.port,
           ip = excluded.ip, role = excluded.role, windows = excluded.windows, certificate = excluded.certificate,
           certificate_first = excluded.certificate_first, encryption = excluded.encryption, algorithms = excluded.algorithms",
        params![
            e.endpoint_id,
            e.name,
            e.state as i64,
            e.port as i64,
            e.ip,
            e.role as i64,
            e.windows.map(windows_word),
            e.certificate,
            e.certificate_first as i64,
            mode_code(e.encryption),
            alg_text(&e.algorithms),
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// The endpoints stored in master.
pub fn configured(server: &Server) -> Result<Vec<EndpointConfig>, SqlError> {
    load(&server.inst.master())
}

// ------------------------------------------------------------------------------------ running state

enum Cmd {
    Reconfigure(EndpointSettings),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// A started endpoint: its accept loop owns the [`Endpoint`] and takes commands.
struct Running {
    name: String,
    addr: SocketAddr,
    settings: EndpointSettings,
    cmd: tokio::sync::mpsc::UnboundedSender<Cmd>,
}

/// The HADR side of one [`Server`]: its runtime, its running endpoint and its connection errors.
pub struct Hadr {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    running: Mutex<Option<Running>>,
    errors: ConnectErrorLog,
    store: std::sync::OnceLock<Arc<trust::TrustStore>>,
    managed_renewal: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Hadr {
    fn drop(&mut self) {
        // Dropping the command sender ends the accept loop.
        drop(self.running.get_mut().take());
        if let Some(h) = self.managed_renewal.get_mut().take() {
            h.abort();
        }
        // Outside any runtime, wait (briefly) for the listener to close; inside one, never block.
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                rt.shutdown_timeout(Duration::from_secs(2));
            } else {
                rt.shutdown_background();
            }
        }
    }
}

impl Hadr {
    fn new() -> Result<Hadr, SqlError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("milink-hadr")
            .enable_all()
            .build()
            .map_err(|e| SqlError::new(50000, 16, format!("cannot start the HADR runtime: {e}")))?;
        Ok(Hadr {
            handle: rt.handle().clone(),
            rt: Some(rt),
            running: Mutex::new(None),
            errors: ConnectErrorLog::default(),
            store: std::sync::OnceLock::new(),
            managed_renewal: Mutex::new(None),
        })
    }

    /// Runs `f` on the HADR runtime and waits for it from this (non-async) thread.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the HADR runtime is running")
    }

    /// The runtime the endpoint lives on (spawn link work here).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// last_connect_error_* of this instance's endpoint (inbound refusals and outbound failures).
    pub fn errors(&self) -> &ConnectErrorLog {
        &self.errors
    }

    /// The address the running endpoint listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.lock().as_ref().map(|r| r.addr)
    }

    /// The running endpoint's settings: how this instance authenticates on outbound connections of
    /// the link (for a managed instance, what the management API's joins present).
    pub fn settings(&self) -> Option<EndpointSettings> {
        self.running.lock().as_ref().map(|r| r.settings.clone())
    }

    /// Name of the running endpoint.
    pub fn running_name(&self) -> Option<String> {
        self.running.lock().as_ref().map(|r| r.name.clone())
    }

    /// Opens an outbound mirroring connection from this instance's endpoint to `peer_name` at `addr`.
    /// Failures are kept in [`Hadr::errors`].
    pub fn connect(
        &self,
        peer_name: &str,
        addr: SocketAddr,
    ) -> Result<MirrorConnection, ConnectError> {
        let s = self.settings().ok_or_else(|| {
            ConnectError::new(
                transport::codes::UNREACHABLE,
                "This instance has no started DATABASE_MIRRORING endpoint: CREATE ENDPOINT … STATE = STARTED first.",
            )
        })?;
        let (errors, peer) = (self.errors.clone(), peer_name.to_string());
        self.run(async move { transport::connect(&s, &errors, &peer, addr).await })
    }

    fn reconfigure(&self, s: EndpointSettings) {
        if let Some(r) = self.running.lock().as_mut() {
            let _ = r.cmd.send(Cmd::Reconfigure(s.clone()));
            r.settings = s;
        }
    }

    fn stop(&self) {
        let r = self.running.lock().take();
        if let Some(r) = r {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if r.cmd.send(Cmd::Stop(tx)).is_ok() {
                self.run(async move {
                    let _ = rx.await;
                });
            }
        }
    }

    /// Binds and starts the accept loop: every authenticated inbound connection goes to the link
    /// ([`crate::ags::serve_link`]).
    fn start(
        &self,
        server: &Arc<Server>,
        name: &str,
        addr: SocketAddr,
        s: EndpointSettings,
    ) -> Result<(), SqlError> {
        self.stop();
        let (errors, s2, weak) = (self.errors.clone(), s.clone(), Arc::downgrade(server));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let bound = self.run(async move {
            let mut ep = Endpoint::start(addr, s2, errors).await?;
            let local = ep.local_addr();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        c = ep.accept() => match (c, weak.upgrade()) {
                            (Some(conn), Some(server)) => {
                                tokio::spawn(crate::ags::serve_link(server, conn));
                            }
                            _ => return,
                        },
                        cmd = rx.recv() => match cmd {
                            Some(Cmd::Reconfigure(s)) => ep.reconfigure(s),
                            Some(Cmd::Stop(ack)) => {
                                ep.stop().await;
                                let _ = ack.send(());
                                return;
                            }
                            None => {
                                ep.stop().await;
                                return;
                            }
                        },
                    }
                }
            });
            Ok::<_, ConnectError>(local)
        });
        let local = bound.map_err(|e| {
            SqlError::new(
                7890,
                16,
                format!(
                    "An error occurred while attempting to register the endpoint '{name}'. {}",
                    e.message
                ),
            )
        })?;
        tracing::info!(endpoint = %name, listen = %local, "database mirroring endpoint started");
        *self.running.lock() = Some(Running {
            name: name.to_string(),
            addr: local,
            settings: s,
            cmd: tx,
        });
        Ok(())
    }
}

type Registry = Vec<(Weak<Server>, Arc<Hadr>)>;
static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());

/// The HADR state of `server` (created on first use).
pub fn hadr(server: &Arc<Server>) -> Result<Arc<Hadr>, SqlError> {
    let mut reg = REGISTRY.lock();
    let dead: Vec<Arc<Hadr>> = {
        let (live, dead): (Registry, Registry) =
            reg.drain(..).partition(|(w, _)| w.strong_count() > 0);
        *reg = live;
        dead.into_iter().map(|(_, h)| h).collect()
    };
    let found = reg
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(server)))
        .map(|(_, h)| h.clone());
    let h = match found {
        Some(h) => h,
        None => {
            let h = Arc::new(Hadr::new()?);
            reg.push((Arc::downgrade(server), h.clone()));
            h
        }
    };
    drop(reg);
    drop(dead);
    Ok(h)
}

// ------------------------------------------------------------------------------------ trust

/// The endpoint's [`TrustSource`]: the instance trust store, or a refusal when only Windows
/// authentication is configured.
struct EndpointTrust {
    inner: StoreTrust,
    windows_only: Option<String>,
}

impl TrustSource for EndpointTrust {
    fn local_identity(&self) -> Result<trust::LocalIdentity, trust::TrustError> {
        match &self.windows_only {
            Some(m) => Err(trust::TrustError::new(WINDOWS_ONLY_INFO, m.clone())),
            None => self.inner.local_identity(),
        }
    }
    fn peer_trust(&self, peer_name: &str) -> Result<trust::PeerTrust, trust::TrustError> {
        self.inner.peer_trust(peer_name)
    }
}

fn store(server: &Server, h: &Hadr) -> Result<Arc<trust::TrustStore>, SqlError> {
    if let Some(s) = h.store.get() {
        return Ok(s.clone());
    }
    let s = trust::TrustStore::open(&server.inst.master(), server.inst.data_dir())
        .map_err(crate::trustsql::err)?;
    Ok(h.store.get_or_init(|| Arc::new(s)).clone())
}

fn windows_only_message(name: &str) -> String {
    format!(
        "The endpoint '{name}' is configured for Windows authentication only, which milink cannot perform (there is no Windows domain here): every connection to or from it is refused. Add a certificate: ALTER ENDPOINT [{name}] FOR DATABASE_MIRRORING (AUTHENTICATION = WINDOWS NEGOTIATE CERTIFICATE <certificate>) or AUTHENTICATION = CERTIFICATE <certificate>."
    )
}

fn settings_for(
    server: &Server,
    h: &Hadr,
    e: &EndpointConfig,
) -> Result<EndpointSettings, SqlError> {
    let inner = StoreTrust {
        db_path: server.inst.data_dir().join("master.db"),
        store: store(server, h)?,
        identity: IdentitySource::Certificate(e.certificate.clone().unwrap_or_default()),
    };
    let trust = Arc::new(EndpointTrust {
        inner,
        windows_only: e
            .certificate
            .is_none()
            .then(|| windows_only_message(&e.name)),
    });
    let role = if server.managed {
        Role::ManagedInstance
    } else {
        Role::SqlServer
    };
    let mut s = EndpointSettings::new(server.host.clone(), role, trust);
    (s.encryption, s.algorithm) = e.transport_encryption();
    Ok(s)
}

// ------------------------------------------------------------------------------------ statements

fn one_mirroring_endpoint() -> SqlError {
    SqlError::new(
        7862,
        16,
        "An endpoint of the requested type already exists. Only one endpoint of this type is supported. Use ALTER ENDPOINT or DROP the existing endpoint and execute the CREATE ENDPOINT statement.",
    )
}

fn not_found(verb: &str, name: &str) -> SqlError {
    SqlError::new(
        15151,
        16,
        format!("Cannot {verb} the endpoint '{name}', because it does not exist or you do not have permission."),
    )
}

fn port_of(conn: &mut Conn, def: &EndpointDef) -> Result<Option<u16>, SqlError> {
    let Some(e) = &def.listener_port else {
        return Ok(None);
    };
    let v = conn.eval(e)?;
    let n = v
        .as_i64()
        .or_else(|| display(&v).trim().parse().ok())
        .unwrap_or(-1);
    if !(0..=65535).contains(&n) || (1..1024).contains(&n) {
        return Err(SqlError::new(
            7860,
            16,
            format!("LISTENER_PORT = {} is not valid: use a port from 1024 to 65535, or 0 for a port chosen by the system.", display(&v)),
        ));
    }
    Ok(Some(n as u16))
}

/// Applies the parts written in `def` onto `e`.
fn apply(conn: &mut Conn, def: &EndpointDef, e: &mut EndpointConfig) -> Result<bool, SqlError> {
    let mut changed = false;
    if let Some(s) = def.state {
        e.state = match s {
            EndpointState::Started => 0,
            EndpointState::Stopped => 1,
            EndpointState::Disabled => 2,
        };
        changed = true;
    }
    if let Some(p) = port_of(conn, def)? {
        e.port = p;
        changed = true;
    }
    if let Some(ip) = &def.listener_ip {
        e.ip = match ip {
            ListenerIp::All => None,
            ListenerIp::Address(a) => Some(a.clone()),
        };
        changed = true;
    }
    if let Some(r) = def.role {
        e.role = match r {
            MirroringRole::Partner => 1,
            MirroringRole::Witness => 2,
            MirroringRole::All => 3,
        };
        changed = true;
    }
    if let Some(a) = &def.authentication {
        e.windows = a.windows;
        e.certificate = a.certificate.as_ref().map(|c| c.value.clone());
        e.certificate_first = a.certificate_first;
        changed = true;
    }
    if let Some(x) = &def.encryption {
        e.encryption = x.mode;
        e.algorithms = x.algorithms.clone();
        changed = true;
    }
    // The only content type there is.
    changed |= def.database_mirroring;
    e.listen_addr()?;
    Ok(changed)
}

fn bind_certificate(server: &Server, e: &EndpointConfig) -> Result<Option<i32>, SqlError> {
    server
        .trust()?
        .set_endpoint_certificate(&server.inst.master(), &e.name, e.certificate.as_deref())
        .map_err(crate::trustsql::err)
}

/// Makes the running endpoint match `e` (start, stop, restart or reconfigure).
fn converge(
    server: &Arc<Server>,
    e: &EndpointConfig,
    old: Option<&EndpointConfig>,
) -> Result<(), SqlError> {
    let h = hadr(server)?;
    if e.state != 0 {
        h.stop();
        return Ok(());
    }
    let s = settings_for(server, &h, e)?;
    let same_socket = old.is_some_and(|o| o.state == 0 && o.port == e.port && o.ip == e.ip);
    let running_same = h.running_name().is_some_and(|n| n == e.name);
    if same_socket && running_same {
        h.reconfigure(s);
        return Ok(());
    }
    h.start(server, &e.name, e.listen_addr()?, s)
}

fn windows_info(e: &EndpointConfig, out: &mut Vec<Out>) {
    if e.certificate.is_none() {
        out.push(Out::Info(WINDOWS_ONLY_INFO, windows_only_message(&e.name)));
    }
}

/// Runs CREATE / ALTER / DROP ENDPOINT; returns false if `a` is none of them.
pub fn run(conn: &mut Conn, a: &Admin, out: &mut Vec<Out>) -> Result<bool, SqlError> {
    let server = conn.server.clone();
    match a {
        Admin::CreateEndpoint(def) => {
            let existing = configured(&server)?;
            if server.managed || !existing.is_empty() {
                return Err(one_mirroring_endpoint());
            }
            let mut e = EndpointConfig {
                endpoint_id: FIRST_ENDPOINT_ID,
                name: def.name.value.clone(),
                state: 1,
                port: 5022,
                ip: None,
                role: 3,
                // SQL Server's default: AUTHENTICATION = WINDOWS NEGOTIATE.
                windows: Some(WindowsAuth::Negotiate),
                certificate: None,
                certificate_first: false,
                encryption: EncryptionMode::Required,
                algorithms: vec![],
            };
            if def.listener_port.is_none() {
                return Err(SqlError::new(
                    7860,
                    16,
                    "CREATE ENDPOINT … AS TCP needs LISTENER_PORT.",
                ));
            }
            apply(conn, def, &mut e)?;
            {
                // The check and the insert under one lock of master.
                let m = server.inst.master();
                save(&m, &e, true)?;
            }
            if let Err(x) = bind_certificate(&server, &e) {
                let _ = server.inst.master().execute(
                    "DELETE FROM milink_endpoints WHERE endpoint_id = ?1",
                    [e.endpoint_id],
                );
                return Err(x);
            }
            if let Err(x) = converge(&server, &e, None) {
                let _ = server.inst.master().execute(
                    "DELETE FROM milink_endpoints WHERE endpoint_id = ?1",
                    [e.endpoint_id],
                );
                let _ =
                    server
                        .trust()?
                        .set_endpoint_certificate(&server.inst.master(), &e.name, None);
                return Err(x);
            }
            windows_info(&e, out);
        }
        Admin::AlterEndpoint(def) => {
            let all = configured(&server)?;
            let Some(old) = all
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&def.name.value))
                .cloned()
            else {
                return Err(not_found("alter", &def.name.value));
            };
            let mut e = old.clone();
            if !apply(conn, def, &mut e)? {
                return Err(SqlError::new(
                    7863,
                    16,
                    "The endpoint was not changed. The ALTER ENDPOINT statement did not contain any values to modify or update.",
                ));
            }
            bind_certificate(&server, &e)?;
            if let Err(x) = converge(&server, &e, Some(&old)) {
                let _ = bind_certificate(&server, &old);
                return Err(x);
            }
            save(&server.inst.master(), &e, false)?;
            windows_info(&e, out);
        }
        Admin::DropEndpoint { name } => {
            let all = configured(&server)?;
            let Some(e) = all
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&name.value))
            else {
                return Err(not_found("drop", &name.value));
            };
            let h = hadr(&server)?;
            if h.running_name().is_some_and(|n| n == e.name) {
                h.stop();
            }
            server
                .inst
                .master()
                .execute(
                    "DELETE FROM milink_endpoints WHERE endpoint_id = ?1",
                    [e.endpoint_id],
                )
                .map_err(db_err)?;
            server
                .trust()?
                .set_endpoint_certificate(&server.inst.master(), &e.name, None)
                .map_err(crate::trustsql::err)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

// ------------------------------------------------------------------------------------ start-up

/// `milink serve` start-up: restarts the STARTED endpoint kept in master and, for a managed instance
/// (`mirror_listen` given), creates its CA and endpoint certificate, starts their renewal and its
/// endpoint. Returns the address the mirroring endpoint listens on, if any.
pub fn start_at_boot(
    server: &Arc<Server>,
    mirror_listen: Option<&str>,
) -> Result<Option<SocketAddr>, SqlError> {
    if let Some(l) = mirror_listen {
        let addr = l.parse::<SocketAddr>().map_err(|e| {
            SqlError::new(
                7890,
                16,
                format!("--mirror-listen '{l}' is not HOST:PORT with a numeric host: {e}"),
            )
        })?;
        return start_managed(server, addr).map(Some);
    }
    let mut addr = None;
    for e in configured(server)? {
        if e.state == 0 {
            match converge(server, &e, None) {
                Ok(()) => addr = hadr(server)?.local_addr(),
                Err(x) => tracing::error!(endpoint = %e.name, "cannot start: {}", x.message),
            }
        }
    }
    Ok(addr)
}

/// The managed instance's endpoint: CA, endpoint certificate for `server.host` (renewed in the
/// background with an overlap), listener on `listen`.
pub fn start_managed(server: &Arc<Server>, listen: SocketAddr) -> Result<SocketAddr, SqlError> {
    let h = hadr(server)?;
    let st = store(server, &h)?;
    let now = trust::now_utc();
    let validity = chrono::Duration::days(MANAGED_CERT_VALIDITY_DAYS);
    let renew = chrono::Duration::days(MANAGED_RENEW_BEFORE_DAYS);
    st.ensure_managed_identity(&server.inst.master(), &server.host, now, validity, renew)
        .map_err(crate::trustsql::err)?;
    let db_path = server.inst.data_dir().join("master.db");
    let (s2, fqdn, db2) = (st.clone(), server.host.clone(), db_path.clone());
    let task = {
        // Spawning needs the runtime's context, not a wait on it.
        let _in = h.handle().enter();
        transport::spawn_certificate_renewal(db2, s2, fqdn, MANAGED_RENEW_CHECK, validity, renew)
    };
    if let Some(old) = h.managed_renewal.lock().replace(task) {
        old.abort();
    }
    let trust = Arc::new(StoreTrust {
        db_path,
        store: st,
        identity: IdentitySource::InstanceEndpoint {
            fqdn: server.host.clone(),
        },
    });
    let s = EndpointSettings::new(server.host.clone(), Role::ManagedInstance, trust);
    h.start(server, MANAGED_ENDPOINT_NAME, listen, s)?;
    h.local_addr()
        .ok_or_else(|| SqlError::new(7890, 16, "the managed instance endpoint did not start"))
}

// ------------------------------------------------------------------------------------ views

type Col = (&'static str, DataType);

fn endpoint_cols() -> Vec<Col> {
    use DataType::*;
    let nv = || NVarChar(Len::N(60));
    vec![
        ("name", SysName),
        ("endpoint_id", Int),
        ("principal_id", Int),
        ("protocol", TinyInt),
        ("protocol_desc", nv()),
        ("type", TinyInt),
        ("type_desc", nv()),
        ("state", TinyInt),
        ("state_desc", nv()),
        ("is_admin_endpoint", Bit),
    ]
}

/// (key, columns) of the endpoint views, for the system view list.
pub fn views() -> Vec<(&'static str, Vec<Col>)> {
    use DataType::*;
    let nv = || NVarChar(Len::N(60));
    let mut tcp = endpoint_cols();
    tcp.extend([
        ("port", Int),
        ("is_dynamic_port", Bit),
        ("ip_address", NVarChar(Len::N(45))),
    ]);
    let mut dm = endpoint_cols();
    dm.extend([
        ("role", TinyInt),
        ("role_desc", nv()),
        ("is_encryption_enabled", Bit),
        ("connection_auth", TinyInt),
        ("connection_auth_desc", nv()),
        ("certificate_id", Int),
        ("encryption_algorithm", TinyInt),
        ("encryption_algorithm_desc", nv()),
    ]);
    vec![
        ("sys.endpoints", endpoint_cols()),
        ("sys.tcp_endpoints", tcp),
        ("sys.database_mirroring_endpoints", dm),
    ]
}

fn text(s: &str) -> Value {
    Value::NVarChar(s.to_string())
}

/// A mirroring endpoint as the views show it, with its live port and certificate id.
struct Shown {
    cfg: EndpointConfig,
    port: u16,
    certificate_id: Option<i32>,
}

fn shown(server: &Arc<Server>) -> Result<Vec<Shown>, SqlError> {
    let h = hadr(server)?;
    if server.managed {
        let Some(addr) = h.local_addr() else {
            return Ok(vec![]);
        };
        return Ok(vec![Shown {
            cfg: EndpointConfig {
                endpoint_id: FIRST_ENDPOINT_ID,
                name: MANAGED_ENDPOINT_NAME.into(),
                state: 0,
                port: addr.port(),
                ip: None,
                role: 3,
                windows: None,
                certificate: Some(server.host.clone()),
                certificate_first: false,
                encryption: EncryptionMode::Required,
                algorithms: vec![EncryptionAlgorithm::Aes],
            },
            port: addr.port(),
            certificate_id: None,
        }]);
    }
    let running = h.running_name().zip(h.local_addr());
    let mut v = Vec::new();
    for cfg in configured(server)? {
        let port = match &running {
            Some((n, a)) if *n == cfg.name => a.port(),
            _ => cfg.port,
        };
        let certificate_id = match &cfg.certificate {
            Some(c) => server
                .trust()?
                .cert_id(&server.inst.master(), c)
                .map_err(crate::trustsql::err)?,
            None => None,
        };
        v.push(Shown {
            cfg,
            port,
            certificate_id,
        });
    }
    Ok(v)
}

fn endpoint_row(name: &str, id: i32, kind: (u8, &str), state: u8, admin: bool) -> Vec<Value> {
    vec![
        text(name),
        Value::Int(id),
        Value::Int(1),
        Value::TinyInt(2),
        text("TCP"),
        Value::TinyInt(kind.0),
        text(kind.1),
        Value::TinyInt(state),
        text(state_desc(state)),
        Value::Bit(admin),
    ]
}

/// Rows of an endpoint view; None if `key` is not one.
pub fn rows_for(conn: &mut Conn, key: &str) -> Option<Result<Vec<Vec<Value>>, SqlError>> {
    if !matches!(
        key,
        "sys.endpoints" | "sys.tcp_endpoints" | "sys.database_mirroring_endpoints"
    ) {
        return None;
    }
    let server = conn.server.clone();
    Some((|| {
        let eps = shown(&server)?;
        let builtin = [
            ("Dedicated Admin Connection", 1, true),
            ("TSQL Default TCP", 4, false),
        ];
        let mut rows = Vec::new();
        if key != "sys.database_mirroring_endpoints" {
            for (n, id, admin) in builtin {
                let mut r = endpoint_row(n, id, (2, "TSQL"), 0, admin);
                if key == "sys.tcp_endpoints" {
                    r.extend([Value::Int(0), Value::Bit(true), Value::Null]);
                }
                rows.push(r);
            }
        }
        for s in eps {
            let e = &s.cfg;
            let mut r = endpoint_row(
                &e.name,
                e.endpoint_id,
                (4, "DATABASE_MIRRORING"),
                e.state,
                false,
            );
            match key {
                "sys.tcp_endpoints" => r.extend([
                    Value::Int(s.port as i32),
                    Value::Bit(e.port == 0),
                    e.ip.as_deref().map(text).unwrap_or(Value::Null),
                ]),
                "sys.database_mirroring_endpoints" => {
                    let (ca, cad) = e.connection_auth();
                    let (ea, ead) = e.encryption_algorithm();
                    r.extend([
                        Value::TinyInt(e.role),
                        text(e.role_desc()),
                        Value::Bit(e.encryption != EncryptionMode::Disabled),
                        Value::TinyInt(ca),
                        text(&cad),
                        s.certificate_id.map(Value::Int).unwrap_or(Value::Null),
                        Value::TinyInt(ea),
                        text(ead),
                    ]);
                }
                _ => {}
            }
            rows.push(r);
        }
        Ok(rows)
    })())
}

/// The endpoint of `server` (for tests and the link): its state, created on demand.
pub fn state(server: &Arc<Server>) -> Result<Arc<Hadr>, SqlError> {
    hadr(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(windows: Option<WindowsAuth>, cert: bool, first: bool) -> EndpointConfig {
        EndpointConfig {
            endpoint_id: FIRST_ENDPOINT_ID,
            name: "e".into(),
            state: 0,
            port: 5022,
            ip: None,
            role: 3,
            windows,
            certificate: cert.then(|| "c".to_string()),
            certificate_first: first,
            encryption: EncryptionMode::Required,
            algorithms: vec![],
        }
    }

    #[test]
    fn connection_auth_values() {
        use WindowsAuth::*;
        let cases = [
            (cfg(Some(Ntlm), false, false), 1, "WINDOWS_NTLM"),
            (cfg(Some(Kerberos), false, false), 2, "WINDOWS_KERBEROS"),
            (cfg(Some(Negotiate), false, false), 3, "WINDOWS_NEGOTIATE"),
            (cfg(None, true, false), 4, "CERTIFICATE"),
            (cfg(Some(Ntlm), true, false), 5, "WINDOWS_NTLM_CERTIFICATE"),
            (
                cfg(Some(Negotiate), true, false),
                7,
                "WINDOWS_NEGOTIATE_CERTIFICATE",
            ),
            (
                cfg(Some(Kerberos), true, true),
                9,
                "CERTIFICATE_WINDOWS_KERBEROS",
            ),
            (
                cfg(Some(Negotiate), true, true),
                10,
                "CERTIFICATE_WINDOWS_NEGOTIATE",
            ),
        ];
        for (c, n, d) in cases {
            assert_eq!(c.connection_auth(), (n, d.to_string()));
        }
    }

    #[test]
    fn encryption_algorithm_values() {
        use EncryptionAlgorithm::*;
        let mut c = cfg(None, true, false);
        assert_eq!(c.encryption_algorithm(), (2, "AES"));
        c.algorithms = vec![Rc4, Aes];
        assert_eq!(c.encryption_algorithm(), (5, "RC4, AES"));
        c.encryption = EncryptionMode::Supported;
        c.algorithms = vec![Aes];
        assert_eq!(c.encryption_algorithm(), (4, "NONE, AES"));
        c.encryption = EncryptionMode::Disabled;
        assert_eq!(c.encryption_algorithm(), (0, "NONE"));
    }
}
