//! tiberius (Rust client) against the server, with and without TLS.
mod common;

use common::*;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

async fn connect(
    srv: &TestServer,
    enc: EncryptionLevel,
    password: &str,
) -> tiberius::Result<Client<Compat<TcpStream>>> {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1");
    cfg.port(srv.addr.port());
    cfg.authentication(AuthMethod::sql_server(USER, password));
    cfg.encryption(enc);
    cfg.trust_cert();
    cfg.database("testdb");
    let tcp = TcpStream::connect(srv.addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(cfg, tcp.compat_write()).await
}

async fn check_all(srv: &TestServer, enc: EncryptionLevel) {
    // wrong password
    let Err(err) = connect(srv, enc, "nope").await else {
        panic!("login must fail")
    };
    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 18456);
            assert_eq!(e.class(), 14);
        }
        other => panic!("unexpected error {other:?}"),
    }

    let mut c = connect(srv, enc, PASSWORD).await.unwrap();

    // types via simple_query (SQL batch)
    let row = c
        .simple_query("select types")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>("c_int"), Some(-123456));
    assert_eq!(row.get::<i64, _>("c_bigint"), Some(1234567890123));
    assert_eq!(row.get::<bool, _>("c_bit"), Some(true));
    let d: tiberius::numeric::Numeric = row.get("c_decimal").unwrap();
    assert_eq!((d.value(), d.scale()), (123456789, 4));
    assert_eq!(row.get::<f64, _>("c_float"), Some(3.5));
    assert_eq!(row.get::<&str, _>("c_nvarchar"), Some(NVARCHAR_TEXT));
    assert_eq!(
        row.get::<&str, _>("c_nvarcharmax").map(str::to_owned),
        Some(big_text())
    );
    assert_eq!(
        row.get::<&[u8], _>("c_varbinary"),
        Some(&[0xDE, 0xAD, 0xBE, 0xEF, 0][..])
    );
    let g: tiberius::Uuid = row.get("c_guid").unwrap();
    assert_eq!(
        g.to_string().to_uppercase(),
        "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    );
    let cell = |name: &str| {
        row.cells()
            .find(|(c, _)| c.name() == name)
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    let dt = match cell("c_datetime2") {
        tiberius::ColumnData::DateTime2(Some(d)) => d,
        other => panic!("{other:?}"),
    };
    let date = match cell("c_date") {
        tiberius::ColumnData::Date(Some(d)) => d,
        other => panic!("{other:?}"),
    };
    // 2024-02-29 is day 738944 since 0001-01-01
    assert_eq!(date.days(), 738944);
    assert_eq!(dt.date().days(), date.days());
    assert_eq!(
        dt.time().increments(),
        (13 * 3600 + 45 * 60 + 7) * 10_000_000 + 1_234_567
    );
    assert_eq!(row.get::<i32, _>("c_null"), None);
    assert_eq!(row.get::<&str, _>("c_nullstr"), None);

    // parameterised: sp_executesql with typed params echoed back
    let big = big_text();
    let guid = tiberius::Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
    let rows = c
        .query(
            "select echo @P1, @P2, @P3, @P4, @P5, @P6, @P7",
            &[
                &42i32,
                &-7i64,
                &"ünïcode ✓",
                &big.as_str(),
                &true,
                &2.5f64,
                &guid,
            ],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let r = &rows[0];
    assert_eq!(r.get::<i32, _>(0), Some(42));
    assert_eq!(r.get::<i64, _>(1), Some(-7));
    assert_eq!(r.get::<&str, _>(2), Some("ünïcode ✓"));
    assert_eq!(r.get::<&str, _>(3).map(str::len), Some(big.len()));
    assert_eq!(r.get::<bool, _>(4), Some(true));
    assert_eq!(r.get::<f64, _>(5), Some(2.5));
    assert_eq!(r.get::<tiberius::Uuid, _>(6), Some(guid));

    // error with number / class / state; connection stays usable
    let Err(err) = c.simple_query("raiserror").await else {
        panic!("error expected")
    };
    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!((e.code(), e.class(), e.state()), (50000, 16, 3));
            assert!(e.message().contains("boom"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let one = c
        .simple_query("select 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.get::<i32, _>(0), Some(1));

    // transaction in SQL batches with ENVCHANGE begin/commit/rollback
    c.simple_query("begin tran; insert 1")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("rollback")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("begin tran; insert 2")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("commit")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let rows = c
        .simple_query("select rows")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let v: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0).unwrap()).collect();
    assert_eq!(v, vec![2]);

    // several statements, several results
    let res = c
        .simple_query("select 1; select types; select 1")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(res.len(), 3);

    // current database from login
    let db = c
        .simple_query("select db_name()")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.get::<&str, _>(0), Some("testdb"));
}

#[tokio::test]
async fn tiberius_plain() {
    let srv = tokio::task::spawn_blocking(|| start_server(false))
        .await
        .unwrap();
    check_all(&srv, EncryptionLevel::NotSupported).await;
}

#[tokio::test]
async fn tiberius_tls_required() {
    let srv = tokio::task::spawn_blocking(|| start_server(true))
        .await
        .unwrap();
    check_all(&srv, EncryptionLevel::Required).await;
}

#[tokio::test]
async fn tiberius_tls_login_only() {
    let srv = tokio::task::spawn_blocking(|| start_server(true))
        .await
        .unwrap();
    check_all(&srv, EncryptionLevel::Off).await;
}

#[tokio::test]
async fn tiberius_tds8_strict() {
    let srv = tokio::task::spawn_blocking(|| start_server(true))
        .await
        .unwrap();
    check_all(&srv, EncryptionLevel::Strict).await;
}

#[tokio::test]
async fn tiberius_many_sessions() {
    let srv = tokio::task::spawn_blocking(|| start_server(true))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16i32 {
        let addr = srv.addr;
        let s = TestServer {
            addr,
            cert_dir: srv.cert_dir.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&s, EncryptionLevel::Required, PASSWORD)
                .await
                .unwrap();
            for _ in 0..5 {
                let r = c
                    .query("select echo @P1", &[&i])
                    .await
                    .unwrap()
                    .into_row()
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(r.get::<i32, _>(0), Some(i));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn tiberius_forced_encryption() {
    let srv = tokio::task::spawn_blocking(|| start_server_with(true, true))
        .await
        .unwrap();
    // OFF is upgraded to full TLS; the whole check list runs encrypted
    check_all(&srv, EncryptionLevel::Off).await;
    // a client without TLS is refused
    assert!(connect(&srv, EncryptionLevel::NotSupported, PASSWORD)
        .await
        .is_err());
}
