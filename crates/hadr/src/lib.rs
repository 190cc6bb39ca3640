//! High availability / disaster recovery for milink. For now: the database mirroring transport.

pub mod transport;
