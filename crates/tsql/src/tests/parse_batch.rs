//! Batch parsing: statement boundaries without separators, procedural statements, client connect batches, errors.

use crate::admin::*;
use crate::ast::*;
use crate::parser::{parse_batch, parse_param_definitions, split_go};
use crate::types::{DataType, Len};

fn kinds(src: &str) -> Vec<StatementKind> {
    match parse_batch(src) {
        Ok(v) => v.into_iter().map(|s| s.kind).collect(),
        Err(e) => panic!("parse failed: {}\n--- batch ---\n{}", e, src),
    }
}

fn err(src: &str) -> crate::SqlError {
    match parse_batch(src) {
        Ok(v) => panic!("expected an error for {:?}, got {:?}", src, v),
        Err(e) => e,
    }
}

#[test]
fn freetds_connect_batch_is_three_statements() {
    let k = kinds("set textsize 2147483647 select @@spid use [db]");
    assert_eq!(k.len(), 3);
    assert!(
        matches!(&k[0], StatementKind::SetOption(o) if o.names == vec!["TEXTSIZE"] && o.value == OptionValue::Expr(Expr::Literal(Literal::Int(2147483647))))
    );
    assert!(matches!(&k[1], StatementKind::Query(_)));
    assert!(matches!(&k[2], StatementKind::Use(i) if i.value == "db" && i.quoted));
}

#[test]
fn pymssql_and_client_set_lists() {
    let k = kinds(
        "SET ARITHABORT ON;SET CONCAT_NULL_YIELDS_NULL ON;SET ANSI_NULLS ON;SET ANSI_NULL_DFLT_ON ON;SET ANSI_PADDING ON;SET ANSI_WARNINGS ON;SET ANSI_NULL_DFLT_ON ON;SET CURSOR_CLOSE_ON_COMMIT ON;SET QUOTED_IDENTIFIER ON;SET TEXTSIZE 2147483647;",
    );
    assert_eq!(k.len(), 10);
    let k = kinds("set quoted_identifier, ansi_nulls on\nset transaction isolation level read committed\nset implicit_transactions off\nSET LOCK_TIMEOUT -1 SET DATEFORMAT mdy SET LANGUAGE us_english SET NOCOUNT ON SET XACT_ABORT ON SET STATISTICS IO, TIME OFF SET IDENTITY_INSERT dbo.t ON SET DEADLOCK_PRIORITY LOW SET LANGUAGE N'us_english'");
    assert_eq!(k.len(), 12);
    match &k[0] {
        StatementKind::SetOption(o) => {
            assert_eq!(o.names, vec!["QUOTED_IDENTIFIER", "ANSI_NULLS"]);
            assert_eq!(o.value, OptionValue::On);
        }
        other => panic!("{:?}", other),
    }
    assert!(
        matches!(&k[1], StatementKind::SetOption(o) if o.value == OptionValue::Word("READ COMMITTED".into()))
    );
    assert!(
        matches!(&k[3], StatementKind::SetOption(o) if matches!(o.value, OptionValue::Expr(Expr::Literal(Literal::Int(-1)))))
    );
    assert!(
        matches!(&k[8], StatementKind::SetOption(o) if o.names == vec!["STATISTICS IO", "STATISTICS TIME"])
    );
    assert!(
        matches!(&k[9], StatementKind::SetOption(o) if o.names == vec!["IDENTITY_INSERT", "dbo.t"])
    );
}

