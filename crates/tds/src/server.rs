//! Async connection driver: PRELOGIN/TLS negotiation, login, then one request at a time
//! dispatched to a [`Handler`], with ATTENTION handled concurrently.
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::batch::{AllHeaders, SqlBatch};
use crate::login7::Login7;
use crate::packet::{
    encode_packets, PacketHeader, PacketType, RawMessage as PacketMessage, Reassembler,
    DEFAULT_PACKET_SIZE, HEADER_LEN, MAX_PACKET_SIZE, MIN_PACKET_SIZE,
};
use crate::prelogin::{Encryption, PreLogin};
use crate::rpc::{RpcMessage, RpcRequest};
use crate::tls::{PreloginFramed, TlsIdentity};
use crate::tm::{TmMessage, TmRequest};
use crate::token::{self, cur_cmd, DoneKind, DoneStatus, EnvChange, Message};
use crate::types::{Collation, Column, SqlType, SqlValue};
use crate::{version, EncodeError};

/// Server-wide settings shared by all connections.
pub struct ServerConfig {
    /// TLS for TDS 7.x (handshake inside PRELOGIN). `None`: encryption not supported.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS for TDS 8.0 strict (TLS first, ALPN "tds/8.0"). `None`: not offered.
    pub tls_strict: Option<Arc<rustls::ServerConfig>>,
    /// Name sent in ERROR/INFO tokens (@@SERVERNAME).
    pub server_name: String,
    /// LOGINACK / PRELOGIN version: major, minor, build (16.0.1000 = SQL Server 2022).
    pub product_version: (u8, u8, u16),
    pub product_name: String,
    /// Largest request message accepted (bytes).
    pub max_message_size: usize,
    /// After ATTENTION, how long a handler may keep running before its future is dropped.
    pub attention_grace: Duration,
    /// Time allowed from connect to a complete LOGIN7 (PRELOGIN and TLS included).
    pub login_timeout: Duration,
    /// "Force Encryption": every session fully encrypted, clients without TLS refused.
    pub force_encryption: bool,
    next_spid: AtomicU16,
}

impl ServerConfig {
    pub fn new(server_name: impl Into<String>) -> Self {
        ServerConfig {
            tls: None,
            tls_strict: None,
            server_name: server_name.into(),
            product_version: (16, 0, 1000),
            product_name: "Microsoft SQL Server".into(),
            max_message_size: 256 << 20,
            attention_grace: Duration::from_secs(5),
            login_timeout: Duration::from_secs(30),
            force_encryption: false,
            next_spid: AtomicU16::new(51),
        }
    }

    /// Enables TLS (PRELOGIN-wrapped and TDS 8.0 strict) with one identity.
    pub fn with_tls(mut self, id: &TlsIdentity) -> io::Result<Self> {
        self.tls = Some(id.server_config(false)?);
        self.tls_strict = Some(id.server_config(true)?);
        Ok(self)
    }

