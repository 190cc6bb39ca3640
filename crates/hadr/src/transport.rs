//! The database mirroring transport: one TCP listener per started endpoint, TLS 1.3 with mutual
//! certificate authentication against the trust store, framed + checksummed messages, and a
//! protocol version handshake.
//!
//! Connection setup, in order:
//! 1. plaintext preamble (client → server): magic, the client's ENCRYPTION / ALGORITHM settings and
//!    the name it claims (its FQDN). The server answers OK or a refusal with number and message, so
//!    configuration mismatches get a precise error instead of a TLS failure.
//! 2. TLS 1.3, AES-GCM suites only, both sides presenting their endpoint certificate. Each side's
//!    verifier accepts only a certificate imported for the peer's claimed name, or one issued by an
//!    issuer registered for that name and naming the peer (see `trust::PeerTrust::verify`).
//! 3. Hello / HelloAck frames inside TLS: supported protocol versions, highest common one wins.
//!
//! Every refusal is logged and kept in a [`ConnectErrorLog`] (number, description, timestamp) for
//! the replica-state views' last_connect_error_* columns.

use chrono::NaiveDateTime;
use pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsStream;
use trust::{
    now_utc, CertInfo, LocalIdentity, PeerAccepted, PeerRefusal, PeerTrust, TrustError, TrustStore,
};

/// Protocol versions this build speaks (Hello lists them; the highest common one is used).
pub const PROTOCOL_VERSIONS: &[u16] = &[1];
/// Version of the frame layout itself (header byte 2).
pub const FRAME_FORMAT: u8 = 1;
pub const FRAME_HEADER_LEN: usize = 16;
/// Largest payload accepted; bigger frames are refused before allocating.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
const FRAME_MAGIC: [u8; 2] = *b"ML";
const PREAMBLE_MAGIC: [u8; 4] = *b"MLNK";
const PREAMBLE_VERSION: u8 = 1;
const MAX_NAME: usize = 255;
const MAX_REPLY_MSG: usize = 4096;
/// Inbound connections allowed to be mid-handshake at once per endpoint.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// Message numbers of the transport.
pub mod codes {
    /// The remote endpoint cannot be reached (refused, stopped, no route).
    pub const UNREACHABLE: i32 = 1418;
    /// Transport / handshake failure that is not about certificates.
    pub const TRANSPORT: i32 = 9642;
    /// SQL Server's certificate is not (correctly) imported on the managed instance.
    pub const SQL_CERT_NOT_ON_MI: i32 = 41973;
    /// The managed instance's certificate is not (correctly) imported on SQL Server.
    pub const MI_CERT_NOT_ON_SQL: i32 = 41974;
}

/// Which product this side plays; it decides between 41973 and 41974.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    SqlServer,
    ManagedInstance,
}

/// ENCRYPTION = DISABLED | SUPPORTED | REQUIRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Disabled,
    Supported,
    Required,
}

/// ALGORITHM AES | RC4 | AES RC4 | RC4 AES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes,
    Rc4,
    AesRc4,
    Rc4Aes,
}

impl Encryption {
    fn code(self) -> u8 {
        match self {
            Encryption::Disabled => 0,
            Encryption::Supported => 1,
            Encryption::Required => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Encryption::Disabled,
            1 => Encryption::Supported,
            2 => Encryption::Required,
            _ => return None,
        })
    }
    pub fn as_sql(self) -> &'static str {
        match self {
            Encryption::Disabled => "DISABLED",
            Encryption::Supported => "SUPPORTED",
            Encryption::Required => "REQUIRED",
        }
    }
}

impl Algorithm {
    fn code(self) -> u8 {
        match self {
            Algorithm::Aes => 1,
            Algorithm::Rc4 => 2,
            Algorithm::AesRc4 => 3,
            Algorithm::Rc4Aes => 4,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Algorithm::Aes,
            2 => Algorithm::Rc4,
            3 => Algorithm::AesRc4,
            4 => Algorithm::Rc4Aes,
            _ => return None,
        })
    }
    fn has_aes(self) -> bool {
        self != Algorithm::Rc4
    }
    pub fn as_sql(self) -> &'static str {
        match self {
            Algorithm::Aes => "AES",
            Algorithm::Rc4 => "RC4",
            Algorithm::AesRc4 => "AES RC4",
            Algorithm::Rc4Aes => "RC4 AES",
        }
    }
}

/// A refusal or failure: number, description, time. Also what [`ConnectErrorLog`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub number: i32,
    pub message: String,
    pub timestamp: NaiveDateTime,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Msg {}: {}", self.number, self.message)
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    pub fn new(number: i32, message: impl Into<String>) -> Self {
        ConnectError {
            number,
            message: message.into(),
            timestamp: now_utc(),
        }
    }
}

/// The last connection error of an endpoint (last_connect_error_number/_description/_timestamp).
#[derive(Debug, Clone, Default)]
pub struct ConnectErrorLog(Arc<Mutex<Option<ConnectError>>>);

impl ConnectErrorLog {
    pub fn last(&self) -> Option<ConnectError> {
        self.0.lock().map(|g| g.clone()).unwrap_or(None)
    }

    pub fn clear(&self) {
        if let Ok(mut g) = self.0.lock() {
            *g = None;
        }
    }

    fn record(&self, e: &ConnectError) {
        tracing::warn!(
            number = e.number,
            "mirroring connection refused: {}",
            e.message
        );
        if let Ok(mut g) = self.0.lock() {
            *g = Some(e.clone());
        }
    }
}

/// Where an endpoint gets its own identity and its judgement of peers. Called per connection, so
/// certificate imports and ALTERs take effect on the next connection.
pub trait TrustSource: Send + Sync {
    fn local_identity(&self) -> Result<LocalIdentity, TrustError>;
    fn peer_trust(&self, peer_name: &str) -> Result<PeerTrust, TrustError>;
    /// The clock used for validity checks (injectable for tests of expiry and rotation).
    fn now(&self) -> NaiveDateTime {
        now_utc()
    }
}

/// Which certificate an endpoint presents.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// AUTHENTICATION = CERTIFICATE name (private key under the master key).
    Certificate(String),
    /// The managed instance's CA-issued endpoint certificate for this FQDN (newest valid one).
    InstanceEndpoint { fqdn: String },
}

/// A [`TrustSource`] over the instance's master.db (a short-lived connection per handshake).
pub struct StoreTrust {
    pub db_path: PathBuf,
    pub store: Arc<TrustStore>,
    pub identity: IdentitySource,
}

impl StoreTrust {
    fn conn(&self) -> Result<rusqlite::Connection, TrustError> {
        let c = rusqlite::Connection::open(&self.db_path)?;
        c.busy_timeout(Duration::from_secs(5))?;
        Ok(c)
    }
}

