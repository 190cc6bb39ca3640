#![allow(dead_code)]
use engine::{Collect, DbOptions, Instance, InstanceConfig, Session};
use rusqlite::types::Value;
use std::path::Path;
use std::sync::Arc;

pub fn open(dir: &Path) -> Arc<Instance> {
    open_with(dir, DbOptions::default())
}

pub fn open_with(dir: &Path, opts: DbOptions) -> Arc<Instance> {
    Instance::open(InstanceConfig {
        name: "test".into(),
        data_dir: dir.to_path_buf(),
        db_options: opts,
    })
    .expect("open instance")
}

pub fn session(inst: &Arc<Instance>, db: &str) -> Session {
    let mut s = Session::new(inst.clone());
    s.use_database(Some(db)).expect("use");
    s
}

pub fn exec(s: &mut Session, sql: &str) -> Collect {
    s.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn scalar_i64(s: &mut Session, sql: &str) -> i64 {
    match &exec(s, sql).rows[0][0] {
        Value::Integer(i) => *i,
        v => panic!("not an integer: {v:?}"),
    }
}