    fn alloc_spid(&self) -> u16 {
        // SPIDs 1-50 are system sessions in SQL Server; wrap back to 51.
        loop {
            let s = self.next_spid.fetch_add(1, Ordering::Relaxed);
            if s >= 51 {
                return s;
            }
            let _ = self.next_spid.compare_exchange(
                s.wrapping_add(1),
                51,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// Facts about the connection given to [`Handler::login`].
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub spid: u16,
    pub peer: Option<SocketAddr>,
    /// Whole session encrypted (not login-only).
    pub encrypted: bool,
    /// Negotiated TDS version (LOGINACK form).
    pub tds_version: u32,
    pub packet_size: u32,
}

pub struct LoginOk<S> {
    pub session: S,
    /// Current database after login (reported with ENVCHANGE 1 + INFO 5701).
    pub database: String,
    pub language: String,
}

impl<S> LoginOk<S> {
    pub fn new(session: S, database: impl Into<String>) -> Self {
        LoginOk {
            session,
            database: database.into(),
            language: "us_english".into(),
        }
    }
}

/// Login refusal; sent as ERROR (18456 class 14 by default) + DONE(error), then close.
#[derive(Debug, Clone)]
pub struct LoginError(pub Message);

impl LoginError {
    pub fn login_failed(user: &str) -> Self {
        LoginError(Message::error(
            18456,
            14,
            1,
            format!("Login failed for user '{user}'."),
        ))
    }
    /// e.g. 4060 "Cannot open database ... requested by the login".
    pub fn other(number: i32, class: u8, text: impl Into<String>) -> Self {
        LoginError(Message::error(number, class, 1, text))
    }
}

/// Tripped by ATTENTION. Cheap to clone; await [`CancelToken::cancelled`] or poll
/// [`CancelToken::is_cancelled`] (e.g. from a blocking thread to interrupt SQLite).
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<watch::Sender<bool>>);

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    pub fn new() -> Self {
        CancelToken(Arc::new(watch::channel(false).0))
    }
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// The application side of the protocol. One `Session` per connection; calls on a
/// session never overlap. Implement the methods with `async fn`.
pub trait Handler: Send + Sync + 'static {
    type Session: Send + 'static;

    /// Authenticates and opens the session. The password is in `login.password`.
    fn login(
        &self,
        login: &Login7,
        conn: &ConnInfo,
    ) -> impl Future<Output = Result<LoginOk<Self::Session>, LoginError>> + Send;

    /// A SQL batch. Write results to `out`; end each statement with a DONE
    /// (`out.done(..)`); the driver fixes up the MORE bits and adds a final DONE if missing.
    fn batch(
        &self,
        session: &mut Self::Session,
        batch: SqlBatch,
        out: &mut ResponseWriter<'_>,
    ) -> impl Future<Output = ()> + Send;

    /// One RPC call (a message with several calls gives several invocations). End with
    /// `out.done_proc(..)`; statements inside use `out.done_in_proc(..)`.
    fn rpc(
        &self,
        session: &mut Self::Session,
        rpc: RpcRequest,
        out: &mut ResponseWriter<'_>,
    ) -> impl Future<Output = ()> + Send;

    /// Transaction Manager request (begin/commit/rollback/save). Answer with
    /// `out.env_change(EnvChange::BeginTransaction{..})` etc. and `out.done(None)`.
    /// TM_GET_DTC_ADDRESS is answered by the driver.
    fn tm(
        &self,
        session: &mut Self::Session,
        req: TmRequest,
        out: &mut ResponseWriter<'_>,
    ) -> impl Future<Output = ()> + Send;

    /// RESETCONNECTION: restore session defaults; roll back unless `keep_transaction`.
    fn reset(
        &self,
        session: &mut Self::Session,
        keep_transaction: bool,
    ) -> impl Future<Output = ()> + Send;

    /// Connection closed.
    fn disconnect(&self, session: Self::Session) {
        drop(session);
    }
}

type Writer<'a> = dyn AsyncWrite + Send + Unpin + 'a;

#[derive(Clone, Copy)]
struct PendingDone {
    kind: DoneKind,
    status: u16,
    cur_cmd: u16,
    rows: u64,
}

/// Builds the response token stream and sends it as packets of the negotiated size.
pub struct ResponseWriter<'a> {
    w: &'a mut Writer<'a>,
    buf: Vec<u8>,
    packet_size: usize,
    spid: u16,
    packet_id: u8,
    tds72: bool,
    tds_version: u32,
    cancel: CancelToken,
    pending: Option<PendingDone>,
    error_since_done: bool,
    in_transaction: bool,
    columns: Vec<Column>,
    server_name: String,
    failed: bool,
    headers: AllHeaders,
}