#[test]
fn procedural_statements() {
    let src = "
DECLARE @a INT = 1, @b NVARCHAR(20), @t TABLE (id INT PRIMARY KEY, v NVARCHAR(10))
SET @a += 2
SELECT @b = N'x', @a = @a * 2
IF @a > 2
BEGIN
    PRINT 'big'
END
ELSE PRINT 'small'
WHILE @a < 10 BEGIN SET @a = @a + 1; IF @a = 5 BREAK ELSE CONTINUE END
BEGIN TRY
    RAISERROR('boom %d', 16, 1, @a) WITH NOWAIT
END TRY
BEGIN CATCH
    THROW;
END CATCH
BEGIN TRAN t1
SAVE TRAN sp1
ROLLBACK TRAN sp1
COMMIT
BEGIN TRANSACTION COMMIT TRANSACTION ROLLBACK WORK
;THROW 50001, N'bad', 1;
RETURN
";
    let k = kinds(src);
    let names: Vec<&str> = k
        .iter()
        .map(|s| match s {
            StatementKind::Declare(_) => "declare",
            StatementKind::SetVariable { .. } => "setvar",
            StatementKind::Query(_) => "select",
            StatementKind::If { .. } => "if",
            StatementKind::While { .. } => "while",
            StatementKind::TryCatch { .. } => "try",
            StatementKind::BeginTran { .. } => "begintran",
            StatementKind::SaveTran { .. } => "save",
            StatementKind::Rollback { .. } => "rollback",
            StatementKind::Commit { .. } => "commit",
            StatementKind::Throw(_) => "throw",
            StatementKind::Return(_) => "return",
            _ => "other",
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "declare",
            "setvar",
            "select",
            "if",
            "while",
            "try",
            "begintran",
            "save",
            "rollback",
            "commit",
            "begintran",
            "commit",
            "rollback",
            "throw",
            "return"
        ]
    );
    match &k[0] {
        StatementKind::Declare(d) => {
            assert_eq!(d.len(), 3);
            assert!(matches!(&d[2], Declaration::Table { columns, .. } if columns.len() == 2));
        }
        _ => unreachable!(),
    }
    assert!(matches!(
        &k[1],
        StatementKind::SetVariable {
            op: AssignOp::Add,
            ..
        }
    ));
    match &k[2] {
        StatementKind::Query(q) => match &q.body {
            SetExpr::Select(s) => {
                assert!(matches!(&s.items[1], SelectItem::Assign { var, .. } if var == "@a"))
            }
            _ => unreachable!(),
        },
        _ => unreachable!(),
    }
    match &k[5] {
        StatementKind::TryCatch {
            try_block,
            catch_block,
        } => {
            assert!(
                matches!(&try_block[0].kind, StatementKind::Raiserror(r) if r.args.len() == 1 && r.options == vec!["NOWAIT"])
            );
            assert!(matches!(&catch_block[0].kind, StatementKind::Throw(None)));
        }
        _ => unreachable!(),
    }
    assert!(matches!(&k[6], StatementKind::BeginTran { name: Some(n), .. } if n == "t1"));
    assert!(matches!(&k[13], StatementKind::Throw(Some(_))));
}

#[test]
fn exec_forms() {
    let k = kinds("EXEC @rc = dbo.p 1, @x = N'a', @y = @z OUTPUT, @d = DEFAULT\nEXEC ('SELECT ' + '1')\nEXECUTE (@sql)\nEXEC @procname\nexec sp_executesql N'select @a', N'@a int', @a = 1");
    assert_eq!(k.len(), 5);
    match &k[0] {
        StatementKind::Exec(e) => {
            assert_eq!(e.return_var.as_deref(), Some("@rc"));
            assert_eq!(e.args.len(), 4);
            assert!(e.args[2].output);
            assert_eq!(e.args[3].value, Expr::Literal(Literal::Default));
        }
        _ => unreachable!(),
    }
    assert!(matches!(&k[1], StatementKind::ExecString(p) if p.len() == 2));
    match &k[4] {
        StatementKind::Exec(e) => {
            assert!(e.is_sp_executesql());
            assert_eq!(
                e.arg(1, "@params").unwrap().value,
                Expr::Literal(Literal::NString("@a int".into()))
            );
        }
        _ => unreachable!(),
    }
    // A bare procedure name starts a batch.
    let k = kinds("sp_who2 active");
    assert!(
        matches!(&k[0], StatementKind::Exec(e) if e.args[0].value == Expr::Literal(Literal::NString("active".into())))
    );
    let p = parse_param_definitions("@a int, @b nvarchar(10) OUTPUT").unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].ty, DataType::NVarChar(Len::N(10)));
    assert!(p[1].output);
}

