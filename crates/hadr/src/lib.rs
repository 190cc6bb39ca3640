//! High availability / disaster recovery: the replication core (seeding, log shipping, redo), the messages the
//! link exchanges, and the database mirroring transport that carries them between instances.

pub mod identity;
pub mod link;
pub mod protocol;
pub mod seeding;
pub mod shipping;
pub mod transport;