/// Error from [`ResponseWriter::send_row`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl<'a> ResponseWriter<'a> {
    fn new(w: &'a mut Writer<'a>, s: &ConnState, cancel: CancelToken) -> Self {
        ResponseWriter {
            w,
            buf: Vec::with_capacity(s.packet_size),
            packet_size: s.packet_size,
            spid: s.spid,
            packet_id: 1,
            tds72: s.tds72(),
            tds_version: s.tds_version,
            cancel,
            pending: None,
            error_since_done: false,
            in_transaction: false,
            columns: Vec::new(),
            server_name: s.server_name.clone(),
            failed: false,
            headers: AllHeaders::default(),
        }
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
    /// ALL_HEADERS of the current request (transaction descriptor the client believes
    /// current, outstanding request count); empty for requests without them.
    pub fn request_headers(&self) -> &AllHeaders {
        &self.headers
    }
    pub fn tds_version(&self) -> u32 {
        self.tds_version
    }
    /// Sets the INXACT bit on subsequent DONE tokens.
    pub fn set_in_transaction(&mut self, v: bool) {
        self.in_transaction = v;
    }

    fn before_token(&mut self) {
        if let Some(p) = self.pending.take() {
            token::done(
                &mut self.buf,
                p.kind,
                p.status | DoneStatus::MORE,
                p.cur_cmd,
                p.rows,
                self.tds72,
            );
        }
    }

    /// Starts a result set.
    pub fn columns(&mut self, cols: Vec<Column>) {
        self.before_token();
        token::col_metadata(&mut self.buf, &cols);
        self.columns = cols;
    }

    /// One row of the current result set; values must fit the column types.
    pub fn row(&mut self, values: &[SqlValue]) -> Result<(), EncodeError> {
        self.before_token();
        if values.iter().any(|v| matches!(v, SqlValue::Null)) {
            token::nbc_row(&mut self.buf, &self.columns, values)
        } else {
            token::row(&mut self.buf, &self.columns, values)
        }
    }

    /// `row` then a flush once enough is buffered: use this to stream big results.
    pub async fn send_row(&mut self, values: &[SqlValue]) -> Result<(), SendError> {
        self.row(values)?;
        if self.buf.len() >= 4 * self.packet_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// DONE for a statement of a batch; `rows` sets DONE_COUNT.
    pub fn done(&mut self, rows: Option<u64>) {
        self.done_token(DoneKind::Done, 0, cur_cmd::SELECT, rows);
    }
    /// DONEINPROC for a statement inside an RPC.
    pub fn done_in_proc(&mut self, rows: Option<u64>) {
        self.done_token(DoneKind::DoneInProc, 0, cur_cmd::SELECT, rows);
    }
    /// DONEPROC ending an RPC call.
    pub fn done_proc(&mut self, rows: Option<u64>) {
        self.done_token(DoneKind::DoneProc, 0, cur_cmd::EXECUTE, rows);
    }
    /// Full control; MORE is managed by the writer, ERROR is added after an error
    /// message, INXACT while in a transaction.
    pub fn done_token(&mut self, kind: DoneKind, mut status: u16, cur_cmd: u16, rows: Option<u64>) {
        self.before_token();
        if rows.is_some() {
            status |= DoneStatus::COUNT;
        }
        if std::mem::take(&mut self.error_since_done) {
            status |= DoneStatus::ERROR;
        }
        if self.in_transaction {
            status |= DoneStatus::INXACT;
        }
        status &= !DoneStatus::MORE;
        self.pending = Some(PendingDone {
            kind,
            status,
            cur_cmd,
            rows: rows.unwrap_or(0),
        });
    }

    /// ERROR (class > 10) or INFO token. Empty server name is filled in.
    pub fn message(&mut self, mut m: Message) {
        self.before_token();
        if m.server.is_empty() {
            m.server = self.server_name.clone();
        }
        if m.is_error() {
            self.error_since_done = true;
        }
        token::message(&mut self.buf, &m, self.tds72);
    }
    pub fn error(&mut self, number: i32, class: u8, state: u8, text: impl Into<String>) {
        self.message(Message::error(number, class.max(11), state, text));
    }
    /// PRINT / informational message (class 0).
    pub fn info(&mut self, number: i32, text: impl Into<String>) {
        self.message(Message::info(number, text));
    }

    pub fn env_change(&mut self, e: EnvChange) {
        self.before_token();
        token::env_change(&mut self.buf, &e);
    }
    pub fn return_status(&mut self, status: i32) {
        self.before_token();
        token::return_status(&mut self.buf, status);
    }
    pub fn return_value(
        &mut self,
        ordinal: u16,
        name: &str,
        ty: &SqlType,
        value: &SqlValue,
    ) -> Result<(), EncodeError> {
        self.before_token();
        token::return_value(&mut self.buf, ordinal, name, ty, value, false)
    }
    pub fn order(&mut self, columns: &[u16]) {
        self.before_token();
        token::order(&mut self.buf, columns);
    }
    /// Raw token bytes, for tokens this crate has no helper for.
    pub fn raw_token(&mut self, bytes: &[u8]) {
        self.before_token();
        self.buf.extend_from_slice(bytes);
    }

    /// Sends all complete packets buffered so far. Fails once ATTENTION arrived
    /// (the handler should stop) or the connection broke.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "cancelled by attention",
            ));
        }
        self.send(false).await
    }

    async fn send(&mut self, eom: bool) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection failed",
            ));
        }
        let chunk = self.packet_size - HEADER_LEN;
        // Keep the tail back unless ending: EOM must go on a packet of its own data.
        let n = if eom {
            self.buf.len()
        } else {
            (self.buf.len().saturating_sub(1) / chunk) * chunk
        };
        if n == 0 && !eom {
            return Ok(());
        }
        let mut wire = Vec::with_capacity(n + (n / chunk + 1) * HEADER_LEN);
        self.packet_id = encode_packets(
            &mut wire,
            PacketType::TabularResult,
            &self.buf[..n],
            self.packet_size,
            self.spid,
            self.packet_id,
            eom,
        );
        self.buf.drain(..n);
        let r = async {
            self.w.write_all(&wire).await?;
            self.w.flush().await
        }
        .await;
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Ends the response; adds a final DONE of `kind` if the handler wrote none.
    async fn finish(&mut self, kind: DoneKind) -> io::Result<()> {
        match self.pending.take() {
            Some(p) => token::done(
                &mut self.buf,
                p.kind,
                p.status,
                p.cur_cmd,
                p.rows,
                self.tds72,
            ),
            None => {
                let mut status = if std::mem::take(&mut self.error_since_done) {
                    DoneStatus::ERROR
                } else {
                    0
                };
                if self.in_transaction {
                    status |= DoneStatus::INXACT;
                }
                token::done(&mut self.buf, kind, status, 0, 0, self.tds72)
            }
        }
        self.send(true).await
    }

    /// Ends a cancelled response: unsent tokens are dropped and the response is closed
    /// with a plain DONE; the acknowledgement DONE(ATTN) follows as a message of its
    /// own (tedious reads the ack from the message after the request's response).
    async fn finish_cancelled(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.pending = None;
        token::done(&mut self.buf, DoneKind::Done, 0, 0, 0, self.tds72);
        self.send(true).await?;
        self.finish_attention().await
    }

    /// Sends DONE(ATTN) as one message.
    async fn finish_attention(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.pending = None;
        self.packet_id = 1;
        token::done(
            &mut self.buf,
            DoneKind::Done,
            DoneStatus::ATTN,
            0,
            0,
            self.tds72,
        );
        self.send(true).await
    }
}

