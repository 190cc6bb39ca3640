//! TDS 7.x wire protocol, server side: pure codecs (no I/O, fuzzable) plus an async
//! connection driver generic over a [`Handler`]. No SQL lives here.

pub mod batch;
pub mod fuzz;
pub mod login7;
pub mod packet;
pub mod prelogin;
pub mod rpc;
pub mod server;
pub mod tls;
pub mod tm;
pub mod token;
pub mod types;
mod wire;

pub use batch::{AllHeaders, SqlBatch};
pub use login7::{FeatureExt, Login7};
pub use packet::{PacketHeader, PacketType};
pub use prelogin::{Encryption, PreLogin};
pub use rpc::{ProcId, RpcParam, RpcRequest, RpcTarget};

pub use server::{
    serve, serve_connection, CancelToken, ConnInfo, Handler, LoginError, LoginOk, ResponseWriter,
    SendError, ServerConfig,
};
pub use tls::TlsIdentity;
pub use tm::{IsolationLevel, TmRequest};
pub use token::{DoneKind, DoneStatus, EnvChange, Message};
pub use types::{
    Collation, Column, Date, DateTime2, DateTimeOffset, Decimal, SqlType, SqlValue, Time,
};

/// Error for any malformed input. Decoders return this instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unexpected end of data")]
    Eof,
    #[error("invalid data: {0}")]
    Invalid(&'static str),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Error for values that cannot be encoded in the requested column type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode value: {0}")]
pub struct EncodeError(pub String);

/// TDS versions as they appear in LOGINACK (big-endian order).
pub mod version {
    pub const V7_1: u32 = 0x7100_0001;
    pub const V7_2: u32 = 0x7209_0002;
    pub const V7_3A: u32 = 0x730A_0003;
    pub const V7_3B: u32 = 0x730B_0003;
    pub const V7_4: u32 = 0x7400_0004;
    pub const V8_0: u32 = 0x0800_0000;
}