impl TrustSource for StoreTrust {
    fn local_identity(&self) -> Result<LocalIdentity, TrustError> {
        let c = self.conn()?;
        match &self.identity {
            IdentitySource::Certificate(n) => self.store.local_identity(&c, n, self.now()),
            IdentitySource::InstanceEndpoint { fqdn } => {
                self.store.instance_endpoint_identity(&c, fqdn, self.now())
            }
        }
    }

    fn peer_trust(&self, peer_name: &str) -> Result<PeerTrust, TrustError> {
        self.store.peer_trust(&self.conn()?, peer_name)
    }
}

/// An endpoint's settings (CREATE/ALTER ENDPOINT … FOR DATABASE_MIRRORING plus our identity).
#[derive(Clone)]
pub struct EndpointSettings {
    /// The name this instance claims towards peers (its FQDN); peers bind certificates to it.
    pub local_name: String,
    pub role: Role,
    pub encryption: Encryption,
    pub algorithm: Algorithm,
    pub protocol_versions: Vec<u16>,
    pub trust: Arc<dyn TrustSource>,
    pub handshake_timeout: Duration,
}

impl EndpointSettings {
    pub fn new(local_name: impl Into<String>, role: Role, trust: Arc<dyn TrustSource>) -> Self {
        EndpointSettings {
            local_name: local_name.into(),
            role,
            encryption: Encryption::Required,
            algorithm: Algorithm::Aes,
            protocol_versions: PROTOCOL_VERSIONS.to_vec(),
            trust,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

// ------------------------------------------------------------------------------------ framing

/// Message kinds. Unknown kinds are passed through so a newer peer's additions reach the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Hello,
    HelloAck,
    Refuse,
    Data,
    Ping,
    Pong,
    Close,
    Other(u8),
}

impl MessageKind {
    pub fn code(self) -> u8 {
        match self {
            MessageKind::Hello => 1,
            MessageKind::HelloAck => 2,
            MessageKind::Refuse => 3,
            MessageKind::Data => 0x10,
            MessageKind::Ping => 0x11,
            MessageKind::Pong => 0x12,
            MessageKind::Close => 0x13,
            MessageKind::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => MessageKind::Hello,
            2 => MessageKind::HelloAck,
            3 => MessageKind::Refuse,
            0x10 => MessageKind::Data,
            0x11 => MessageKind::Ping,
            0x12 => MessageKind::Pong,
            0x13 => MessageKind::Close,
            o => MessageKind::Other(o),
        }
    }
}

/// Payload is zstd-compressed.
pub const FLAG_ZSTD: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub flags: u16,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn new(kind: MessageKind, payload: Vec<u8>) -> Self {
        Message {
            kind,
            flags: 0,
            payload,
        }
    }

    /// A message whose payload is zstd-compressed (level 1-3 is the right range for log blocks).
    pub fn compressed(kind: MessageKind, payload: &[u8], level: i32) -> Result<Self, ConnectError> {
        let c = zstd::bulk::compress(payload, level)
            .map_err(|e| ConnectError::new(codes::TRANSPORT, format!("compression failed: {e}")))?;
        Ok(Message {
            kind,
            flags: FLAG_ZSTD,
            payload: c,
        })
    }

    /// The payload, decompressed when flagged (bounded by MAX_PAYLOAD).
    pub fn plain_payload(&self) -> Result<Cow<'_, [u8]>, ConnectError> {
        if self.flags & FLAG_ZSTD == 0 {
            return Ok(Cow::Borrowed(&self.payload));
        }
        zstd::bulk::decompress(&self.payload, MAX_PAYLOAD)
            .map(Cow::Owned)
            .map_err(|e| {
                ConnectError::new(codes::TRANSPORT, format!("corrupt compressed payload: {e}"))
            })
    }
}

/// Frame layout (16-byte header, big-endian):
/// magic "ML" | format u8 | kind u8 | flags u16 | reserved u16 | length u32 | crc32 u32
/// The CRC32 covers header bytes 0..12 and the payload.
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + msg.payload.len());
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(FRAME_FORMAT);
    out.push(msg.kind.code());
    out.extend_from_slice(&msg.flags.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(msg.payload.len() as u32).to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..12]);
    h.update(&msg.payload);
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out.extend_from_slice(&msg.payload);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: MessageKind,
    pub flags: u16,
    pub len: usize,
    pub crc: u32,
}

fn frame_err(m: impl Into<String>) -> ConnectError {
    ConnectError::new(codes::TRANSPORT, m)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn decode_header(h: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, ConnectError> {
    if h[0..2] != FRAME_MAGIC {
        return Err(frame_err(
            "bad frame magic: the peer is not speaking the mirroring protocol",
        ));
    }
    if h[2] != FRAME_FORMAT {
        return Err(frame_err(format!("unsupported frame format {}", h[2])));
    }
    let len = be32(h, 8) as usize;
    if len > MAX_PAYLOAD {
        return Err(frame_err(format!(
            "frame of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit"
        )));
    }
    Ok(FrameHeader {
        kind: MessageKind::from_code(h[3]),
        flags: be16(h, 4),
        len,
        crc: be32(h, 12),
    })
}

fn check_crc(
    h: &[u8; FRAME_HEADER_LEN],
    hdr: &FrameHeader,
    payload: &[u8],
) -> Result<(), ConnectError> {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[..12]);
    c.update(payload);
    if c.finalize() != hdr.crc {
        return Err(frame_err("frame checksum mismatch"));
    }
    Ok(())
}

/// Decodes one frame from the front of `buf`: Ok(None) when more bytes are needed.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Message, usize)>, ConnectError> {
    let Some(hb) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(hb);
    let hdr = decode_header(&h)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + hdr.len) else {
        return Ok(None);
    };
    check_crc(&h, &hdr, payload)?;
    Ok(Some((
        Message {
            kind: hdr.kind,
            flags: hdr.flags,
            payload: payload.to_vec(),
        },
        FRAME_HEADER_LEN + hdr.len,
    )))
}

async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<Result<Message, ConnectError>> {
    let mut h = [0u8; FRAME_HEADER_LEN];
    s.read_exact(&mut h).await?;
    let hdr = match decode_header(&h) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    let mut payload = vec![0u8; hdr.len];
    s.read_exact(&mut payload).await?;
    if let Err(e) = check_crc(&h, &hdr, &payload) {
        return Ok(Err(e));
    }
    Ok(Ok(Message {
        kind: hdr.kind,
        flags: hdr.flags,
        payload,
    }))
}