#[test]
fn admin_misc() {
    let src = "CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'p'
OPEN MASTER KEY DECRYPTION BY PASSWORD = 'p'
ALTER MASTER KEY REGENERATE WITH ENCRYPTION BY PASSWORD = 'q'
ALTER MASTER KEY ADD ENCRYPTION BY SERVICE MASTER KEY
ALTER MASTER KEY DROP ENCRYPTION BY SERVICE MASTER KEY
DROP MASTER KEY
CREATE CERTIFICATE c1 ENCRYPTION BY PASSWORD = 'pw' WITH SUBJECT = 's', START_DATE = '01/01/2024', EXPIRY_DATE = '01/01/2030'
CREATE CERTIFICATE c2 WITH SUBJECT = @subj
CREATE CERTIFICATE c3 FROM FILE = '/tmp/c.cer' WITH PRIVATE KEY (FILE = '/tmp/c.pvk', DECRYPTION BY PASSWORD = 'x')
BACKUP CERTIFICATE c1 TO FILE = '/tmp/c1.cer' WITH PRIVATE KEY (FILE = '/tmp/c1.pvk', ENCRYPTION BY PASSWORD = 'y')
DROP CERTIFICATE c1
CREATE ENDPOINT ep AUTHORIZATION sa STATE = STOPPED AS TCP (LISTENER_PORT = 5023, LISTENER_IP = (10.0.0.4)) FOR DATABASE_MIRRORING (ROLE = PARTNER, AUTHENTICATION = CERTIFICATE c1 WINDOWS KERBEROS, ENCRYPTION = SUPPORTED ALGORITHM RC4 AES)
ALTER ENDPOINT ep STATE = STARTED
ALTER ENDPOINT ep AS TCP (LISTENER_IP = ('::1'))
DROP ENDPOINT ep
ALTER AVAILABILITY GROUP [dag] JOIN AVAILABILITY GROUP ON 'AG1' WITH (LISTENER_URL = 'tcp://a:5022', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC), 'AG2' WITH (LISTENER_URL = 'tcp://b:5022', AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT, FAILOVER_MODE = MANUAL, SEEDING_MODE = AUTOMATIC)
ALTER AVAILABILITY GROUP ag JOIN
ALTER AVAILABILITY GROUP ag DENY CREATE ANY DATABASE
ALTER AVAILABILITY GROUP ag MODIFY REPLICA ON N'srv' WITH (SECONDARY_ROLE (ALLOW_CONNECTIONS = ALL))
ALTER AVAILABILITY GROUP ag ADD DATABASE [db2]
ALTER AVAILABILITY GROUP ag REMOVE DATABASE db2
ALTER AVAILABILITY GROUP ag OFFLINE
ALTER DATABASE [db] SET HADR AVAILABILITY GROUP = [ag]
ALTER DATABASE db SET HADR OFF
ALTER DATABASE db SET HADR RESUME
ALTER DATABASE db SET SINGLE_USER WITH ROLLBACK IMMEDIATE
ALTER DATABASE db SET ONLINE
ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 150
ALTER DATABASE db SET READ_COMMITTED_SNAPSHOT ON
BACKUP DATABASE [db] TO DISK = @path, DISK = N'/b/2.bak' WITH COPY_ONLY, INIT, FORMAT, NAME = N'full', DESCRIPTION = 'd', COMPRESSION, CHECKSUM, STATS
RESTORE DATABASE db FROM DISK = '/b/db.bak' WITH NORECOVERY, REPLACE, STATS = 5, MOVE 'db' TO '/data/db.mdf', MOVE 'db_log' TO '/data/db.ldf'
RESTORE LOG db FROM DISK = '/b/db.trn' WITH RECOVERY, STOPAT = '2026-11-27T10:00:00'
RESTORE HEADERONLY FROM DISK = '/b/db.bak'
RESTORE VERIFYONLY FROM DISK = '/b/db.bak'
RESTORE FILELISTONLY FROM DISK = '/b/db.bak'
RESTORE DATABASE db WITH RECOVERY
CREATE DATABASE [x] COLLATE SQL_Latin1_General_CP1_CI_AS
DROP DATABASE IF EXISTS x, y
CREATE LOGIN app WITH PASSWORD = 'Pa55word!' MUST_CHANGE, CHECK_POLICY = OFF, DEFAULT_DATABASE = [db]
ALTER LOGIN app WITH PASSWORD = 'n3w!'
ALTER LOGIN app DISABLE
DROP LOGIN app
DBCC CHECKDB(N'db') WITH NO_INFOMSGS
DBCC TRACEON(1800, -1)
CHECKPOINT
KILL 53
";
    let k = kinds(src);
    assert_eq!(
        k.len(),
        src.lines().filter(|l| !l.trim().is_empty()).count()
    );
    let a: Vec<&Admin> = k
        .iter()
        .map(|s| match s {
            StatementKind::Admin(a) => &**a,
            other => panic!("{:?}", other),
        })
        .collect();
    assert!(matches!(
        a[2],
        Admin::AlterMasterKey(AlterMasterKey::Regenerate { .. })
    ));
    match a[6] {
        Admin::CreateCertificate(c) => {
            assert!(
                c.encryption_password.is_some()
                    && c.start_date.is_some()
                    && c.expiry_date.is_some()
            );
        }
        other => panic!("{:?}", other),
    }
    assert!(
        matches!(a[7], Admin::CreateCertificate(c) if c.subject == Some(Expr::Variable("@subj".into())))
    );
    assert!(
        matches!(a[8], Admin::CreateCertificate(c) if c.private_key.len() == 2 && c.private_key[1].name == "DECRYPTION BY PASSWORD")
    );
    match a[11] {
        Admin::CreateEndpoint(e) => {
            assert_eq!(e.listener_ip, Some(ListenerIp::Address("10.0.0.4".into())));
            assert_eq!(
                e.authentication.as_ref().unwrap().connection_auth_desc(),
                "CERTIFICATE_KERBEROS"
            );
            assert_eq!(
                e.encryption.as_ref().unwrap().algorithms,
                vec![EncryptionAlgorithm::Rc4, EncryptionAlgorithm::Aes]
            );
            assert_eq!(e.state, Some(EndpointState::Stopped));
        }
        other => panic!("{:?}", other),
    }
    assert!(
        matches!(a[13], Admin::AlterEndpoint(e) if e.listener_ip == Some(ListenerIp::Address("::1".into())))
    );
    assert!(
        matches!(a[15], Admin::AlterAvailabilityGroup { action, .. } if matches!(&**action, AgAction::Join { groups, .. } if groups.len() == 2))
    );
    assert!(
        matches!(a[22], Admin::AlterDatabase { action: AlterDatabaseAction::SetHadrAvailabilityGroup(g), .. } if g.value == "ag")
    );
    assert!(
        matches!(a[25], Admin::AlterDatabase { action: AlterDatabaseAction::Set { termination: Some(t), .. }, .. } if t == "ROLLBACK IMMEDIATE")
    );
    assert!(matches!(a[27], Admin::AlterDatabase { name: None, .. }));
    match a[29] {
        Admin::Backup(b) => {
            assert_eq!(b.devices.len(), 2);
            assert_eq!(b.options.len(), 8);
        }
        other => panic!("{:?}", other),
    }
    assert!(matches!(a[30], Admin::Restore(r) if r.moves.len() == 2 && r.options.len() == 3));
    assert!(matches!(a[32], Admin::Restore(r) if r.kind == RestoreKind::HeaderOnly));
    assert!(matches!(a[37], Admin::DropDatabase { if_exists: true, names } if names.len() == 2));
    match a[38] {
        Admin::CreateLogin {
            password: Some(_),
            options,
            ..
        } => assert_eq!(options.len(), 3),
        other => panic!("{:?}", other),
    }
    assert!(
        matches!(a[42], Admin::Dbcc { name, args, with } if name == "CHECKDB" && args.len() == 1 && with.len() == 1)
    );
}

