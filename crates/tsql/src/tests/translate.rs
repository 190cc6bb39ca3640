//! DML/DDL translation to SQLite text.

use crate::parser::parse_batch;
use crate::translate::*;
use crate::types::{DataType, Len};

struct Cat;
impl Catalog for Cat {
    fn column_types(&self, table: &str) -> Option<Vec<(String, DataType)>> {
        match table.to_ascii_lowercase().as_str() {
            "t" => Some(vec![
                ("id".into(), DataType::Int),
                ("name".into(), DataType::NVarChar(Len::N(50))),
                (
                    "amount".into(),
                    DataType::Decimal {
                        precision: 10,
                        scale: 2,
                        numeric: false,
                    },
                ),
            ]),
            "u" => Some(vec![
                ("id".into(), DataType::Int),
                ("code".into(), DataType::VarChar(Len::N(10))),
            ]),
            "sys.certificates" => Some(vec![
                ("name".into(), DataType::SysName),
                ("certificate_id".into(), DataType::Int),
            ]),
            _ => None,
        }
    }
    fn identity_column(&self, table: &str) -> Option<String> {
        (table.eq_ignore_ascii_case("t")).then(|| "id".to_string())
    }
    fn variable_type(&self, name: &str) -> Option<DataType> {
        (name.eq_ignore_ascii_case("@n")).then_some(DataType::NVarChar(Len::N(20)))
    }
}

fn tr(src: &str) -> Translation {
    let stmts = parse_batch(src).unwrap_or_else(|e| panic!("{}: {}", src, e));
    translate(&stmts[0], &Cat).unwrap_or_else(|e| panic!("{}: {}", src, e))
}

fn tr_err(src: &str) -> crate::SqlError {
    let stmts = parse_batch(src).unwrap();
    translate(&stmts[0], &Cat).unwrap_err()
}

#[test]
fn create_table_with_types_and_metadata() {
    let t = tr("CREATE TABLE dbo.t (
  id INT IDENTITY(1,1) NOT NULL CONSTRAINT pk_t PRIMARY KEY CLUSTERED,
  name NVARCHAR(50) NOT NULL UNIQUE,
  amount DECIMAL(10, 2) NULL DEFAULT (0),
  created DATETIME2(3) NOT NULL DEFAULT SYSDATETIME(),
  code VARCHAR(10) COLLATE Latin1_General_CS_AS NULL,
  parent INT NULL REFERENCES t (id),
  CONSTRAINT ck_amount CHECK (amount >= 0)
)");
    assert_eq!(t.kind, TranslationKind::CreateTable);
    assert_eq!(
        t.sql,
        "CREATE TABLE \"t\" (\"id\" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, \"name\" TEXT NOT NULL UNIQUE COLLATE TSQL_CI_AS, \"amount\" TEXT DEFAULT ((0)) COLLATE TSQL_DECIMAL, \"created\" TEXT NOT NULL DEFAULT (tsql_sysdatetime()), \"code\" TEXT COLLATE BINARY, \"parent\" INTEGER REFERENCES \"t\" (\"id\"), CONSTRAINT \"ck_amount\" CHECK ((\"amount\" >= 0)))"
    );
    let m = t.table.unwrap();
    assert_eq!(m.name, "t");
    assert_eq!(m.columns[0].identity, Some((1, 1)));
    assert_eq!(
        m.columns[2].ty,
        Some(DataType::Decimal {
            precision: 10,
            scale: 2,
            numeric: false
        })
    );
    assert_eq!(m.columns[3].ty, Some(DataType::DateTime2(3)));
    assert!(!m.columns[1].nullable && m.columns[2].nullable);
    assert!(m
        .constraints
        .iter()
        .any(|c| c.kind == "PRIMARY KEY" && c.name.as_deref() == Some("pk_t")));
    // An IDENTITY that is not the key: the identity is the rowid, the declared key is enforced as UNIQUE.
    let t = tr("CREATE TABLE x (code CHAR(3) NOT NULL PRIMARY KEY, seq BIGINT IDENTITY(100, 1))");
    assert!(
        t.sql.contains("\"code\" TEXT NOT NULL NOT NULL UNIQUE")
            || t.sql.contains("NOT NULL UNIQUE"),
        "{}",
        t.sql
    );
    assert!(t.sql.contains("\"seq\" INTEGER PRIMARY KEY AUTOINCREMENT"));
    assert_eq!(
        t.extra,
        vec!["INSERT INTO sqlite_sequence (name, seq) VALUES ('x', 99)"]
    );
    let t = tr("CREATE TABLE #tmp (a INT)");
    assert_eq!(t.sql, "CREATE TABLE temp.\"#tmp\" (\"a\" INTEGER)");
}