struct ConnState {
    spid: u16,
    packet_size: usize,
    tds_version: u32,
    server_name: String,
}

impl ConnState {
    fn tds72(&self) -> bool {
        self.tds_version >= version::V7_2 || self.tds_version == version::V8_0
    }
}

/// Accepts connections forever, one task per connection.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
) -> io::Result<()> {
    serve_until(listener, handler, config, std::future::pending()).await
}

/// Like [`serve`], but stops accepting when `shutdown` completes. Connections already
/// accepted keep running (their tasks are detached).
pub async fn serve_until<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // e.g. EMFILE: back off instead of ending the listener.
                    warn!(error = %e, "tds accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (h, c) = (handler.clone(), config.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_connection(h, tcp, c).await {
                debug!(%peer, error = %e, "tds connection ended with error");
            }
        });
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one message packet by packet, never past its last byte (TLS may follow).
async fn read_message_exact<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
) -> io::Result<PacketMessage> {
    let mut msg: Option<PacketMessage> = None;
    loop {
        let mut h = [0u8; HEADER_LEN];
        r.read_exact(&mut h).await?;
        let h = PacketHeader::decode(&h).map_err(|e| invalid(e.to_string()))?;
        let m = msg.get_or_insert_with(|| PacketMessage {
            ty: h.ty,
            status: h.status,
            payload: Vec::new(),
        });
        if m.payload.len() + h.payload_len() > max {
            return Err(invalid("message too large"));
        }
        let start = m.payload.len();
        m.payload.resize(start + h.payload_len(), 0);
        r.read_exact(&mut m.payload[start..]).await?;
        if h.is_eom() {
            return msg.ok_or_else(|| invalid("no message"));
        }
    }
}

async fn write_message<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    ty: PacketType,
    payload: &[u8],
    size: usize,
    spid: u16,
) -> io::Result<()> {
    let mut out = Vec::new();
    encode_packets(&mut out, ty, payload, size, spid, 1, true);
    w.write_all(&out).await?;
    w.flush().await
}