#[test]
fn syntax_errors_have_sql_server_shape() {
    let e = err("SELECT 1\nSELECT FROM");
    assert_eq!((e.number, e.severity, e.state, e.line), (156, 15, 1, 2));
    assert_eq!(e.message, "Incorrect syntax near the keyword 'FROM'.");
    let e = err("select 1 2");
    assert_eq!((e.number, e.line), (102, 1));
    assert_eq!(e.message, "Incorrect syntax near '2'.");
    let e = err("\n\nCREATE ENDPOINT e STATE = RUNNING AS TCP (LISTENER_PORT = 1) FOR DATABASE_MIRRORING (ROLE = ALL)");
    assert_eq!((e.number, e.line), (102, 3));
    let e = err("IF 1 = 1");
    assert_eq!(e.number, 102);
    let e = err("BEGIN TRY SELECT 1 END TRY");
    assert_eq!(e.number, 102);
    let e = err("DECLARE @x NVARCHAR(5000)");
    assert_eq!(e.number, 131);
    let e = err("SELECT 'abc");
    assert_eq!(e.number, 105);
    let e = err("MERGE t USING s ON 1=1");
    assert!(e.message.contains("MERGE"));
    // Unsupported constructs name themselves.
    let e = err("SELECT * FROM t FOR XML PATH('')");
    assert!(e.message.contains("FOR XML"), "{}", e.message);
}