#[test]
fn select_translation() {
    let t = tr("SELECT TOP 5 [name], amount + 1 AS a2, N'x' + name AS s FROM dbo.t WHERE name = N'abc' ORDER BY id DESC");
    assert_eq!(
        t.sql,
        "SELECT \"name\" AS \"name\", tsql_add(\"amount\", 1, 'decimal(10,2)', 'int') AS \"a2\", ('x' || \"name\") AS \"s\" FROM \"t\" AS \"t\" WHERE (\"name\" = 'abc' COLLATE TSQL_CI_AS) ORDER BY \"id\" DESC LIMIT 5"
    );
    assert_eq!(t.columns[0].ty, Some(DataType::NVarChar(Len::N(50))));
    assert_eq!(
        t.columns[1].ty,
        Some(DataType::Decimal {
            precision: 13,
            scale: 2,
            numeric: false
        })
    );
    assert_eq!(t.columns[2].ty, Some(DataType::NVarChar(Len::N(51))));
    let t = tr("SELECT * FROM t");
    assert_eq!(t.sql, "SELECT \"t\".\"id\" AS \"id\", \"t\".\"name\" AS \"name\", \"t\".\"amount\" AS \"amount\" FROM \"t\"");
    assert_eq!(t.columns.len(), 3);
    let t =
        tr("SELECT @@SPID, @n + N'!', ISNULL(@x, 1), LEN(name), GETDATE() FROM t WHERE id = @x");
    assert_eq!(t.params, vec!["@@SPID", "@n", "@x"]);
    assert_eq!(t.sql, "SELECT ?1, (?2 || '!'), ifnull(?3, 1), length(rtrim(\"name\")), tsql_getdate() FROM \"t\" WHERE (\"id\" = ?3)");
    let t = tr("SELECT name FROM sys.certificates WHERE certificate_id = CERT_ID(N'c')");
    assert_eq!(t.sql, "SELECT \"name\" AS \"name\" FROM \"sys.certificates\" AS \"certificates\" WHERE (\"certificate_id\" = tsql_cert_id('c'))");
    assert_eq!(t.columns[0].ty, Some(DataType::SysName));
    let t = tr("SELECT 1");
    assert_eq!(t.sql, "SELECT 1");
    let t = tr("SELECT a.id, COUNT(*) AS n FROM t a LEFT JOIN u ON u.id = a.id GROUP BY a.id HAVING COUNT(*) > 1 ORDER BY a.id OFFSET 10 ROWS FETCH NEXT 5 ROWS ONLY");
    assert_eq!(t.sql, "SELECT \"a\".\"id\" AS \"id\", count(*) AS \"n\" FROM \"t\" AS \"a\" LEFT JOIN \"u\" ON (\"u\".\"id\" = \"a\".\"id\") GROUP BY \"a\".\"id\" HAVING (count(*) > 1) ORDER BY \"a\".\"id\" LIMIT 5 OFFSET 10");
    let t =
        tr("WITH c (x) AS (SELECT id FROM t) SELECT DISTINCT x FROM c UNION ALL SELECT id FROM u");
    assert_eq!(t.sql, "WITH RECURSIVE \"c\"(\"x\") AS (SELECT \"id\" AS \"id\" FROM \"t\") SELECT DISTINCT \"x\" AS \"x\" FROM \"c\" UNION ALL SELECT \"id\" AS \"id\" FROM \"u\"");
    assert_eq!(t.columns[0].ty, Some(DataType::Int));
    let t = tr("SELECT CAST(amount AS VARCHAR(20)), CONVERT(VARCHAR(30), GETDATE(), 120), 1.50, x.v FROM t CROSS JOIN (VALUES (1), (2)) AS x(v) WHERE name LIKE 'a[bc]%' AND amount BETWEEN 1 AND 2");
    assert!(
        t.sql
            .contains("tsql_convert(\"amount\", 'varchar(20)', NULL, 'decimal(10,2)')"),
        "{}",
        t.sql
    );
    assert!(
        t.sql
            .contains("tsql_convert(tsql_getdate(), 'varchar(30)', 120, 'datetime')"),
        "{}",
        t.sql
    );
    assert!(t.sql.contains("'1.50'"));
    assert!(
        t.sql
            .contains("(SELECT column1 AS \"v\" FROM (VALUES (1), (2))) AS \"x\""),
        "{}",
        t.sql
    );
    assert!(
        t.sql.contains("(tsql_like(\"name\", 'a[bc]%') = 1)"),
        "{}",
        t.sql
    );
    assert_eq!(
        t.columns[2].ty,
        Some(DataType::Decimal {
            precision: 3,
            scale: 2,
            numeric: false
        })
    );
}

