//! Writes the seed corpus under fuzz/corpus/<target>/ from the crate's own encoders.
//! `cargo run -p tds --example gen_fuzz_corpus`
use std::path::PathBuf;

use tds::batch::{AllHeaders, SqlBatch};
use tds::login7::{encode_login7, FeatureExt, Login7};
use tds::packet::{encode_packets, PacketType};
use tds::prelogin::{Encryption, PreLogin};
use tds::rpc::{ProcId, RpcMessage, RpcParam, RpcRequest, RpcTarget};
use tds::tm::{IsolationLevel, TmMessage, TmRequest};
use tds::types::{encode_type_info, encode_value};
use tds::{Date, DateTime2, DateTimeOffset, Decimal, SqlType, SqlValue, Time};

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn typed() -> Vec<(SqlType, SqlValue)> {
    let dt = DateTime2 {
        date: Date::from_ymd(2024, 2, 29).unwrap(),
        time: Time::from_hms_nano(1, 2, 3, 400).unwrap(),
    };
    vec![
        (SqlType::Int, SqlValue::Int(7)),
        (SqlType::BigInt, SqlValue::Null),
        (SqlType::Bit, SqlValue::Bit(true)),
        (SqlType::Float, SqlValue::Float(1.5)),
        (
            SqlType::Decimal {
                precision: 38,
                scale: 5,
            },
            SqlValue::Decimal(Decimal {
                value: -123456789,
                precision: 38,
                scale: 5,
            }),
        ),
        (SqlType::Money, SqlValue::Money(12345)),
        (
            SqlType::NVarChar(Some(4000)),
            SqlValue::NVarChar("héllo".into()),
        ),
        (
            SqlType::NVarChar(None),
            SqlValue::NVarChar("plp text".into()),
        ),
        (SqlType::VarChar(Some(10)), SqlValue::VarChar("abc".into())),
        (SqlType::VarBinary(None), SqlValue::VarBinary(vec![1, 2, 3])),
        (SqlType::Guid, SqlValue::Guid([7; 16])),
        (SqlType::Date, SqlValue::Date(dt.date)),
        (SqlType::Time { scale: 3 }, SqlValue::Time(dt.time)),
        (SqlType::DateTime2 { scale: 7 }, SqlValue::DateTime2(dt)),
        (
            SqlType::DateTimeOffset { scale: 7 },
            SqlValue::DateTimeOffset(DateTimeOffset {
                local: dt,
                offset_minutes: 60,
            }),
        ),
        (SqlType::DateTime, SqlValue::DateTime(dt)),
        (SqlType::SmallDateTime, SqlValue::DateTime(dt)),
    ]
}

fn main() {
    let pre = PreLogin {
        version: Some((16, 0, 1000, 0)),
        encryption: Some(Encryption::Off),
        instance: Some(b"MSSQLServer\0".to_vec()),
        thread_id: Some(42),
        mars: Some(0),
        fed_auth_required: Some(1),
        ..Default::default()
    };
    write("prelogin", "basic", &pre.encode());
    let login = Login7 {
        tds_version: 0x7400_0004,
        packet_size: 4096,
        username: "sa".into(),
        password: "Secret123!".into(),
        app_name: "fuzz".into(),
        database: "master".into(),
        features: vec![FeatureExt {
            id: FeatureExt::UTF8_SUPPORT,
            data: vec![],
        }],
        ..Default::default()
    };
    write("login7", "with_features", &encode_login7(&login));
    write(
        "login7",
        "plain",
        &encode_login7(&Login7 {
            features: vec![],
            ..login
        }),
    );
    let hs = AllHeaders {
        transaction_descriptor: Some(0),
        outstanding_requests: Some(1),
        ..Default::default()
    };
    let batch = SqlBatch {
        headers: hs.clone(),
        sql: "select 1; select N'ü'".into(),
    };
    write("sql_batch", "basic", &batch.encode());
    let mut packets = Vec::new();
    encode_packets(
        &mut packets,
        PacketType::SqlBatch,
        &batch.encode(),
        512,
        0,
        1,
        true,
    );
    encode_packets(&mut packets, PacketType::Attention, &[], 512, 0, 1, true);
    write("packet", "batch_then_attention", &packets);
    let params: Vec<RpcParam> = typed()
        .into_iter()
        .enumerate()
        .map(|(i, (ty, value))| RpcParam {
            name: format!("@P{i}"),
            output: i == 0,
            default_value: false,
            ty,
            value,
        })
        .collect();
    let rpc = RpcMessage {
        headers: hs.clone(),
        requests: vec![
            RpcRequest {
                target: RpcTarget::Id(ProcId::ExecuteSql),
                option_flags: 0,
                params,
            },
            RpcRequest {
                target: RpcTarget::Name("sp_unprepare".into()),
                option_flags: 0,
                params: vec![],
            },
        ],
    };
    write("rpc", "all_types", &rpc.encode().unwrap());
    for (i, req) in [
        TmRequest::Begin {
            isolation: IsolationLevel::ReadCommitted,
            name: "t".into(),
        },
        TmRequest::Commit {
            name: String::new(),
            then_begin: Some((IsolationLevel::NoChange, String::new())),
        },
        TmRequest::Save { name: "s".into() },
    ]
    .into_iter()
    .enumerate()
    {
        write(
            "tm",
            &format!("req{i}"),
            &TmMessage {
                headers: hs.clone(),
                request: req,
            }
            .encode(),
        );
    }
    for (i, (ty, v)) in typed().into_iter().enumerate() {
        let mut b = Vec::new();
        encode_type_info(&ty, &mut b);
        encode_value(&ty, &v, &mut b).unwrap();
        write("type_info_value", &format!("t{i:02}"), &b);
    }
}