/// Hello payload: count u8, versions u16 each, name_len u8, name (UTF-8).
pub fn encode_hello(versions: &[u16], name: &str) -> Vec<u8> {
    let vs = &versions[..versions.len().min(255)];
    let name = truncate_utf8(name, MAX_NAME);
    let mut out = vec![vs.len() as u8];
    for v in vs {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out
}

pub fn decode_hello(b: &[u8]) -> Result<(Vec<u16>, String), ConnectError> {
    let bad = || frame_err("malformed Hello");
    let n = *b.first().ok_or_else(bad)? as usize;
    let vend = 1 + 2 * n;
    let vb = b.get(1..vend).ok_or_else(bad)?;
    let versions = vb
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let nl = *b.get(vend).ok_or_else(bad)? as usize;
    let name = b.get(vend + 1..vend + 1 + nl).ok_or_else(bad)?;
    if b.len() != vend + 1 + nl {
        return Err(bad());
    }
    let name = std::str::from_utf8(name).map_err(|_| bad())?.to_string();
    Ok((versions, name))
}

pub fn decode_hello_ack(b: &[u8]) -> Result<u16, ConnectError> {
    match b {
        [a, c] => Ok(u16::from_be_bytes([*a, *c])),
        _ => Err(frame_err("malformed HelloAck")),
    }
}

/// Refuse payload: number i32, message_len u16, message (UTF-8, lossy).
pub fn encode_refuse(number: i32, message: &str) -> Vec<u8> {
    let m = truncate_utf8(message, MAX_REPLY_MSG);
    let mut out = number.to_be_bytes().to_vec();
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    out.extend_from_slice(m.as_bytes());
    out
}

pub fn decode_refuse(b: &[u8]) -> Result<(i32, String), ConnectError> {
    let bad = || frame_err("malformed Refuse");
    let num = b.get(0..4).ok_or_else(bad)?;
    let number = i32::from_be_bytes([num[0], num[1], num[2], num[3]]);
    let l = b.get(4..6).ok_or_else(bad)?;
    let l = u16::from_be_bytes([l[0], l[1]]) as usize;
    let m = b.get(6..6 + l).ok_or_else(bad)?;
    Ok((number, String::from_utf8_lossy(m).into_owned()))
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Highest version in both lists.
pub fn choose_version(ours: &[u16], theirs: &[u16]) -> Option<u16> {
    ours.iter().filter(|v| theirs.contains(v)).max().copied()
}

// ------------------------------------------------------------------------------------ preamble

/// The plaintext preamble a connecting endpoint sends before TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preamble {
    pub encryption: Encryption,
    pub algorithm: Algorithm,
    pub claimed_name: String,
}

/// magic "MLNK" | version u8 | encryption u8 | algorithm u8 | name_len u8 | name
pub const PREAMBLE_FIXED: usize = 8;

impl Preamble {
    pub fn encode(&self) -> Vec<u8> {
        let name = truncate_utf8(&self.claimed_name, MAX_NAME);
        let mut out = PREAMBLE_MAGIC.to_vec();
        out.extend_from_slice(&[
            PREAMBLE_VERSION,
            self.encryption.code(),
            self.algorithm.code(),
            name.len() as u8,
        ]);
        out.extend_from_slice(name.as_bytes());
        out
    }

    /// Validates the fixed part; returns the name length still to read.
    pub fn decode_fixed(
        b: &[u8; PREAMBLE_FIXED],
    ) -> Result<(Encryption, Algorithm, usize), String> {
        if b[0..4] != PREAMBLE_MAGIC {
            return Err(format!(
                "it did not start the database mirroring handshake (first bytes 0x{}): a plaintext or non-mirroring client",
                trust::crypto::hex_upper(&b[..])
            ));
        }
        if b[4] != PREAMBLE_VERSION {
            return Err(format!("unsupported preamble version {}", b[4]));
        }
        let enc = Encryption::from_code(b[5])
            .ok_or_else(|| format!("unknown encryption setting {}", b[5]))?;
        let alg = Algorithm::from_code(b[6])
            .ok_or_else(|| format!("unknown algorithm setting {}", b[6]))?;
        let nl = b[7] as usize;
        if nl == 0 {
            return Err("the connecting endpoint did not say who it is (empty name)".into());
        }
        Ok((enc, alg, nl))
    }

    /// Whole-buffer decode (used by the fuzz target and tests).
    pub fn decode(b: &[u8]) -> Result<Preamble, String> {
        let fixed: &[u8; PREAMBLE_FIXED] = b
            .get(..PREAMBLE_FIXED)
            .and_then(|s| s.try_into().ok())
            .ok_or("short preamble")?;
        let (encryption, algorithm, nl) = Self::decode_fixed(fixed)?;
        let name = b
            .get(PREAMBLE_FIXED..PREAMBLE_FIXED + nl)
            .ok_or("short preamble name")?;
        let claimed_name = std::str::from_utf8(name)
            .map_err(|_| "name is not UTF-8")?
            .to_string();
        Ok(Preamble {
            encryption,
            algorithm,
            claimed_name,
        })
    }
}

/// The server's answer to the preamble: OK, or refusal with number and message.
/// magic "MLNK" | status u8 (0 ok, 1 refused) | number i32 | msg_len u16 | msg
pub fn encode_preamble_reply(refusal: Option<(i32, &str)>) -> Vec<u8> {
    let mut out = PREAMBLE_MAGIC.to_vec();
    match refusal {
        None => {
            out.push(0);
            out.extend_from_slice(&0i32.to_be_bytes());
            out.extend_from_slice(&0u16.to_be_bytes());
        }
        Some((n, m)) => {
            let m = truncate_utf8(m, MAX_REPLY_MSG);
            out.push(1);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&(m.len() as u16).to_be_bytes());
            out.extend_from_slice(m.as_bytes());
        }
    }
    out
}

pub const PREAMBLE_REPLY_FIXED: usize = 11;

/// Returns (status, number, message length still to read).
pub fn decode_preamble_reply_fixed(
    b: &[u8; PREAMBLE_REPLY_FIXED],
) -> Result<(u8, i32, usize), String> {
    if b[0..4] != PREAMBLE_MAGIC {
        return Err(
            "the remote endpoint did not answer with the database mirroring handshake".into(),
        );
    }
    let status = b[4];
    if status > 1 {
        return Err(format!("unknown handshake status {status}"));
    }
    let n = i32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    let l = u16::from_be_bytes([b[9], b[10]]) as usize;
    if l > MAX_REPLY_MSG {
        return Err("handshake refusal message too long".into());
    }
    Ok((status, n, l))
}

// ------------------------------------------------------------------------------------ verifiers

type Outcome =
    Arc<Mutex<Option<Result<(PeerAccepted, CertInfo), (PeerRefusal, Option<CertInfo>)>>>>;

/// Judges the peer's certificate with [`PeerTrust::verify`]; the outcome is kept for messages.
#[derive(Debug)]
struct PeerVerifier {
    trust: PeerTrust,
    now: NaiveDateTime,
    outcome: Outcome,
    provider: Arc<CryptoProvider>,
}