fn negotiate_version(client: u32) -> u32 {
    use version::*;
    match client {
        V7_1 | V7_2 | V7_3A | V7_3B | V7_4 => client,
        c if c > V7_4 => V7_4,
        V8_0 => V7_4,
        c if c > V7_3B => V7_3B,
        c if c > V7_2 => V7_2,
        _ => V7_1,
    }
}

/// Drives one client connection to completion.
pub async fn serve_connection<H: Handler>(
    handler: Arc<H>,
    tcp: TcpStream,
    config: Arc<ServerConfig>,
) -> io::Result<()> {
    let peer = tcp.peer_addr().ok();
    let _ = tcp.set_nodelay(true);
    let max = config.max_message_size;
    let cfg = config.clone();
    let setup = async move {
        let config = cfg;
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }

        // --- PRELOGIN, TLS
        let r: (Box<dyn Io>, PacketMessage, bool) = if first[0] == 0x16 {
            // TDS 8.0: TLS ClientHello first.
            let cfg = config
                .tls_strict
                .clone()
                .ok_or_else(|| invalid("TDS 8.0 (strict) TLS not configured"))?;
            let mut tls = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await?;
            let pre = read_message_exact(&mut tls, max).await?;
            if pre.ty != PacketType::PreLogin {
                return Err(invalid("expected PRELOGIN"));
            }
            let req = PreLogin::decode(&pre.payload).map_err(|e| invalid(e.to_string()))?;
            let reply = prelogin_reply(&config, req.encryption.unwrap_or(Encryption::NotSupported));
            write_message(
                &mut tls,
                PacketType::TabularResult,
                &reply.encode(),
                DEFAULT_PACKET_SIZE as usize,
                0,
            )
            .await?;
            let login = read_message_exact(&mut tls, max).await?;
            (Box::new(tls), login, true)
        } else {
            let mut tcp = tcp;
            let pre = read_message_exact(&mut tcp, max).await?;
            if pre.ty != PacketType::PreLogin {
                return Err(invalid(format!("expected PRELOGIN, got {:?}", pre.ty)));
            }
            let req = PreLogin::decode(&pre.payload).map_err(|e| invalid(e.to_string()))?;
            let client = req.encryption.unwrap_or(Encryption::NotSupported);
            let force = config.force_encryption;
            let ours = match (&config.tls, client) {
                (None, _) => Encryption::NotSupported,
                // Forced: REQ tells the client it must encrypt; one that cannot gives up.
                (Some(_), Encryption::NotSupported) if force => Encryption::Required,
                (_, Encryption::NotSupported) => Encryption::NotSupported,
                (Some(_), Encryption::Off) if !force => Encryption::Off,
                (Some(_), _) => Encryption::On,
            };
            debug!(?client, ?ours, "prelogin encryption");
            let reply = prelogin_reply(&config, ours);
            write_message(
                &mut tcp,
                PacketType::TabularResult,
                &reply.encode(),
                DEFAULT_PACKET_SIZE as usize,
                0,
            )
            .await?;
            if force && ours == Encryption::Required && client == Encryption::NotSupported {
                return Err(invalid(
                    "encryption is required but the client does not support it",
                ));
            }
            match (ours, config.tls.clone()) {
                (Encryption::NotSupported, _) | (_, None) => {
                    if matches!(client, Encryption::Required) {
                        return Err(invalid("client requires encryption, none configured"));
                    }
                    let login = read_message_exact(&mut tcp, max).await?;
                    (Box::new(tcp), login, false)
                }
                (Encryption::Off, Some(_)) if peek_byte(&tcp).await? == 0x10 => {
                    // Client OFF that sends LOGIN7 in clear (tedious with encrypt=false):
                    // SQL Server accepts this unless encryption is forced.
                    let login = read_message_exact(&mut tcp, max).await?;
                    (Box::new(tcp), login, false)
                }
                (mode, Some(cfg)) => {
                    let mut tls = tokio_rustls::TlsAcceptor::from(cfg)
                        .accept(PreloginFramed::new(tcp))
                        .await?;
                    tls.get_mut().0.passthrough = true;
                    let login = read_message_exact(&mut tls, max).await?;
                    if mode == Encryption::Off {
                        // Login-only encryption: drop TLS silently (no close_notify).
                        let (framed, _) = tls.into_inner();
                        (Box::new(framed.into_inner()), login, false)
                    } else {
                        (Box::new(tls), login, true)
                    }
                }
            }
        };
        Ok(r)
    };
    let (io, login, encrypted) = match tokio::time::timeout(config.login_timeout, setup).await {
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "login timed out")),
        // A client that disconnects before logging in is not an error.
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Ok(r) => r?,
    };
    run_session(handler, io, login, encrypted, peer, config).await
}