#[test]
fn go_splitting() {
    let b = split_go("select 1\nGO\nselect 'GO\nGO'\ngo 2\n/* GO\n*/ select 3\n  Go  \n");
    assert_eq!(b.len(), 4);
    assert_eq!(b[1], b[2]);
    assert!(b[1].contains("select 'GO\nGO'"));
    assert!(b[3].contains("select 3"));
}

#[test]
fn dml_and_ddl_parse() {
    let src = "
CREATE TABLE dbo.t (
  id INT IDENTITY(1,1) NOT NULL CONSTRAINT pk_t PRIMARY KEY CLUSTERED,
  name NVARCHAR(50) NOT NULL UNIQUE,
  amount DECIMAL(10, 2) NULL DEFAULT (0),
  created DATETIME2(3) NOT NULL DEFAULT SYSDATETIME(),
  parent INT NULL REFERENCES dbo.t (id) ON DELETE NO ACTION,
  CONSTRAINT ck_amount CHECK (amount >= 0),
  CONSTRAINT uq UNIQUE NONCLUSTERED (name, amount DESC)
) ON [PRIMARY]
INSERT INTO t (name, amount) OUTPUT inserted.id VALUES (N'a', 1.5), (N'b', DEFAULT)
INSERT t SELECT name, amount FROM t WHERE id > 1
UPDATE TOP (10) t SET amount += 1, name = name + N'!' FROM t JOIN t AS p ON p.id = t.parent WHERE t.id IN (1, 2, 3)
DELETE FROM t WHERE name LIKE N'a%' AND amount BETWEEN 1 AND 2
WITH c AS (SELECT id FROM t) SELECT DISTINCT TOP 5 c.id, x = 1 FROM c LEFT JOIN t ON t.id = c.id GROUP BY c.id HAVING COUNT(*) > 1 ORDER BY c.id DESC OFFSET 0 ROWS FETCH NEXT 10 ROWS ONLY
SELECT a FROM t UNION ALL SELECT b FROM u
CREATE UNIQUE NONCLUSTERED INDEX ix ON t (name) INCLUDE (amount) WHERE amount IS NOT NULL
DROP INDEX ix ON t
ALTER TABLE t ADD note NVARCHAR(MAX) NULL
ALTER TABLE t DROP COLUMN note
DROP TABLE IF EXISTS t, u
TRUNCATE TABLE t
SELECT CASE WHEN x IS NULL THEN 'n' ELSE CAST(x AS VARCHAR(10)) END, CONVERT(VARCHAR(30), GETDATE(), 120), ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) rn FROM t WITH (NOLOCK) WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.a = t.a)
";
    let k = kinds(src);
    assert_eq!(k.len(), 14);
    match &k[0] {
        StatementKind::CreateTable(ct) => {
            assert_eq!(ct.columns.len(), 5);
            assert_eq!(ct.constraints.len(), 2);
            assert_eq!(
                ct.columns[2].ty,
                Some(DataType::Decimal {
                    precision: 10,
                    scale: 2,
                    numeric: false
                })
            );
            assert!(ct.columns[0].constraints.iter().any(|c| matches!(
                c.constraint,
                ColumnConstraint::Identity(Identity {
                    seed: 1,
                    increment: 1
                })
            )));
        }
        other => panic!("{:?}", other),
    }
    match &k[1] {
        StatementKind::Insert(i) => {
            assert!(i.output.is_some());
            assert!(matches!(&i.source, InsertSource::Values(rows) if rows.len() == 2));
        }
        other => panic!("{:?}", other),
    }
}