impl PeerVerifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let r = self.trust.verify(end_entity.as_ref(), self.now);
        let err = match &r {
            Ok(_) => None,
            Err((PeerRefusal::NotImported, _)) => Some(CertificateError::UnknownIssuer),
            Err((PeerRefusal::WrongCertificate { .. }, _))
            | Err((PeerRefusal::NameMismatch, _)) => Some(CertificateError::NotValidForName),
            Err((PeerRefusal::Expired { .. }, _)) => Some(CertificateError::Expired),
            Err((PeerRefusal::NotYetValid { .. }, _)) => Some(CertificateError::NotValidYet),
            Err((PeerRefusal::UntrustedIssuer { .. }, _)) => {
                Some(CertificateError::ApplicationVerificationFailure)
            }
            Err((PeerRefusal::Malformed(_), _)) => Some(CertificateError::BadEncoding),
        };
        if let Ok(mut g) = self.outcome.lock() {
            *g = Some(r.map(|a| {
                let info = trust::parse_cert(end_entity.as_ref()).ok();
                (a, info.unwrap_or_else(empty_info))
            }));
        }
        match err {
            None => Ok(()),
            Some(e) => Err(rustls::Error::InvalidCertificate(e)),
        }
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

fn empty_info() -> CertInfo {
    CertInfo {
        subject: String::new(),
        issuer_name: String::new(),
        cert_serial_number: String::new(),
        thumbprint: Vec::new(),
        start_date: NaiveDateTime::default(),
        expiry_date: NaiveDateTime::default(),
        key_length: 0,
        is_ca: false,
        self_issued: false,
        names: Vec::new(),
    }
}

/// TLS 1.2 is never negotiated (protocol versions are TLS 1.3 only), so its signatures are refused.
fn refuse_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _i: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// ring provider limited to the TLS 1.3 AES-GCM suites (ALGORITHM AES; RC4 does not exist in TLS 1.3).
pub fn aes_gcm_provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ];
    Arc::new(p)
}

fn key_der(id: &LocalIdentity) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_pkcs8.to_vec()))
}

// ------------------------------------------------------------------------------------ messages

/// 41973 or 41974: which product lacks which product's certificate.
fn cert_number(role: Role, local_lacks_peer_cert: bool) -> i32 {
    match (role, local_lacks_peer_cert) {
        (Role::SqlServer, true) | (Role::ManagedInstance, false) => codes::MI_CERT_NOT_ON_SQL,
        (Role::SqlServer, false) | (Role::ManagedInstance, true) => codes::SQL_CERT_NOT_ON_MI,
    }
}

fn describe(info: &CertInfo) -> String {
    format!(
        "subject '{}', thumbprint {}",
        info.subject,
        info.thumbprint_hex()
    )
}

/// This side refused the peer's certificate.
fn local_refusal(
    s: &EndpointSettings,
    peer: &str,
    r: &PeerRefusal,
    info: Option<&CertInfo>,
) -> ConnectError {
    let presented = info
        .map(describe)
        .unwrap_or_else(|| "an unreadable certificate".into());
    let me = &s.local_name;
    let detail = match r {
        PeerRefusal::NotImported => format!(
            "'{me}' has no certificate imported for '{peer}' and no issuer registered for that name. '{peer}' presented {presented}. Import it on '{me}' with CREATE CERTIFICATE [{peer}] FROM BINARY = <CERTENCODED of {peer}'s endpoint certificate>, or register its issuer with sp_certificate_add_issuer."
        ),
        PeerRefusal::WrongCertificate { expected } => format!(
            "'{peer}' presented {presented}, which is not the certificate '{me}' holds for it ({}). Re-import '{peer}''s current endpoint certificate on '{me}'.",
            expected.join("; ")
        ),
        PeerRefusal::Expired { expiry } => format!(
            "'{peer}' presented {presented}, which expired on {expiry}. '{peer}' must use a new certificate, imported on '{me}'."
        ),
        PeerRefusal::NotYetValid { start } => format!("'{peer}' presented {presented}, which is not valid until {start}."),
        PeerRefusal::NameMismatch => format!(
            "'{peer}' presented {presented}, signed by a trusted issuer but issued for {:?}, not for '{peer}': a certificate bound to one peer cannot act as another.",
            info.map(|i| i.names.clone()).unwrap_or_default()
        ),
        PeerRefusal::UntrustedIssuer { issuers } => format!(
            "'{peer}' presented {presented}, which was not issued by an issuer '{me}' trusts for that name ({}).",
            issuers.join("; ")
        ),
        PeerRefusal::Malformed(m) => format!("'{peer}' presented a malformed certificate: {m}"),
    };
    ConnectError::new(
        cert_number(s.role, true),
        format!("Connection with '{peer}' refused by '{me}': {detail}"),
    )
}

/// The peer refused this side's certificate (known from the TLS alert it sent).
fn remote_refusal(
    s: &EndpointSettings,
    peer: &str,
    alert: AlertDescription,
    mine: &LocalIdentity,
) -> ConnectError {
    let me = &s.local_name;
    let cert = format!("'{}' ({})", mine.cert_name, describe(&mine.info));
    let why = match alert {
        AlertDescription::UnknownCA => format!(
            "'{peer}' has no certificate imported for '{me}'. Import this instance's certificate {cert} on '{peer}' (CERTENCODED(CERT_ID(N'{}'))), under the name '{me}'.",
            mine.cert_name
        ),
        AlertDescription::BadCertificate => format!(
            "'{peer}' holds a different certificate for '{me}' than the one presented, {cert}, or holds it under another name. Re-import {cert} on '{peer}' under the name '{me}'."
        ),
        AlertDescription::CertificateExpired => format!("'{peer}' considers this instance's certificate {cert} expired or not yet valid (valid {} to {}).", mine.info.start_date, mine.info.expiry_date),
        AlertDescription::AccessDenied => format!("'{peer}' does not trust the issuer of this instance's certificate {cert} for the name '{me}'."),
        AlertDescription::CertificateRequired => format!("'{peer}' requires a certificate and none was presented."),
        other => format!("'{peer}' refused the TLS handshake (alert {other:?}) for certificate {cert}."),
    };
    ConnectError::new(
        cert_number(s.role, false),
        format!("Connection from '{me}' to '{peer}' refused by '{peer}': {why}"),
    )
}

fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

// ------------------------------------------------------------------------------------ connection

/// An authenticated, encrypted mirroring connection.
pub struct MirrorConnection {
    stream: TlsStream<TcpStream>,
    /// Negotiated protocol version.
    pub version: u16,
    pub peer_name: String,
    pub peer_certificate: CertInfo,
    pub accepted_by: PeerAccepted,
    pub peer_addr: Option<SocketAddr>,
    /// TLS cipher suite in use (always an AES-GCM suite).
    pub cipher_suite: Option<rustls::CipherSuite>,
}

impl std::fmt::Debug for MirrorConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorConnection")
            .field("peer_name", &self.peer_name)
            .field("version", &self.version)
            .field("accepted_by", &self.accepted_by)
            .finish_non_exhaustive()
    }
}

fn io_err(peer: &str, e: std::io::Error) -> ConnectError {
    ConnectError::new(
        codes::TRANSPORT,
        format!("Connection with '{peer}' failed: {e}"),
    )
}

