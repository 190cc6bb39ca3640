//! Shared by the management API tests: an in-process managed instance, a SQL Server certificate, plain HTTP
//! requests, and a validator for the served OpenAPI document's schemas.
#![allow(dead_code)]

use serde_json::Value;
use sqlexec::{Conn, Out, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const TOKEN: &str = "test-token-123";

pub fn server(dir: &std::path::Path, name: &str, host: &str, managed: bool) -> Arc<Server> {
    let inst = engine::Instance::open(engine::InstanceConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        db_options: Default::default(),
    })
    .unwrap();
    Server::new(inst, name, host, managed)
}

pub fn run(c: &mut Conn, sql: &str) -> Vec<Vec<tsql::Value>> {
    let mut out = Vec::new();
    c.execute_batch(sql, &mut out);
    if let Some(Out::Error(e)) = out.iter().find(|o| matches!(o, Out::Error(_))) {
        panic!("{sql}\nMsg {}: {}", e.number, e.message);
    }
    out.into_iter()
        .filter_map(|o| if let Out::Row(r) = o { Some(r) } else { None })
        .collect()
}

/// A fresh SQL Server-role instance's endpoint certificate, as CERTENCODED gives it (0x… hex).
pub fn sql_server_certificate(dir: &std::path::Path) -> String {
    let sql = server(dir, "sqlserver1", "127.0.0.1", false);
    let mut c = Conn::new(sql, 51, "sa").unwrap();
    run(
        &mut c,
        "CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!Passw0rd#42'",
    );
    run(&mut c, "CREATE CERTIFICATE [Cert_sqlserver1_endpoint] WITH SUBJECT = 'Certificate for Cert_sqlserver1_endpoint', EXPIRY_DATE = '03/30/2035'");
    let r = run(
        &mut c,
        "SELECT CERTENCODED(CERT_ID(N'Cert_sqlserver1_endpoint'))",
    );
    let tsql::Value::Binary(der) = r[0][0].clone() else {
        panic!()
    };
    format!(
        "0x{}",
        der.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

/// The managed instance's management API on an ephemeral loopback port (plain HTTP); returns the port.
pub fn start_mi(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    name: &str,
    rg: &str,
) -> (Arc<Server>, Arc<mgmt::Api>, u16) {
    let fqdn = format!("{name}.example.database.windows.net");
    let mi = server(dir, name, &fqdn, true);
    let settings = mgmt::managed_settings(&mi).unwrap();
    let api = mgmt::Api::new(mi.clone(), SUB, rg, TOKEN, settings, rt.handle().clone());
    let port = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        tokio::spawn(mgmt::serve(l, api.clone(), std::future::pending()));
        p
    });
    (mi, api, port)
}

/// One HTTP/1.1 request; returns (status, head, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: management.azure.com\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head.to_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (
        status,
        head.to_string(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

fn dechunk(b: &str) -> String {
    let mut out = String::new();
    let mut rest = b;
    while let Some((len, r)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&r[..n]);
        rest = &r[n + 2..];
    }
    out
}

pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    })
}

/// The served document's schema for `status` of `method path-template`: the declared one, else `default`.
pub fn response_schema<'a>(doc: &'a Value, template: &str, method: &str, status: u16) -> &'a Value {
    let r = &doc["paths"][template][method]["responses"];
    let s = status.to_string();
    if r.get(&s).is_some() {
        &r[s.as_str()]["schema"]
    } else {
        &r["default"]["schema"]
    }
}

/// Errors of `v` against `schema` (the subset of JSON Schema Swagger 2.0 uses: $ref, allOf, type, enum,
/// required, properties, items, formats uuid/date-time/int32).
pub fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap();
        return validate(doc, &doc["definitions"][name], v, at, errs);
    }
    for s in schema
        .get("allOf")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        validate(doc, s, v, at, errs);
    }
    if let Some(t) = schema.get("type").and_then(|t| t.as_str()) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            errs.push(format!("{at}: expected {t}, got {v}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(|e| e.as_array()) {
        if !e.contains(v) {
            errs.push(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    match (schema.get("format").and_then(|f| f.as_str()), v) {
        (Some("uuid"), Value::String(s)) => {
            let parts: Vec<usize> = s.split('-').map(str::len).collect();
            if parts != [8, 4, 4, 4, 12] || !s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
                errs.push(format!("{at}: {s} is not a uuid"));
            }
        }
        (Some("date-time"), Value::String(s))
            if chrono::DateTime::parse_from_rfc3339(s).is_err() =>
        {
            errs.push(format!("{at}: {s} is not a date-time"));
        }
        (Some("int32"), Value::Number(n))
            if n.as_i64().is_none_or(|n| i32::try_from(n).is_err()) =>
        {
            errs.push(format!("{at}: {n} is not an int32"));
        }
        _ => {}
    }
    for k in schema
        .get("required")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let k = k.as_str().unwrap();
        if v.get(k).is_none() {
            errs.push(format!("{at}: required '{k}' missing"));
        }
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (k, s) in props {
            if let Some(x) = v.get(k) {
                validate(doc, s, x, &format!("{at}.{k}"), errs);
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"), errs);
        }
    }
}