async fn peek_byte(tcp: &TcpStream) -> io::Result<u8> {
    let mut b = [0u8; 1];
    if tcp.peek(&mut b).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(b[0])
}

fn prelogin_reply(config: &ServerConfig, enc: Encryption) -> PreLogin {
    let (a, b, c) = config.product_version;
    PreLogin {
        version: Some((a, b, c, 0)),
        encryption: Some(enc),
        instance: Some(vec![0]),
        thread_id: Some(0),
        mars: Some(0),
        ..Default::default()
    }
}

async fn run_session<H: Handler>(
    handler: Arc<H>,
    mut io: Box<dyn Io>,
    login_msg: PacketMessage,
    encrypted: bool,
    peer: Option<SocketAddr>,
    config: Arc<ServerConfig>,
) -> io::Result<()> {
    if login_msg.ty != PacketType::Login7 {
        return Err(invalid(format!("expected LOGIN7, got {:?}", login_msg.ty)));
    }
    let login = Login7::decode(&login_msg.payload).map_err(|e| invalid(e.to_string()))?;
    let spid = config.alloc_spid();
    let tds_version = negotiate_version(login.tds_version);
    let packet_size = match login.packet_size {
        0 => DEFAULT_PACKET_SIZE,
        n => n.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE),
    };
    let state = ConnState {
        spid,
        packet_size: packet_size as usize,
        tds_version,
        server_name: config.server_name.clone(),
    };
    let conn = ConnInfo {
        spid,
        peer,
        encrypted,
        tds_version,
        packet_size,
    };
    debug!(?login, spid, "login");

    let result = handler.login(&login, &conn).await;
    let mut session = {
        let w: &mut Writer<'_> = &mut io;
        let mut out = ResponseWriter::new(w, &state, CancelToken::new());
        match result {
            Err(LoginError(m)) => {
                out.message(m);
                out.finish(DoneKind::Done).await?;
                return Ok(());
            }
            Ok(ok) => {
                let (a, b, c) = config.product_version;
                out.env_change(EnvChange::PacketSize {
                    new: packet_size,
                    old: DEFAULT_PACKET_SIZE,
                });
                out.env_change(EnvChange::Database {
                    new: ok.database.clone(),
                    old: "master".into(),
                });
                out.info(
                    5701,
                    format!("Changed database context to '{}'.", ok.database),
                );
                out.env_change(EnvChange::Language {
                    new: ok.language.clone(),
                    old: String::new(),
                });
                out.info(
                    5703,
                    format!("Changed language setting to {}.", ok.language),
                );
                out.env_change(EnvChange::Collation {
                    new: Collation::default(),
                    old: None,
                });
                out.before_token();
                token::login_ack(
                    &mut out.buf,
                    tds_version,
                    &config.product_name,
                    [a, b, (c >> 8) as u8, c as u8],
                );
                out.finish(DoneKind::Done).await?;
                ok.session
            }
        }
    };

    // --- request loop: a reader task reassembles messages and trips cancellation.
    let (rd, mut wr) = tokio::io::split(io);
    let current: Arc<Mutex<Option<CancelToken>>> = Arc::new(Mutex::new(None));
    let (tx, mut rx) = mpsc::channel::<io::Result<PacketMessage>>(4);
    let reader = tokio::spawn(read_loop(rd, tx, current.clone(), config.max_message_size));
    let mut attention_acked = 0usize;

    let result: io::Result<()> = async {
        while let Some(msg) = rx.recv().await {
            let msg = msg?;
            let w: &mut Writer<'_> = &mut wr;
            if msg.ty == PacketType::Attention {
                if attention_acked > 0 {
                    attention_acked -= 1;
                } else {
                    // Arrived after the response was complete: still acknowledged.
                    ResponseWriter::new(w, &state, CancelToken::new())
                        .finish_attention()
                        .await?;
                }
                continue;
            }
            let cancel = CancelToken::new();
            *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancel.clone());
            let mut out = ResponseWriter::new(w, &state, cancel.clone());
            if msg.reset_connection() {
                handler
                    .reset(&mut session, msg.reset_keeps_transaction())
                    .await;
                out.env_change(EnvChange::ResetConnectionAck);
            }
            let kind = dispatch(
                &*handler,
                &mut session,
                msg,
                &mut out,
                config.attention_grace,
            )
            .await?;
            let cancelled = {
                let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
                *cur = None;
                cancel.is_cancelled()
            };
            if cancelled {
                attention_acked += 1;
                out.finish_cancelled().await?;
            } else {
                out.finish(kind).await?;
            }
        }
        Ok(())
    }
    .await;
    reader.abort();
    handler.disconnect(session);
    result
}