#[test]
fn more_admin_statements() {
    let k = kinds(
        "EXEC sp_configure 'show advanced options', 1; RECONFIGURE WITH OVERRIDE
CREATE USER app FOR LOGIN app
CREATE USER nologin WITHOUT LOGIN
DROP USER IF EXISTS app
ALTER SERVER ROLE sysadmin ADD MEMBER [app]
ALTER ROLE db_owner DROP MEMBER app
BACKUP MASTER KEY TO FILE = '/tmp/mk' ENCRYPTION BY PASSWORD = 'p'
GRANT CONNECT ON ENDPOINT::[Hadr_endpoint] TO [app]
SHUTDOWN WITH NOWAIT",
    );
    assert_eq!(k.len(), 10);
    assert!(
        matches!(&k[1], StatementKind::Admin(a) if matches!(**a, Admin::Reconfigure { with_override: true }))
    );
    assert!(
        matches!(&k[2], StatementKind::Admin(a) if matches!(&**a, Admin::CreateUser { login: Some(l), .. } if l.value == "app"))
    );
    assert!(
        matches!(&k[5], StatementKind::Admin(a) if matches!(&**a, Admin::AlterRoleMember { server: true, add: true, .. }))
    );
    assert!(
        matches!(&k[8], StatementKind::Grant { text } if text == "GRANT CONNECT ON ENDPOINT::[Hadr_endpoint] TO [app]")
    );
    assert!(
        matches!(&k[9], StatementKind::Admin(a) if matches!(**a, Admin::Shutdown { nowait: true }))
    );
}

#[test]
fn create_procedure_takes_the_rest_of_the_batch() {
    let src = "CREATE PROCEDURE dbo.p @a INT = 5, @b NVARCHAR(10) OUTPUT AS\nBEGIN\n  SET @b = CAST(@a AS NVARCHAR(10))\nEND\nSELECT 1";
    let k = kinds(src);
    assert_eq!(k.len(), 1);
    match &k[0] {
        StatementKind::CreateProcedure {
            name,
            params,
            body,
            text,
            or_alter,
        } => {
            assert_eq!(name.dotted(), "dbo.p");
            assert_eq!(params.len(), 2);
            assert!(params[1].output && params[0].default.is_some());
            assert_eq!(body.len(), 2);
            assert!(text.starts_with("BEGIN") && text.ends_with("SELECT 1"));
            assert!(!or_alter);
        }
        other => panic!("{:?}", other),
    }
    // Statement spans slice the source.
    let stmts = parse_batch("PRINT 'a'\nSELECT 1 + 2 AS x;").unwrap();
    assert_eq!(
        &"PRINT 'a'\nSELECT 1 + 2 AS x;"[stmts[1].span.0..stmts[1].span.1],
        "SELECT 1 + 2 AS x"
    );
    assert_eq!(stmts[1].line, 2);
}

#[test]
fn grant_ends_after_its_principals() {
    let k = kinds("GRANT SELECT, INSERT ON dbo.t TO app, [other] WITH GRANT OPTION\nSELECT 1\nREVOKE EXECUTE ON SCHEMA::dbo FROM app CASCADE SELECT 2\nDENY CONNECT SQL TO [x]");
    assert_eq!(k.len(), 5);
    assert!(
        matches!(&k[0], StatementKind::Grant { text } if text == "GRANT SELECT, INSERT ON dbo.t TO app, [other] WITH GRANT OPTION")
    );
    assert!(matches!(&k[2], StatementKind::Grant { text } if text.ends_with("CASCADE")));
}