impl MirrorConnection {
    pub async fn send(&mut self, msg: &Message) -> Result<(), ConnectError> {
        if msg.payload.len() > MAX_PAYLOAD {
            return Err(frame_err(format!(
                "payload of {} bytes exceeds the frame limit",
                msg.payload.len()
            )));
        }
        let buf = encode_frame(msg);
        self.stream
            .write_all(&buf)
            .await
            .map_err(|e| io_err(&self.peer_name, e))?;
        self.stream
            .flush()
            .await
            .map_err(|e| io_err(&self.peer_name, e))
    }

    pub async fn recv(&mut self) -> Result<Message, ConnectError> {
        match read_frame(&mut self.stream).await {
            Ok(r) => r,
            Err(e) => Err(io_err(&self.peer_name, e)),
        }
    }

    pub async fn shutdown(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Separate halves so one task can stream log blocks while another reads acknowledgements.
    pub fn into_split(self) -> (MirrorReader, MirrorWriter) {
        let (r, w) = tokio::io::split(self.stream);
        (
            MirrorReader {
                inner: r,
                peer_name: self.peer_name.clone(),
            },
            MirrorWriter {
                inner: w,
                peer_name: self.peer_name,
            },
        )
    }
}

/// Receiving half of a [`MirrorConnection`].
pub struct MirrorReader {
    inner: tokio::io::ReadHalf<TlsStream<TcpStream>>,
    pub peer_name: String,
}

/// Sending half of a [`MirrorConnection`].
pub struct MirrorWriter {
    inner: tokio::io::WriteHalf<TlsStream<TcpStream>>,
    pub peer_name: String,
}

impl MirrorReader {
    pub async fn recv(&mut self) -> Result<Message, ConnectError> {
        match read_frame(&mut self.inner).await {
            Ok(r) => r,
            Err(e) => Err(io_err(&self.peer_name, e)),
        }
    }
}

impl MirrorWriter {
    pub async fn send(&mut self, msg: &Message) -> Result<(), ConnectError> {
        if msg.payload.len() > MAX_PAYLOAD {
            return Err(frame_err(format!(
                "payload of {} bytes exceeds the frame limit",
                msg.payload.len()
            )));
        }
        let buf = encode_frame(msg);
        self.inner
            .write_all(&buf)
            .await
            .map_err(|e| io_err(&self.peer_name, e))?;
        self.inner
            .flush()
            .await
            .map_err(|e| io_err(&self.peer_name, e))
    }
}

async fn read_exact_timeout<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut [u8],
    t: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(t, s.read_exact(buf)).await {
        Err(_) => Err("timed out waiting for the handshake".into()),
        Ok(Err(e)) => Err(format!("connection closed during the handshake ({e})")),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Encryption compatibility, SQL Server's rules: DISABLED against REQUIRED fails; when both
/// encrypt they need a common algorithm, and only AES exists here.
fn negotiate_encryption(server: &EndpointSettings, client: &Preamble) -> Result<(), String> {
    use Encryption::*;
    let (se, ce) = (server.encryption, client.encryption);
    if (se == Disabled && ce == Required) || (se == Required && ce == Disabled) {
        return Err(format!(
            "Connection handshake failed: the endpoint of '{}' has ENCRYPTION = {} and the endpoint of '{}' has ENCRYPTION = {}. Encryption cannot be both required and disabled; set both endpoints to ENCRYPTION = REQUIRED ALGORITHM AES.",
            server.local_name,
            se.as_sql(),
            client.claimed_name,
            ce.as_sql()
        ));
    }
    if se != Disabled
        && ce != Disabled
        && !(server.algorithm.has_aes() && client.algorithm.has_aes())
    {
        return Err(format!(
            "Connection handshake failed: there is no compatible encryption algorithm ('{}' ALGORITHM {}, '{}' ALGORITHM {}); RC4 is not available, use ALGORITHM AES.",
            server.local_name,
            server.algorithm.as_sql(),
            client.claimed_name,
            client.algorithm.as_sql()
        ));
    }
    Ok(())
}

/// A started DATABASE_MIRRORING endpoint: listener plus a queue of authenticated connections.
pub struct Endpoint {
    addr: SocketAddr,
    settings: Arc<RwLock<EndpointSettings>>,
    errors: ConnectErrorLog,
    incoming: mpsc::Receiver<MirrorConnection>,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Binds and starts accepting. Bind failures come back as 1418-style errors.
    pub async fn start(
        listen: SocketAddr,
        settings: EndpointSettings,
        errors: ConnectErrorLog,
    ) -> Result<Endpoint, ConnectError> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            ConnectError::new(
                codes::TRANSPORT,
                format!("The database mirroring endpoint cannot listen on {listen}: {e}. Check that the port is free (LISTENER_PORT)."),
            )
        })?;
        let addr = listener.local_addr().map_err(|e| io_err("listener", e))?;
        let settings = Arc::new(RwLock::new(settings));
        let (tx, rx) = mpsc::channel(16);
        let (s2, e2) = (settings.clone(), errors.clone());
        // Bounds the handshakes in flight, so a flood of idle sockets cannot exhaust memory.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((sock, peer_addr)) = listener.accept().await else {
                    // Transient accept errors (EMFILE…): back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let settings = match s2.read() {
                    Ok(g) => g.clone(),
                    Err(_) => return,
                };
                let (tx, errors) = (tx.clone(), e2.clone());
                tokio::spawn(async move {
                    let r = accept_one(sock, peer_addr, &settings).await;
                    drop(permit);
                    match r {
                        Ok(c) => {
                            let _ = tx.send(c).await;
                        }
                        Err(e) => errors.record(&e),
                    }
                });
            }
        });
        Ok(Endpoint {
            addr,
            settings,
            errors,
            incoming: rx,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn errors(&self) -> &ConnectErrorLog {
        &self.errors
    }

    /// ALTER ENDPOINT: new settings apply to the next connection.
    pub fn reconfigure(&self, settings: EndpointSettings) {
        if let Ok(mut g) = self.settings.write() {
            *g = settings;
        }
    }

    /// The next authenticated inbound connection.
    pub async fn accept(&mut self) -> Option<MirrorConnection> {
        self.incoming.recv().await
    }

    /// STATE = STOPPED: closes the listener (new connections are refused by the OS).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Loaded = (
    Result<LocalIdentity, TrustError>,
    Result<PeerTrust, TrustError>,
    NaiveDateTime,
);

/// Our identity, the trust for `peer` and the clock, read on the blocking pool.
async fn load_trust(trust: &Arc<dyn TrustSource>, peer: &str) -> Loaded {
    let (tr, p) = (trust.clone(), peer.to_string());
    tokio::task::spawn_blocking(move || (tr.local_identity(), tr.peer_trust(&p), tr.now()))
        .await
        .unwrap_or_else(|e| {
            let err = TrustError::internal(format!("trust lookup failed: {e}"));
            (Err(err.clone()), Err(err), now_utc())
        })
}

/// Sends the refusal in the preamble reply (so the connecting side gets the precise message) and closes.
async fn refuse(sock: &mut TcpStream, e: ConnectError) -> Result<MirrorConnection, ConnectError> {
    let _ = sock
        .write_all(&encode_preamble_reply(Some((e.number, &e.message))))
        .await;
    let _ = sock.shutdown().await;
    Err(e)
}

async fn accept_one(
    mut sock: TcpStream,
    peer_addr: SocketAddr,
    s: &EndpointSettings,
) -> Result<MirrorConnection, ConnectError> {
    // Log blocks and acks are small, latency-bound messages: never let Nagle hold them back.
    let _ = sock.set_nodelay(true);
    let t = s.handshake_timeout;
    let refuse_plain = |who: &str, m: String| {
        ConnectError::new(
            codes::TRANSPORT,
            format!("Connection from {who} refused by '{}': {m}", s.local_name),
        )
    };
    let mut fixed = [0u8; PREAMBLE_FIXED];
    let who = format!("{peer_addr}");
    read_exact_timeout(&mut sock, &mut fixed, t)
        .await
        .map_err(|m| refuse_plain(&who, m))?;
    let (encryption, algorithm, nl) = match Preamble::decode_fixed(&fixed) {
        Ok(x) => x,
        Err(m) => {
            let e = refuse_plain(&who, m);
            let _ = sock
                .write_all(&encode_preamble_reply(Some((e.number, &e.message))))
                .await;
            return Err(e);
        }
    };
    let mut name = vec![0u8; nl];
    read_exact_timeout(&mut sock, &mut name, t)
        .await
        .map_err(|m| refuse_plain(&who, m))?;
    let claimed_name = String::from_utf8(name)
        .map_err(|_| refuse_plain(&who, "the claimed name is not UTF-8".into()))?;
    let pre = Preamble {
        encryption,
        algorithm,
        claimed_name: claimed_name.clone(),
    };
    let peer = claimed_name.as_str();
    if let Err(m) = negotiate_encryption(s, &pre) {
        return refuse(&mut sock, ConnectError::new(codes::TRANSPORT, m)).await;
    }
    let (identity, trust, now) = load_trust(&s.trust, peer).await;
    let identity = match identity {
        Ok(i) => i,
        Err(e) => {
            let e = ConnectError::new(
                cert_number(s.role, false),
                format!(
                    "Connection from '{peer}' refused: '{}' cannot present its endpoint certificate: {}",
                    s.local_name, e.message
                ),
            );
            return refuse(&mut sock, e).await;
        }
    };
    let trust = match trust {
        Ok(t) => t,
        Err(e) => {
            return refuse(
                &mut sock,
                ConnectError::new(codes::TRANSPORT, format!("trust store: {}", e.message)),
            )
            .await
        }
    };
    sock.write_all(&encode_preamble_reply(None))
        .await
        .map_err(|e| io_err(peer, e))?;

    let provider = aes_gcm_provider();
    let outcome: Outcome = Arc::default();
    let verifier = Arc::new(PeerVerifier {
        trust,
        now,
        outcome: outcome.clone(),
        provider: provider.clone(),
    });
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .and_then(|b| {
            b.with_client_cert_verifier(verifier).with_single_cert(
                vec![CertificateDer::from(identity.cert_der.clone())],
                key_der(&identity),
            )
        })
        .map_err(|e| {
            ConnectError::new(codes::TRANSPORT, format!("TLS configuration failed: {e}"))
        })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let tls = match tokio::time::timeout(t, acceptor.accept(sock)).await {
        Err(_) => {
            return Err(refuse_plain(
                &format!("'{peer}' ({who})"),
                "timed out during the TLS handshake".into(),
            ))
        }
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let recorded = outcome.lock().ok().and_then(|g| g.clone());
            return Err(match (recorded, rustls_error(&e)) {
                (Some(Err((r, info))), _) => local_refusal(s, peer, &r, info.as_ref()),
                (_, Some(rustls::Error::NoCertificatesPresented)) => ConnectError::new(
                    cert_number(s.role, true),
                    format!(
                        "Connection from '{peer}' refused by '{}': '{peer}' presented no certificate. Its endpoint must use AUTHENTICATION = CERTIFICATE, and '{}' must hold that certificate under the name '{peer}'.",
                        s.local_name, s.local_name
                    ),
                ),
                (_, Some(rustls::Error::InvalidMessage(_))) | (_, Some(rustls::Error::InappropriateHandshakeMessage { .. })) | (_, Some(rustls::Error::InappropriateMessage { .. })) => refuse_plain(
                    &format!("'{peer}' ({who})"),
                    format!("it did not negotiate TLS 1.3 (a plaintext client?): {e}"),
                ),
                (_, Some(rustls::Error::AlertReceived(a))) => remote_refusal(s, peer, *a, &identity),
                _ => refuse_plain(&format!("'{peer}' ({who})"), format!("TLS handshake failed: {e}")),
            });
        }
    };
    let accepted = match outcome.lock().ok().and_then(|g| g.clone()) {
        Some(Ok(a)) => a,
        _ => {
            return Err(refuse_plain(
                peer,
                "the peer's certificate was not verified".into(),
            ))
        }
    };
    let mut conn = MirrorConnection {
        cipher_suite: tls.get_ref().1.negotiated_cipher_suite().map(|c| c.suite()),
        stream: TlsStream::Server(tls),
        version: 0,
        peer_name: claimed_name.clone(),
        peer_certificate: accepted.1,
        accepted_by: accepted.0,
        peer_addr: Some(peer_addr),
    };
    // Version handshake.
    let hello = match tokio::time::timeout(t, conn.recv()).await {
        Err(_) => return Err(refuse_plain(peer, "timed out waiting for Hello".into())),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(m)) => m,
    };
    if hello.kind != MessageKind::Hello {
        return Err(refuse_plain(
            peer,
            format!("expected Hello, got {:?}", hello.kind),
        ));
    }
    let (theirs, hello_name) = decode_hello(&hello.payload)?;
    if !hello_name.eq_ignore_ascii_case(&claimed_name) {
        return Err(refuse_plain(
            peer,
            format!("Hello names '{hello_name}', preamble named '{claimed_name}'"),
        ));
    }
    match choose_version(&s.protocol_versions, &theirs) {
        Some(v) => {
            conn.version = v;
            conn.send(&Message::new(
                MessageKind::HelloAck,
                v.to_be_bytes().to_vec(),
            ))
            .await?;
            Ok(conn)
        }
        None => {
            let e = ConnectError::new(
                codes::TRANSPORT,
                format!(
                    "Connection from '{peer}' refused by '{}': no common protocol version ('{}' speaks {:?}, '{peer}' speaks {theirs:?}).",
                    s.local_name, s.local_name, s.protocol_versions
                ),
            );
            let _ = conn
                .send(&Message::new(
                    MessageKind::Refuse,
                    encode_refuse(e.number, &e.message),
                ))
                .await;
            Err(e)
        }
    }
}

