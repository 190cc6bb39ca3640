//! Runs T-SQL batches against the engine: variables and control flow, DML/DDL through the tsql translator, system
//! views, and the instance-level statements (databases, backup/restore, DBCC, logins). The TDS adapter
//! ([`endpoint`]) turns its output into tokens.

pub mod admin;
pub mod ags;
pub mod describe;
pub mod endpoint;
pub mod endpoints;
pub mod exec;
pub mod logins;
pub mod sysviews;
pub mod trustsql;
pub mod values;

pub use exec::{Conn, Out, Server};
