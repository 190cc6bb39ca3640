//! milink's instance engine: user databases on SQLite (WAL mode) with a physical, LSN-ordered transaction log.
//!
//! Data flow of a commit: [`session::Session::execute`] → [`database::DbConn::commit`] (SQLite commit, frames
//! captured from the WAL by [`wal::WalCapture`]) → [`log::Log::append`] (group commit, one fsync per batch) →
//! with a synchronous secondary, [`replica_gate::ReplicaGate::wait`] for its ack → snapshot published for readers
//! → acknowledgement. Recovery, restore and redo all apply blocks through
//! [`apply::apply_blocks`].

pub mod apply;
pub mod backup;
pub mod collation;
pub mod database;
pub mod error;
pub mod fault;
pub mod fuzz;
pub mod instance;
pub mod log;
pub mod replica_gate;
pub mod session;
pub mod snapshot;
pub mod timeline;
pub mod wal;

pub use database::{Database, DbOptions, DbState, RecoveryModel};
pub use error::{Result, SqlError};
pub use instance::{Instance, InstanceConfig};
pub use session::{Collect, Outcome, RowSink, Session};

/// LSNs appear in SQL Server's views as numeric(25,0); ours are block numbers scaled the same way, so a
/// DBA sees familiar magnitudes and ordering is preserved.
pub fn lsn_numeric(lsn: u64) -> String {
    format!("{}", lsn as u128 * 100_000)
}