#[test]
fn select_assign_and_into() {
    let t = tr("SELECT @a = id, @b += amount FROM t WHERE name = @n");
    assert_eq!(t.kind, TranslationKind::SelectAssign);
    assert_eq!(t.assign_to, vec!["@a", "@b"]);
    assert_eq!(t.sql, "SELECT \"id\", tsql_add(?1, \"amount\", NULL, 'decimal(10,2)') FROM \"t\" WHERE (\"name\" = ?2 COLLATE TSQL_CI_AS)");
    assert_eq!(tr_err("SELECT @a = id, name FROM t").number, 141);
    let t = tr("SELECT id, name INTO #copy FROM t");
    assert_eq!(t.kind, TranslationKind::SelectInto);
    assert_eq!(
        t.sql,
        "CREATE TABLE temp.\"#copy\" AS SELECT \"id\" AS \"id\", \"name\" AS \"name\" FROM \"t\""
    );
    assert_eq!(
        t.table.unwrap().columns[1].ty,
        Some(DataType::NVarChar(Len::N(50)))
    );
}

#[test]
fn insert_update_delete() {
    let t = tr("INSERT INTO t (name, amount) OUTPUT inserted.id, inserted.name VALUES (N'a', 1.5), (N'b', NULL)");
    assert_eq!(
        t.sql,
        "INSERT INTO \"t\" (\"name\", \"amount\") VALUES (tsql_coerce('a', 'nvarchar(50)', 't', 'name'), tsql_coerce('1.5', 'decimal(10,2)', 't', 'amount')), (tsql_coerce('b', 'nvarchar(50)', 't', 'name'), NULL) RETURNING \"id\" AS \"id\", \"name\" AS \"name\""
    );
    assert_eq!(t.columns[0].ty, Some(DataType::Int));
    // No column list: every column but the identity.
    let t = tr("INSERT t VALUES (N'a', 2)");
    assert!(
        t.sql
            .starts_with("INSERT INTO \"t\" (\"name\", \"amount\") VALUES"),
        "{}",
        t.sql
    );
    let t = tr("INSERT INTO t (name, amount) VALUES (DEFAULT, 1)");
    assert!(
        t.sql
            .starts_with("INSERT INTO \"t\" (\"amount\") VALUES (tsql_coerce(1,"),
        "{}",
        t.sql
    );
    let t = tr("INSERT INTO u (id, code) SELECT id, name FROM t WHERE id > @x");
    assert_eq!(
        t.sql,
        "INSERT INTO \"u\" (\"id\", \"code\") SELECT tsql_coerce(\"c1\", 'int', 'u', 'id'), tsql_coerce(\"c2\", 'varchar(10)', 'u', 'code') FROM (SELECT \"id\" AS \"c1\", \"name\" AS \"c2\" FROM \"t\" WHERE (\"id\" > ?1))"
    );
    let t = tr("INSERT INTO t DEFAULT VALUES");
    assert_eq!(t.sql, "INSERT INTO \"t\" DEFAULT VALUES");
    let t = tr("UPDATE t SET amount += 1, name = name + N'!' WHERE id = 1");
    assert_eq!(
        t.sql,
        "UPDATE \"t\" SET \"amount\" = tsql_coerce(tsql_add(\"amount\", 1, 'decimal(10,2)', 'int'), 'decimal(10,2)', 't', 'amount'), \"name\" = tsql_coerce((\"name\" || '!'), 'nvarchar(50)', 't', 'name') WHERE (\"id\" = 1)"
    );
    let t = tr("UPDATE a SET a.name = u.code FROM t AS a JOIN u ON u.id = a.id WHERE a.amount > 0");
    assert_eq!(
        t.sql,
        "UPDATE \"t\" AS \"a\" SET \"name\" = tsql_coerce(\"u\".\"code\", 'nvarchar(50)', 't', 'name') FROM \"u\" WHERE (\"u\".\"id\" = \"a\".\"id\") AND (\"a\".\"amount\" > 0)"
    );
    let t = tr("UPDATE TOP (2) t SET amount = 0");
    assert!(
        t.sql
            .ends_with("WHERE rowid IN (SELECT rowid FROM \"t\" LIMIT 2)"),
        "{}",
        t.sql
    );
    let t = tr("DELETE FROM t OUTPUT deleted.name WHERE id = 3");
    assert_eq!(
        t.sql,
        "DELETE FROM \"t\" WHERE (\"id\" = 3) RETURNING \"name\" AS \"name\""
    );
    let t = tr("DELETE t FROM t JOIN u ON u.id = t.id WHERE u.code = 'x'");
    assert_eq!(
        t.sql,
        "DELETE FROM \"t\" WHERE rowid IN (SELECT \"t\".rowid FROM \"t\" JOIN \"u\" ON (\"u\".\"id\" = \"t\".\"id\") WHERE (\"u\".\"code\" = 'x' COLLATE TSQL_CI_AS))"
    );
    let t = tr("DELETE TOP (1) FROM t");
    assert_eq!(
        t.sql,
        "DELETE FROM \"t\" WHERE rowid IN (SELECT rowid FROM \"t\" LIMIT 1)"
    );
    assert_eq!(
        tr_err("UPDATE t SET name = 'x' OUTPUT deleted.name").number,
        40000
    );
}

