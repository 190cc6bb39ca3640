//! TDS 7.x wire protocol, server side: pure codecs (no I/O, fuzzable) plus an async
//! connection driver generic over a [`Handler`]. No SQL lives here.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tds::*;
//!
//! struct Engine;
//! struct Session { db: String }
//!
//! impl Handler for Engine {
//!     type Session = Session;
//!     async fn login(&self, l: &Login7, _c: &ConnInfo) -> Result<LoginOk<Session>, LoginError> {
//!         if l.password != "secret" {
//!             return Err(LoginError::login_failed(&l.username));
//!         }
//!         Ok(LoginOk::new(Session { db: "master".into() }, "master"))
//!     }
//!     async fn batch(&self, _s: &mut Session, b: SqlBatch, out: &mut ResponseWriter<'_>) {
//!         out.columns(vec![Column::new("sql", SqlType::NVarChar(None))]);
//!         out.row(&[SqlValue::NVarChar(b.sql)]).unwrap();
//!         out.done(Some(1));
//!     }
//!     async fn rpc(&self, _s: &mut Session, _r: RpcRequest, out: &mut ResponseWriter<'_>) {
//!         out.error(2812, 16, 62, "Could not find stored procedure.");
//!         out.done_proc(None);
//!     }
//!     async fn tm(&self, _s: &mut Session, _r: TmRequest, out: &mut ResponseWriter<'_>) {
//!         out.done(None);
//!     }
//!     async fn reset(&self, _s: &mut Session, _keep_transaction: bool) {}
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let id = TlsIdentity::load_or_generate("data".as_ref(), &["localhost".into()])?;
//! let config = Arc::new(ServerConfig::new("myhost").with_tls(&id)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1433").await?;
//! serve(listener, Arc::new(Engine), config).await
//! # }
//! ```

pub mod batch;
#[cfg(feature = "chrono")]
mod chrono_conv;
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
    serve, serve_connection, serve_until, CancelToken, ConnInfo, Handler, LoginError, LoginOk,
    ResponseWriter, SendError, ServerConfig,
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