/// Connects to the endpoint of `peer_name` at `addr`. Any failure is recorded in `errors`.
pub async fn connect(
    s: &EndpointSettings,
    errors: &ConnectErrorLog,
    peer_name: &str,
    addr: SocketAddr,
) -> Result<MirrorConnection, ConnectError> {
    let r = connect_inner(s, peer_name, addr).await;
    if let Err(e) = &r {
        errors.record(e);
    }
    r
}

async fn connect_inner(
    s: &EndpointSettings,
    peer: &str,
    addr: SocketAddr,
) -> Result<MirrorConnection, ConnectError> {
    let t = s.handshake_timeout;
    // SQLite reads and key decryption stay off the async workers.
    let (identity, trust, now) = load_trust(&s.trust, peer).await;
    let identity = identity.map_err(|e| {
        ConnectError::new(
            cert_number(s.role, false),
            format!(
                "'{}' cannot connect to '{peer}': its endpoint certificate cannot be used: {}",
                s.local_name, e.message
            ),
        )
    })?;
    let trust = trust
        .map_err(|e| ConnectError::new(codes::TRANSPORT, format!("trust store: {}", e.message)))?;
    let unreachable = |why: String| {
        ConnectError::new(
            codes::UNREACHABLE,
            format!(
                "The server network address \"TCP://{addr}\" can not be reached or does not exist. Check the network address name and that the ports for the local and remote endpoints are operational. ({why})"
            ),
        )
    };
    let mut sock = match tokio::time::timeout(t, TcpStream::connect(addr)).await {
        Err(_) => return Err(unreachable("connect timed out".into())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(unreachable(format!(
                "connection refused: the endpoint of '{peer}' is stopped or not listening"
            )))
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Ok(Ok(x)) => x,
    };
    let _ = sock.set_nodelay(true);
    let pre = Preamble {
        encryption: s.encryption,
        algorithm: s.algorithm,
        claimed_name: s.local_name.clone(),
    };
    sock.write_all(&pre.encode())
        .await
        .map_err(|e| io_err(peer, e))?;
    let hs = |m: String| {
        ConnectError::new(
            codes::TRANSPORT,
            format!("Connection from '{}' to '{peer}' failed: {m}", s.local_name),
        )
    };
    let mut fixed = [0u8; PREAMBLE_REPLY_FIXED];
    read_exact_timeout(&mut sock, &mut fixed, t)
        .await
        .map_err(hs)?;
    let (status, number, ml) = decode_preamble_reply_fixed(&fixed).map_err(hs)?;
    if status != 0 {
        let mut m = vec![0u8; ml];
        read_exact_timeout(&mut sock, &mut m, t).await.map_err(hs)?;
        return Err(ConnectError::new(
            number,
            String::from_utf8_lossy(&m).into_owned(),
        ));
    }

    let provider = aes_gcm_provider();
    let outcome: Outcome = Arc::default();
    let verifier = Arc::new(PeerVerifier {
        trust,
        now,
        outcome: outcome.clone(),
        provider: provider.clone(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .and_then(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(
                    vec![CertificateDer::from(identity.cert_der.clone())],
                    key_der(&identity),
                )
        })
        .map_err(|e| {
            ConnectError::new(codes::TRANSPORT, format!("TLS configuration failed: {e}"))
        })?;
    // Our verifier ignores the SNI name (identity comes from the preamble binding); send a valid one.
    let sni = ServerName::try_from(peer.to_string()).unwrap_or_else(|_| {
        ServerName::try_from("milink-peer.invalid").expect("static name is valid")
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let classify = |e: std::io::Error| {
        let recorded = outcome.lock().ok().and_then(|g| g.clone());
        match (recorded, rustls_error(&e)) {
            (Some(Err((r, info))), _) => local_refusal(s, peer, &r, info.as_ref()),
            (_, Some(rustls::Error::AlertReceived(a))) => remote_refusal(s, peer, *a, &identity),
            _ => hs(format!(
                "TLS failed ({e}); see last_connect_error on '{peer}' for its side of the story"
            )),
        }
    };
    let tls = match tokio::time::timeout(t, connector.connect(sni, sock)).await {
        Err(_) => return Err(hs("timed out during the TLS handshake".into())),
        Ok(Err(e)) => return Err(classify(e)),
        Ok(Ok(x)) => x,
    };
    let accepted = match outcome.lock().ok().and_then(|g| g.clone()) {
        Some(Ok(a)) => a,
        _ => return Err(hs("the peer's certificate was not verified".into())),
    };
    let mut conn = MirrorConnection {
        cipher_suite: tls.get_ref().1.negotiated_cipher_suite().map(|c| c.suite()),
        stream: TlsStream::Client(tls),
        version: 0,
        peer_name: peer.to_string(),
        peer_certificate: accepted.1,
        accepted_by: accepted.0,
        peer_addr: Some(addr),
    };
    // In TLS 1.3 the server judges our certificate after our handshake completes: its verdict
    // (an alert) arrives on the first read, so classify errors from the Hello exchange too.
    let hello = encode_hello(&s.protocol_versions, &s.local_name);
    let buf = encode_frame(&Message::new(MessageKind::Hello, hello));
    if let Err(e) = conn.stream.write_all(&buf).await {
        return Err(classify(e));
    }
    let _ = conn.stream.flush().await;
    let reply = match tokio::time::timeout(t, read_frame(&mut conn.stream)).await {
        Err(_) => return Err(hs("timed out waiting for HelloAck".into())),
        Ok(Err(e)) => return Err(classify(e)),
        Ok(Ok(r)) => r?,
    };
    match reply.kind {
        MessageKind::HelloAck => {
            let v = decode_hello_ack(&reply.payload)?;
            if !s.protocol_versions.contains(&v) {
                return Err(hs(format!(
                    "the peer chose protocol version {v}, which this instance does not speak"
                )));
            }
            conn.version = v;
            Ok(conn)
        }
        MessageKind::Refuse => {
            let (n, m) = decode_refuse(&reply.payload)?;
            Err(ConnectError::new(n, m))
        }
        k => Err(hs(format!("expected HelloAck, got {k:?}"))),
    }
}

/// The managed instance renews its endpoint certificate in the background: every `check_every`
/// it issues the next one when the newest is within `renew_before` of expiry. Handshakes pick the
/// newest valid certificate, and the old one stays valid until its own expiry (overlap), so peers
/// that trust the issuer never see a gap.
pub fn spawn_certificate_renewal(
    db_path: PathBuf,
    store: Arc<TrustStore>,
    fqdn: String,
    check_every: Duration,
    validity: chrono::Duration,
    renew_before: chrono::Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (db, st, f) = (db_path.clone(), store.clone(), fqdn.clone());
            let r = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, TrustError> {
                let c = rusqlite::Connection::open(&db)?;
                c.busy_timeout(Duration::from_secs(5))?;
                st.ensure_instance_ca(&c, &format!("milink managed instance CA ({f})"))?;
                st.rotate_endpoint_certificate(&c, &f, now_utc(), validity, renew_before)
            })
            .await;
            match r {
                Ok(Ok(Some(der))) => tracing::info!(
                    fqdn = %fqdn,
                    thumbprint = %trust::crypto::hex_upper(&trust::crypto::sha1(&der)),
                    "issued the next endpoint certificate"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(fqdn = %fqdn, "endpoint certificate renewal failed: {e}")
                }
                _ => {}
            }
            tokio::time::sleep(check_every).await;
        }
    })
}

/// Fuzz entry points for every decoder of network input. Each must return without panicking
/// for any input; `tests` replays deterministic mutations through them.
pub mod fuzz {
    use super::*;

    pub fn frame(data: &[u8]) {
        let mut rest = data;
        while let Ok(Some((m, used))) = decode_frame(rest) {
            let _ = m.plain_payload();
            rest = &rest[used..];
        }
        if let Some(h) = data.get(..FRAME_HEADER_LEN) {
            let mut a = [0u8; FRAME_HEADER_LEN];
            a.copy_from_slice(h);
            let _ = decode_header(&a);
        }
    }

    pub fn hello(data: &[u8]) {
        let _ = decode_hello(data);
        let _ = decode_hello_ack(data);
        let _ = decode_refuse(data);
    }

    pub fn preamble(data: &[u8]) {
        let _ = Preamble::decode(data);
    }

    pub fn preamble_reply(data: &[u8]) {
        if let Some(f) = data.get(..PREAMBLE_REPLY_FIXED) {
            let mut a = [0u8; PREAMBLE_REPLY_FIXED];
            a.copy_from_slice(f);
            let _ = decode_preamble_reply_fixed(&a);
        }
    }

    /// xorshift64*: deterministic, dependency-free mutation source.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next_u64() % n as u64) as usize
            }
        }
    }

    /// Flips, overwrites, inserts, deletes, truncates and splices bytes of `seed`.
    pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(7) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
                1 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
                }
                2 => {
                    let i = rng.below(v.len() + 1);
                    v.insert(i, rng.next_u64() as u8);
                }
                3 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v.remove(i);
                }
                4 => {
                    let n = rng.below(v.len() + 1);
                    v.truncate(n);
                }
                5 if v.len() >= 4 => {
                    // Overwrite a 4-byte length-like field with an extreme value.
                    let i = rng.below(v.len() - 3);
                    let x: u32 = [0, u32::MAX, 0x7fff_ffff, 0x0400_0001][rng.below(4)];
                    v[i..i + 4].copy_from_slice(&x.to_be_bytes());
                }
                _ => {
                    let extra: Vec<u8> = (0..rng.below(32)).map(|_| rng.next_u64() as u8).collect();
                    v.extend_from_slice(&extra);
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_checksum() {
        let m = Message::new(MessageKind::Data, b"log block".to_vec());
        let mut b = encode_frame(&m);
        let (d, used) = decode_frame(&b).unwrap().unwrap();
        assert_eq!((d, used), (m.clone(), b.len()));
        assert!(decode_frame(&b[..b.len() - 1]).unwrap().is_none());
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(decode_frame(&b).unwrap_err().message.contains("checksum"));
        let unknown = Message::new(MessageKind::Other(0x77), vec![]);
        assert_eq!(
            decode_frame(&encode_frame(&unknown))
                .unwrap()
                .unwrap()
                .0
                .kind,
            MessageKind::Other(0x77)
        );
    }

    #[test]
    fn compression_roundtrip() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 100).to_le_bytes())
            .collect();
        let m = Message::compressed(MessageKind::Data, &data, 1).unwrap();
        assert!(m.payload.len() < data.len() / 10);
        assert_eq!(m.plain_payload().unwrap().as_ref(), &data[..]);
        let mut bad = m.clone();
        bad.payload.truncate(10);
        assert!(bad.plain_payload().is_err());
    }

    #[test]
    fn version_choice() {
        assert_eq!(choose_version(&[1, 2, 3], &[1, 2]), Some(2));
        assert_eq!(choose_version(&[1], &[2, 3]), None);
        let h = encode_hello(&[1, 2], "sql1.domain.com");
        assert_eq!(
            decode_hello(&h).unwrap(),
            (vec![1, 2], "sql1.domain.com".to_string())
        );
        assert!(decode_hello(&h[..h.len() - 1]).is_err());
    }

    #[test]
    fn preamble_roundtrip() {
        let p = Preamble {
            encryption: Encryption::Required,
            algorithm: Algorithm::AesRc4,
            claimed_name: "mi1.database.windows.net".into(),
        };
        assert_eq!(Preamble::decode(&p.encode()).unwrap(), p);
        let r = encode_preamble_reply(Some((9642, "no")));
        let f: [u8; PREAMBLE_REPLY_FIXED] = r[..PREAMBLE_REPLY_FIXED].try_into().unwrap();
        assert_eq!(decode_preamble_reply_fixed(&f).unwrap(), (1, 9642, 2));
    }

    fn replay(seeds: &[Vec<u8>], f: fn(&[u8]), rounds: usize, seed: u64) {
        let mut rng = fuzz::Rng(seed);
        for i in 0..rounds {
            let base = &seeds[i % seeds.len()];
            let m = fuzz::mutate(base, &mut rng);
            f(&m);
        }
    }

    #[test]
    fn fuzz_replay_no_panics() {
        let data = Message::new(MessageKind::Data, b"payload bytes".to_vec());
        let comp = Message::compressed(MessageKind::Data, &[7u8; 4000], 1).unwrap();
        let mut two = encode_frame(&data);
        two.extend(encode_frame(&comp));
        let frames = vec![encode_frame(&data), encode_frame(&comp), two, vec![]];
        replay(&frames, fuzz::frame, 5000, 0x9E37_79B9_7F4A_7C15);
        let hellos = vec![
            encode_hello(&[1, 2, 3], "sql.example"),
            2u16.to_be_bytes().to_vec(),
            encode_refuse(41973, "refused"),
        ];
        replay(&hellos, fuzz::hello, 5000, 42);
        let pre = vec![Preamble {
            encryption: Encryption::Supported,
            algorithm: Algorithm::Aes,
            claimed_name: "x.example".into(),
        }
        .encode()];
        replay(&pre, fuzz::preamble, 3000, 7);
        let replies = vec![
            encode_preamble_reply(None),
            encode_preamble_reply(Some((1418, "m"))),
        ];
        replay(&replies, fuzz::preamble_reply, 3000, 99);
        // Pure random inputs too.
        let mut rng = fuzz::Rng(1234567);
        for _ in 0..2000 {
            let n = rng.below(64);
            let v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            fuzz::frame(&v);
            fuzz::hello(&v);
            fuzz::preamble(&v);
            fuzz::preamble_reply(&v);
        }
    }
}