#[test]
fn other_ddl() {
    assert_eq!(
        tr("DROP TABLE IF EXISTS t, u").extra,
        vec!["DROP TABLE IF EXISTS \"u\""]
    );
    assert_eq!(
        tr("CREATE UNIQUE INDEX ix ON t (name DESC) INCLUDE (amount) WHERE amount IS NOT NULL").sql,
        "CREATE UNIQUE INDEX \"ix\" ON \"t\" (\"name\" DESC) WHERE (\"amount\" IS NOT NULL)"
    );
    assert_eq!(tr("DROP INDEX ix ON t").sql, "DROP INDEX \"ix\"");
    let t = tr("ALTER TABLE t ADD note NVARCHAR(MAX) NULL, flag BIT NOT NULL DEFAULT 0");
    assert_eq!(
        t.sql,
        "ALTER TABLE \"t\" ADD COLUMN \"note\" TEXT COLLATE TSQL_CI_AS"
    );
    assert_eq!(
        t.extra,
        vec!["ALTER TABLE \"t\" ADD COLUMN \"flag\" INTEGER NOT NULL DEFAULT (0)"]
    );
    assert_eq!(t.table.unwrap().columns[1].ty, Some(DataType::Bit));
    assert_eq!(
        tr("ALTER TABLE t DROP COLUMN note").sql,
        "ALTER TABLE \"t\" DROP COLUMN \"note\""
    );
    assert_eq!(tr("TRUNCATE TABLE t").sql, "DELETE FROM \"t\"");
    assert_eq!(
        tr("CREATE VIEW v AS SELECT id FROM t").sql,
        "CREATE VIEW \"v\" AS SELECT \"id\" AS \"id\" FROM \"t\""
    );
    assert_eq!(tr_err("ALTER TABLE t ADD c INT NOT NULL").number, 4901);
    assert!(tr_err("SELECT * FROM t CROSS APPLY (SELECT 1 AS x) z")
        .message
        .contains("APPLY"));
    assert_eq!(tr_err("PRINT 1").number, 40000);
}