async fn dispatch<H: Handler>(
    handler: &H,
    session: &mut H::Session,
    msg: PacketMessage,
    out: &mut ResponseWriter<'_>,
    grace: Duration,
) -> io::Result<DoneKind> {
    let cancel = out.cancel_token();
    // A handler that ignores cancellation is dropped after the grace period.
    let stopped = async {
        cancel.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    match msg.ty {
        PacketType::SqlBatch => {
            match SqlBatch::decode(&msg.payload) {
                Ok(b) => {
                    out.headers = b.headers.clone();
                    tokio::select! {
                        _ = handler.batch(session, b, out) => {}
                        _ = stopped => warn!("batch handler ignored attention; dropped"),
                    }
                }
                Err(e) => out.error(
                    8009,
                    16,
                    1,
                    format!(
                        "The incoming tabular data stream (TDS) protocol stream is incorrect: {e}"
                    ),
                ),
            }
            Ok(DoneKind::Done)
        }
        PacketType::Rpc => {
            match RpcMessage::decode(&msg.payload) {
                Ok(m) => {
                    out.headers = m.headers.clone();
                    tokio::select! {
                        _ = async {
                            for req in m.requests {
                                if out.is_cancelled() {
                                    break;
                                }
                                handler.rpc(session, req, out).await;
                            }
                        } => {}
                        _ = stopped => warn!("rpc handler ignored attention; dropped"),
                    }
                }
                Err(e) => out.error(8009, 16, 1, format!("The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect: {e}")),
            }
            Ok(DoneKind::DoneProc)
        }
        PacketType::TransactionManager => {
            match TmMessage::decode(&msg.payload) {
                Ok(TmMessage {
                    request: TmRequest::GetDtcAddress,
                    ..
                }) => {
                    // No DTC: an empty address, as a one-row varbinary result.
                    out.columns(vec![Column::new("", SqlType::VarBinary(Some(256)))]);
                    let _ = out.row(&[SqlValue::VarBinary(Vec::new())]);
                    out.done(Some(1));
                }
                Ok(m) => {
                    out.headers = m.headers.clone();
                    handler.tm(session, m.request, out).await
                }
                Err(e) => out.error(
                    8009,
                    16,
                    1,
                    format!("Invalid transaction manager request: {e}"),
                ),
            }
            Ok(DoneKind::Done)
        }
        other => Err(invalid(format!(
            "unexpected packet type {other:?} after login"
        ))),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: R,
    tx: mpsc::Sender<io::Result<PacketMessage>>,
    current: Arc<Mutex<Option<CancelToken>>>,
    max: usize,
) {
    read_packets(rd, tx, current.clone(), max).await;
    // The client is gone (or broke the protocol): stop whatever runs for it.
    if let Some(t) = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        t.cancel();
    }
}

async fn read_packets<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: mpsc::Sender<io::Result<PacketMessage>>,
    current: Arc<Mutex<Option<CancelToken>>>,
    max: usize,
) {
    let mut re = Reassembler::new(max);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        loop {
            match re.next_message() {
                Ok(Some(m)) => {
                    if m.ty == PacketType::Attention {
                        if let Some(t) = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
                        {
                            t.cancel();
                        }
                    }
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(invalid(e.to_string()))).await;
                    return;
                }
            }
        }
        match rd.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => re.push(&buf[..n]),
            // Clients rarely send TLS close_notify; a plain close is normal.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Reassembler;

    fn state(packet_size: usize) -> ConnState {
        ConnState {
            spid: 60,
            packet_size,
            tds_version: version::V7_4,
            server_name: "srv".into(),
        }
    }

    fn messages(wire: &[u8]) -> Vec<PacketMessage> {
        let mut r = Reassembler::new(1 << 24);
        r.push(wire);
        std::iter::from_fn(|| r.next_message().unwrap()).collect()
    }

    /// (token, status) of the DONE-family tokens in a token stream of known shape.
    fn dones(p: &[u8]) -> Vec<(u8, u16)> {
        p.windows(13)
            .filter(|w| matches!(w[0], 0xFD..=0xFF) && w[3] == 0xC1 || w[0] == 0xFE && w[3] == 0xE0)
            .map(|w| (w[0], u16::from_le_bytes([w[1], w[2]])))
            .collect()
    }

    #[tokio::test]
    async fn more_bits_error_bits_and_splitting() {
        let mut wire: Vec<u8> = Vec::new();
        {
            let w: &mut Writer<'_> = &mut wire;
            let s = state(512);
            let mut out = ResponseWriter::new(w, &s, CancelToken::new());
            out.columns(vec![Column::new("a", SqlType::NVarChar(None))]);
            for _ in 0..10 {
                out.row(&[SqlValue::NVarChar("x".repeat(300))]).unwrap();
            }
            out.flush().await.unwrap();
            out.done(Some(10));
            out.error(50000, 16, 1, "bad");
            out.done(None);
            out.set_in_transaction(true);
            out.done(Some(1));
            out.finish(DoneKind::Done).await.unwrap();
        }
        let msgs = messages(&wire);
        assert_eq!(msgs.len(), 1);
        let d = dones(&msgs[0].payload);
        assert_eq!(
            d,
            vec![
                (0xFD, DoneStatus::MORE | DoneStatus::COUNT),
                (0xFD, DoneStatus::MORE | DoneStatus::ERROR),
                (0xFD, DoneStatus::COUNT | DoneStatus::INXACT),
            ]
        );
        // every packet within the negotiated size, the SPID in each header
        let mut pos = 0;
        let mut n = 0;
        while pos < wire.len() {
            let h = PacketHeader::decode(&wire[pos..]).unwrap();
            assert!(h.length as usize <= 512 && h.spid == 60);
            assert_eq!(h.packet_id, (n + 1) as u8);
            pos += h.length as usize;
            n += 1;
        }
        assert!(n > 10);
    }

    #[tokio::test]
    async fn missing_done_is_added_and_cancel_acks() {
        let mut wire: Vec<u8> = Vec::new();
        {
            let w: &mut Writer<'_> = &mut wire;
            let s = state(4096);
            let mut out = ResponseWriter::new(w, &s, CancelToken::new());
            out.return_status(0);
            out.finish(DoneKind::DoneProc).await.unwrap();
        }
        let m = messages(&wire);
        assert_eq!(
            m[0].payload,
            [0x79, 0, 0, 0, 0, 0xFE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );

        let mut wire: Vec<u8> = Vec::new();
        {
            let w: &mut Writer<'_> = &mut wire;
            let s = state(4096);
            let cancel = CancelToken::new();
            let mut out = ResponseWriter::new(w, &s, cancel.clone());
            out.columns(vec![Column::new("a", SqlType::Int)]);
            cancel.cancel();
            assert!(out.flush().await.is_err());
            out.finish_cancelled().await.unwrap();
        }
        let m = messages(&wire);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].payload, [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(m[1].payload, [0xFD, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn version_negotiation() {
        assert_eq!(negotiate_version(0x7400_0004), version::V7_4);
        assert_eq!(negotiate_version(0x7500_0000), version::V7_4);
        assert_eq!(negotiate_version(version::V8_0), version::V7_4);
        assert_eq!(negotiate_version(0x730B_0003), version::V7_3B);
        assert_eq!(negotiate_version(0x7100_0001), version::V7_1);
    }

    #[tokio::test]
    async fn cancel_token() {
        let t = CancelToken::new();
        let t2 = t.clone();
        let h = tokio::spawn(async move { t2.cancelled().await });
        tokio::task::yield_now().await;
        assert!(!t.is_cancelled());
        t.cancel();
        h.await.unwrap();
        assert!(t.is_cancelled());
        t.cancelled().await; // already cancelled: returns at once
    }
}
