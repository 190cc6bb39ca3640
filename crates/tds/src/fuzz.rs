//! Fuzz entry points: each feeds arbitrary bytes to one decoder. They must never panic.
//! Replayed by `tests/fuzz_replay.rs`; `fuzz/` holds a cargo-fuzz harness.

pub fn packet(data: &[u8]) {
    let _ = crate::packet::PacketHeader::decode(data);
    let mut r = crate::packet::Reassembler::new(64 * 1024);
    r.push(data);
    while let Ok(Some(_)) = r.next_message() {}
}

pub fn prelogin(data: &[u8]) {
    if let Ok(p) = crate::prelogin::PreLogin::decode(data) {
        let _ = crate::prelogin::PreLogin::decode(&p.encode());
    }
}

pub fn login7(data: &[u8]) {
    let _ = crate::login7::Login7::decode(data);
}

pub fn sql_batch(data: &[u8]) {
    let _ = crate::batch::SqlBatch::decode(data);
}

pub fn rpc(data: &[u8]) {
    if let Ok(m) = crate::rpc::RpcMessage::decode(data) {
        // Whatever decodes must re-encode (values may be rejected, never panic).
        let _ = m.encode();
    }
}

pub fn tm(data: &[u8]) {
    let _ = crate::tm::TmMessage::decode(data);
}

pub fn type_info_value(data: &[u8]) {
    if let Ok((ty, v, _)) = crate::types::decode_typed_value(data) {
        let mut out = Vec::new();
        let _ = crate::types::encode_value(&ty, &v, &mut out);
    }
}

/// All targets by name, for the replay test and the cargo-fuzz harness.
/// A fuzz target: arbitrary bytes in, must not panic.
pub type Target = fn(&[u8]);

pub const TARGETS: &[(&str, Target)] = &[
    ("packet", packet),
    ("prelogin", prelogin),
    ("login7", login7),
    ("sql_batch", sql_batch),
    ("rpc", rpc),
    ("tm", tm),
    ("type_info_value", type_info_value),
];