#[test]
fn table_variables() {
    let stmts = parse_batch(
        "DECLARE @t TABLE (id INT PRIMARY KEY, v NVARCHAR(10))
INSERT INTO @t (id, v) VALUES (1, N'a')
SELECT v FROM @t WHERE id = 1
UPDATE @t SET v = N'b'
DELETE FROM @t WHERE id = 1",
    )
    .unwrap();
    match &stmts[0].kind {
        crate::ast::StatementKind::Declare(d) => match &d[0] {
            crate::ast::Declaration::Table {
                name,
                columns,
                constraints,
            } => {
                let t = translate_table_variable(name, columns, constraints, &Cat).unwrap();
                assert_eq!(t.sql, "CREATE TABLE temp.\"@t\" (\"id\" INTEGER PRIMARY KEY, \"v\" TEXT COLLATE TSQL_CI_AS)");
                assert_eq!(t.table.unwrap().name, "@t");
            }
            other => panic!("{:?}", other),
        },
        other => panic!("{:?}", other),
    }
    assert!(translate(&stmts[1], &Cat)
        .unwrap()
        .sql
        .starts_with("INSERT INTO temp.\"@t\" (\"id\", \"v\") VALUES"));
    assert_eq!(
        translate(&stmts[2], &Cat).unwrap().sql,
        "SELECT \"v\" AS \"v\" FROM temp.\"@t\" AS \"@t\" WHERE (\"id\" = 1)"
    );
    assert_eq!(
        translate(&stmts[3], &Cat).unwrap().sql,
        "UPDATE temp.\"@t\" SET \"v\" = 'b'"
    );
    assert_eq!(
        translate(&stmts[4], &Cat).unwrap().sql,
        "DELETE FROM temp.\"@t\" WHERE (\"id\" = 1)"
    );
}

struct DateCat;
impl Catalog for DateCat {
    fn column_types(&self, table: &str) -> Option<Vec<(String, DataType)>> {
        (table == "ev").then(|| {
            vec![
                ("at".into(), DataType::DateTime2(3)),
                ("d".into(), DataType::Date),
            ]
        })
    }
}

#[test]
fn temporal_comparisons_use_the_stored_form() {
    let tr = |src: &str| {
        let st = parse_batch(src).unwrap();
        translate(&st[0], &DateCat).unwrap().sql
    };
    assert_eq!(
        tr("SELECT at FROM ev WHERE at >= '2026-01-01' AND '2026-12-31' > at AND d = @x"),
        "SELECT \"at\" AS \"at\" FROM \"ev\" WHERE (((\"at\" >= '2026-01-01 00:00:00.0000000' COLLATE TSQL_CI_AS) AND ('2026-12-31 00:00:00.0000000' > \"at\" COLLATE TSQL_CI_AS)) AND (\"d\" = tsql_convert(?1, 'date', NULL, NULL)))"
    );
    assert_eq!(
        tr("SELECT 1 FROM ev WHERE d BETWEEN '20260101' AND '2026-02-01' OR d IN ('2026-03-01')"),
        "SELECT 1 FROM \"ev\" WHERE ((\"d\" BETWEEN '2026-01-01' AND '2026-02-01') OR (\"d\" IN ('2026-03-01')))"
    );
    let st = parse_batch("SELECT 1 FROM ev WHERE d = 'not a date'").unwrap();
    assert_eq!(translate(&st[0], &DateCat).unwrap_err().number, 241);
}

#[test]
fn alter_table_add_unique() {
    let t = tr("ALTER TABLE t ADD CONSTRAINT uq_name UNIQUE (name)");
    assert_eq!(t.sql, "CREATE UNIQUE INDEX \"uq_name\" ON \"t\" (\"name\")");
    assert_eq!(t.table.unwrap().constraints[0].kind, "UNIQUE");
    assert!(
        tr_err("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES u (id)")
            .message
            .contains("ADD CONSTRAINT")
    );
}

#[test]
fn crypt_gen_random_becomes_randomblob() {
    let t = tr("SELECT CRYPT_GEN_RANDOM(16) AS r");
    assert!(t.sql.contains("randomblob(16)"), "{}", t.sql);
}
