//! High availability / disaster recovery: the replication core (seeding, log shipping, redo) and the messages the
//! link exchanges. The transport that carries them between instances is `transport`.

pub mod identity;
pub mod protocol;
pub mod seeding;
pub mod shipping;
