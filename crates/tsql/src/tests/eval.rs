//! Evaluator typing and the seed's dynamic-SQL script end to end through parser + evaluator.

use crate::admin::{Admin, CertSource};
use crate::ast::*;
use crate::error::{Result, SqlError};
use crate::eval::{eval, eval_predicate, Context};
use crate::parser::{parse_batch, parse_expression, split_go};
use crate::value::{assign, Value};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
struct TestSession {
    vars: RefCell<HashMap<String, (crate::types::DataType, Value)>>,
    /// Admin statements "executed", with their evaluated certificate subject (if any).
    executed: RefCell<Vec<String>>,
    printed: RefCell<Vec<String>>,
}

impl Context for TestSession {
    fn variable(&self, name: &str) -> Option<Value> {
        self.vars
            .borrow()
            .get(&name.to_ascii_lowercase())
            .map(|v| v.1.clone())
    }
    fn global(&self, name: &str) -> Option<Value> {
        match name.to_ascii_uppercase().as_str() {
            "@@SERVERNAME" => Some(Value::NVarChar("sqlserver1".into())),
            "@@SPID" => Some(Value::SmallInt(52)),
            _ => None,
        }
    }
    fn function(&self, name: &str, args: &[Value]) -> Option<Result<Value>> {
        match name {
            "CERT_ID" => Some(Ok(
                if args[0].as_str() == Some("Cert_sqlserver1_endpoint") {
                    Value::Int(256)
                } else {
                    Value::Null
                },
            )),
            "CERTENCODED" => Some(Ok(match args[0] {
                Value::Int(256) => Value::Binary(vec![0x30, 0x82]),
                _ => Value::Null,
            })),
            _ => None,
        }
    }
}

impl TestSession {
    fn run_batch(&self, src: &str) -> Result<()> {
        for st in parse_batch(src)? {
            self.run(&st)?;
        }
        Ok(())
    }

    fn run(&self, st: &Statement) -> Result<()> {
        match &st.kind {
            StatementKind::Declare(ds) => {
                for d in ds {
                    if let Declaration::Scalar { name, ty, init } = d {
                        let v = match init {
                            Some(e) => assign(&eval(e, self)?, ty)?,
                            None => Value::Null,
                        };
                        self.vars
                            .borrow_mut()
                            .insert(name.to_ascii_lowercase(), (*ty, v));
                    }
                }
            }
            StatementKind::SetVariable { name, op, value } => {
                let ty = self
                    .vars
                    .borrow()
                    .get(&name.to_ascii_lowercase())
                    .map(|v| v.0)
                    .ok_or_else(|| SqlError::must_declare(name))?;
                let rhs = match op.binop() {
                    Some(b) => Expr::Binary {
                        op: b,
                        left: Box::new(Expr::Variable(name.clone())),
                        right: Box::new(value.clone()),
                    },
                    None => value.clone(),
                };
                let v = assign(&eval(&rhs, self)?, &ty)?;
                self.vars
                    .borrow_mut()
                    .insert(name.to_ascii_lowercase(), (ty, v));
            }
            StatementKind::Print(e) => {
                let v = eval(e, self)?;
                self.printed
                    .borrow_mut()
                    .push(v.to_text().unwrap_or_default());
            }
            StatementKind::If { cond, then, else_ } => {
                if eval_predicate(cond, self)? == Some(true) {
                    self.run(then)?;
                } else if let Some(e) = else_ {
                    self.run(e)?;
                }
            }
            StatementKind::Block(b) => {
                for s in b {
                    self.run(s)?;
                }
            }
            StatementKind::While { cond, body } => {
                let mut guard = 0;
                while eval_predicate(cond, self)? == Some(true) && guard < 1000 {
                    self.run(body)?;
                    guard += 1;
                }
            }
            StatementKind::Exec(e) if e.is_sp_executesql() => {
                let stmt = eval(&e.arg(0, "@stmt").unwrap().value, self)?;
                // Dynamic SQL runs as its own batch (own variable scope in SQL Server; shared here for the test).
                self.run_batch(stmt.as_str().unwrap())?;
            }
            StatementKind::Admin(a) => match &**a {
                Admin::CreateCertificate(c) => {
                    let subject = c
                        .subject
                        .as_ref()
                        .map(|s| eval(s, self))
                        .transpose()?
                        .and_then(|v| v.to_text());
                    let expiry = c
                        .expiry_date
                        .as_ref()
                        .map(|s| eval(s, self))
                        .transpose()?
                        .and_then(|v| v.to_text());
                    self.executed.borrow_mut().push(format!(
                        "CREATE CERTIFICATE {} subject={:?} expiry={:?} generated={}",
                        c.name.value,
                        subject.unwrap_or_default(),
                        expiry.unwrap_or_default(),
                        c.source == CertSource::Generate
                    ));
                }
                other => self
                    .executed
                    .borrow_mut()
                    .push(format!("{:?}", std::mem::discriminant(other))),
            },
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn seed_dynamic_certificate_script_end_to_end() {
    let script = "USE MASTER
GO

DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2025'''
EXEC sp_executesql @stmt = @create_sqlserver_certificate_command
GO
";
    let s = TestSession::default();
    for b in split_go(script) {
        s.run_batch(&b).unwrap();
    }
    assert_eq!(
        s.variable("@create_sqlserver_certificate_command").unwrap(),
        Value::NVarChar(
            "CREATE CERTIFICATE [Cert_sqlserver1_endpoint] WITH SUBJECT = 'Certificate for Cert_sqlserver1_endpoint', EXPIRY_DATE = '03/30/2025'"
                .into()
        )
    );
    assert_eq!(
        s.executed.borrow().as_slice(),
        ["CREATE CERTIFICATE Cert_sqlserver1_endpoint subject=\"Certificate for Cert_sqlserver1_endpoint\" expiry=\"03/30/2025\" generated=true"]
    );
    // The public-key script: CERTENCODED(CERT_ID(@name)) through the caller's functions.
    let s2 = TestSession::default();
    s2.run_batch(
        "DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));
PRINT CONVERT(VARCHAR(MAX), @PUBLICKEYENC, 1)",
    )
    .unwrap();
    assert_eq!(s2.printed.borrow().as_slice(), ["0x3082"]);
}

fn ev(src: &str) -> Result<Value> {
    eval(&parse_expression(src)?, &TestSession::default())
}

fn ok(src: &str) -> Value {
    ev(src).unwrap_or_else(|e| panic!("{}: {}", src, e))
}

fn err_no(src: &str) -> i32 {
    match ev(src) {
        Ok(v) => panic!("{} should fail, gave {:?}", src, v),
        Err(e) => e.number,
    }
}

#[test]
fn plus_typing() {
    assert_eq!(err_no("N'a' + 1"), 245);
    assert_eq!(ok("1 + '2'"), Value::Int(3));
    assert_eq!(ok("'a' + 'b'"), Value::VarChar("ab".into()));
    assert_eq!(ok("'a' + N'b'"), Value::NVarChar("ab".into()));
    assert_eq!(ok("'1.5' + 1.0").to_text().unwrap(), "2.5");
    assert_eq!(ok("1 + 2.50").to_text().unwrap(), "3.50");
    assert_eq!(ok("0x01 + 0x02"), Value::Binary(vec![1, 2]));
    assert_eq!(ok("N'x' + NULL"), Value::Null);
    assert_eq!(ev("'a' - 'b'").unwrap_err().number, 402);
    let msg = ev("N'abc' + 1").unwrap_err().message;
    assert_eq!(
        msg,
        "Conversion failed when converting the nvarchar value 'abc' to data type int."
    );
}

#[test]
fn exact_decimals_and_errors() {
    assert_eq!(ok("0.1 + 0.2").to_text().unwrap(), "0.3");
    assert_eq!(
        ok("CAST(0.1 AS DECIMAL(10,2)) * 3").to_text().unwrap(),
        "0.30"
    );
    assert_eq!(ok("1.0 / 3").to_text().unwrap(), "0.333333333333");
    assert_eq!(ok("$10.25 * 2"), Value::Money(20_5000));
    assert_eq!(err_no("1/0"), 8134);
    assert_eq!(err_no("1.5/0"), 8134);
    assert_eq!(err_no("1 % 0"), 8134);
    assert_eq!(err_no("2147483647 + 1"), 8115);
    assert_eq!(
        ok("2147483647 + CAST(1 AS BIGINT)"),
        Value::BigInt(2147483648)
    );
    assert_eq!(err_no("CAST(300 AS TINYINT)"), 8115);
    assert_eq!(err_no("CAST('abc' AS INT)"), 245);
    assert_eq!(err_no("CAST(123.456 AS DECIMAL(4,2))"), 8115);
    assert_eq!(ok("7 / 2"), Value::Int(3));
    assert_eq!(ok("-7 / 2"), Value::Int(-3));
    assert_eq!(ok("-7 % 3"), Value::Int(-1));
    assert_eq!(ok("1e0 / 4"), Value::Float(0.25));
    assert_eq!(ok("TRY_CAST('x' AS INT)"), Value::Null);
}

#[test]
fn functions() {
    let s = |x: &str| Value::VarChar(x.into());
    let n = |x: &str| Value::NVarChar(x.into());
    assert_eq!(ok("LEN('abc  ')"), Value::Int(3));
    assert_eq!(ok("DATALENGTH(N'ab')"), Value::Int(4));
    assert_eq!(ok("LEFT('abcdef', 2) + RIGHT('abcdef', 2)"), s("abef"));
    assert_eq!(ok("SUBSTRING(N'hello', 2, 3)"), n("ell"));
    assert_eq!(ok("SUBSTRING('hello', 0, 2)"), s("h"));
    assert_eq!(ok("SUBSTRING('hello', 4, 10)"), s("lo"));
    assert_eq!(
        ok("SUBSTRING(0x0A0B0C, 2, 5)"),
        Value::Binary(vec![0x0B, 0x0C])
    );
    assert_eq!(ok("SUBSTRING(0x0A0B0C, -1, 3)"), Value::Binary(vec![0x0A]));
    assert_eq!(ok("SUBSTRING(NULL, 1, -1)"), Value::Null);
    assert_eq!(ok("SUBSTRING('abc', NULL, 1)"), Value::Null);
    assert_eq!(err_no("SUBSTRING('abc', 1, -1)"), 537);
    assert_eq!(err_no("SUBSTRING(0x0A, 1, -1)"), 537);
    assert_eq!(
        ok("UPPER('a') + LOWER('B') + LTRIM('  x') + RTRIM('y  ')"),
        s("Abxy")
    );
    assert_eq!(ok("REPLACE('Hello hello', 'HELLO', 'bye')"), s("bye bye"));
    assert_eq!(ok("CHARINDEX('LO', 'hello')"), Value::Int(4));
    assert_eq!(ok("CONCAT('a', NULL, 1, N'b')"), n("a1b"));
    assert_eq!(ok("ISNULL(NULL, 5)"), Value::Int(5));
    assert_eq!(ok("COALESCE(NULL, NULL, 'z')"), s("z"));
    assert_eq!(ok("NULLIF(1, 1)"), Value::Null);
    assert_eq!(ok("IIF(1 < 2, 'y', 'n')"), s("y"));
    assert_eq!(
        ok("ABS(-5) + CEILING(1.2) + FLOOR(1.8)").to_text().unwrap(),
        "8"
    );
    assert_eq!(ok("ROUND(123.456, 2)").to_text().unwrap(), "123.460");
    assert_eq!(ok("ROUND(1234, -2)"), Value::Int(1200));
    assert_eq!(
        ok("YEAR('2026-11-27') * 10000 + MONTH('2026-11-27') * 100 + DAY('2026-11-27')"),
        Value::Int(20261127)
    );
    assert_eq!(
        ok("CONVERT(VARCHAR(30), DATEADD(day, 5, CAST('2026-02-26' AS DATE)), 120)"),
        s("2026-03-03")
    );
    assert_eq!(
        ok("CONVERT(VARCHAR(30), DATEADD(month, 1, CAST('2026-01-31' AS DATETIME)), 121)"),
        s("2026-02-28 00:00:00.000")
    );
    assert_eq!(
        ok("DATEDIFF(day, '2026-01-01', '2026-03-01')"),
        Value::Int(59)
    );
    assert_eq!(
        ok("DATEDIFF(year, '2025-12-31', '2026-01-01')"),
        Value::Int(1)
    );
    assert_eq!(
        ok("DATEDIFF(hour, '2026-01-01 10:59', '2026-01-01 11:00')"),
        Value::Int(1)
    );
    assert_eq!(ok("DATEPART(weekday, '2026-11-27')"), Value::Int(6));
    assert_eq!(ok("DATENAME(month, '2026-11-27')"), n("November"));
    assert_eq!(
        ok("CONVERT(VARCHAR(40), CAST('2026-11-27T13:05:09.1234567' AS DATETIME2), 126)"),
        s("2026-11-27T13:05:09.1234567")
    );
    assert_eq!(
        ok("CAST(CAST('2026-11-27 13:05:09.1234567' AS DATETIME2(3)) AS NVARCHAR(40))"),
        n("2026-11-27 13:05:09.123")
    );
    assert_eq!(ok("QUOTENAME('a]b')"), n("[a]]b]"));
    assert_eq!(ok("REPLICATE('ab', 3)"), s("ababab"));
    assert_eq!(ok("STUFF('abcdef', 2, 3, 'X')"), s("aXef"));
    assert_eq!(
        ok("CASE WHEN 1 = 0 THEN 'a' WHEN 'x' LIKE 'X%' THEN 'b' END"),
        s("b")
    );
    assert_eq!(
        ok("CASE 2 WHEN 1 THEN 'one' WHEN 2 THEN 'two' ELSE 'many' END"),
        s("two")
    );
    assert_eq!(ok("CAST('1' AS BIT)"), Value::Bit(true));
    assert_eq!(ev("NOSUCHFN(1)").unwrap_err().number, 195);
    assert_eq!(ev("@undeclared").unwrap_err().number, 137);
    assert_eq!(ev("somecolumn + 1").unwrap_err().number, 207);
    assert_eq!(ok("@@SPID"), Value::SmallInt(52));
}

#[test]
fn predicates() {
    let p = |src: &str| {
        eval_predicate(&parse_expression(src).unwrap(), &TestSession::default()).unwrap()
    };
    assert_eq!(p("'abc' = 'ABC  '"), Some(true));
    assert_eq!(p("NULL = NULL"), None);
    assert_eq!(p("NULL IS NULL"), Some(true));
    assert_eq!(p("1 IN (2, NULL)"), None);
    assert_eq!(p("1 NOT IN (2, 3)"), Some(true));
    assert_eq!(p("5 BETWEEN 1 AND 10 AND NOT 1 = 2"), Some(true));
    assert_eq!(p("'a_c' LIKE 'a[_]c'"), Some(true));
    assert_eq!(p("'abc' LIKE '%[^x]c'"), Some(true));
    assert_eq!(p("'100%' LIKE '100!%' ESCAPE '!'"), Some(true));
    assert_eq!(p("NULL = 1 OR 1 = 1"), Some(true));
    assert_eq!(p("NULL = 1 AND 1 = 0"), Some(false));
}

#[test]
fn control_flow_with_test_session() {
    let s = TestSession::default();
    s.run_batch(
        "DECLARE @i INT = 0, @acc NVARCHAR(20) = N''
WHILE @i < 5 BEGIN SET @i += 1; SET @acc = @acc + CAST(@i AS NVARCHAR(2)) END
IF @acc = N'12345' PRINT 'ok' ELSE PRINT 'bad'
DECLARE @short VARCHAR(3) = 'abcdef'
PRINT @short",
    )
    .unwrap();
    assert_eq!(s.printed.borrow().as_slice(), ["ok", "abc"]);
}

#[test]
fn patindex() {
    assert_eq!(ok("PATINDEX('%b_d%', 'abcde')"), Value::Int(2));
    assert_eq!(ok("PATINDEX('%[0-9]%', 'ab12')"), Value::Int(3));
    assert_eq!(ok("PATINDEX('ab%', 'abc')"), Value::Int(1));
    assert_eq!(ok("PATINDEX('%z%', 'abc')"), Value::Int(0));
    assert_eq!(ok("PATINDEX('%c', 'abc')"), Value::Int(3));
}

#[test]
fn dateformat_dmy_from_context() {
    struct Dmy;
    impl Context for Dmy {
        fn variable(&self, _: &str) -> Option<Value> {
            None
        }
        fn date_format_dmy(&self) -> bool {
            true
        }
    }
    let v = eval(
        &parse_expression("CAST('30/03/2025' AS DATE)").unwrap(),
        &Dmy,
    )
    .unwrap();
    assert_eq!(
        v,
        eval(
            &parse_expression("CAST('2025-03-30' AS DATE)").unwrap(),
            &Dmy
        )
        .unwrap()
    );
}

mod control_flow {
    use crate::ast::{Declaration, StatementKind};
    use crate::error::{Result, SqlError};
    use crate::eval::{eval, Context};
    use crate::parser::parse_batch;
    use crate::runtime::{compound_assign, eval_raiserror, run_statements, Flow, Session};
    use crate::types::DataType;
    use crate::value::{assign, Value};
    use std::collections::HashMap;

    #[derive(Default)]
    struct S {
        vars: HashMap<String, (DataType, Value)>,
        printed: Vec<String>,
        reported: Vec<i32>,
        catch: Option<SqlError>,
        cancel_after: Option<usize>,
    }

    impl Context for S {
        fn variable(&self, name: &str) -> Option<Value> {
            self.vars
                .get(&name.to_ascii_lowercase())
                .map(|v| v.1.clone())
        }
        fn function(&self, name: &str, _args: &[Value]) -> Option<Result<Value>> {
            match name {
                "ERROR_MESSAGE" => Some(Ok(self
                    .catch
                    .as_ref()
                    .map(|e| Value::NVarChar(e.message.clone()))
                    .unwrap_or(Value::Null))),
                "ERROR_NUMBER" => Some(Ok(self
                    .catch
                    .as_ref()
                    .map(|e| Value::Int(e.number))
                    .unwrap_or(Value::Null))),
                _ => None,
            }
        }
    }

    impl Session for S {
        fn execute(&mut self, st: &crate::ast::Statement) -> Result<()> {
            match &st.kind {
                StatementKind::Declare(ds) => {
                    for d in ds {
                        if let Declaration::Scalar { name, ty, init } = d {
                            let v = match init {
                                Some(e) => assign(&eval(e, self)?, ty)?,
                                None => Value::Null,
                            };
                            self.vars.insert(name.to_ascii_lowercase(), (*ty, v));
                        }
                    }
                }
                StatementKind::SetVariable { name, op, value } => {
                    let (ty, cur) = self
                        .vars
                        .get(&name.to_ascii_lowercase())
                        .cloned()
                        .ok_or_else(|| SqlError::must_declare(name))?;
                    let rhs = eval(value, self)?;
                    let v = compound_assign(*op, &cur, &rhs, &ty)?;
                    self.vars.insert(name.to_ascii_lowercase(), (ty, v));
                }
                StatementKind::Print(e) => {
                    let v = eval(e, self)?;
                    self.printed.push(v.to_text().unwrap_or_default());
                }
                StatementKind::Raiserror(r) => {
                    let e = eval_raiserror(r, self)?;
                    if e.severity >= 11 {
                        return Err(e);
                    }
                    self.printed.push(e.message);
                }
                _ => {}
            }
            Ok(())
        }
        fn report_error(&mut self, err: &SqlError) -> bool {
            self.reported.push(err.number);
            // Example policy: conversion errors end the batch, others only the statement.
            err.number != 245
        }
        fn set_catch_error(&mut self, err: Option<SqlError>) {
            self.catch = err;
        }
        fn cancelled(&self) -> bool {
            self.cancel_after.is_some_and(|n| self.printed.len() >= n)
        }
    }

    #[test]
    fn while_try_catch_throw_return() {
        let src = "DECLARE @i INT = 0, @log NVARCHAR(200) = N''
WHILE 1 = 1
BEGIN
  SET @i += 1
  IF @i = 2 CONTINUE
  IF @i > 4 BREAK
  SET @log = @log + CAST(@i AS NVARCHAR(5))
END
BEGIN TRY
  SET @log = @log + N'|try'
  RAISERROR('bad %d', 16, 1, 42)
  SET @log = @log + N'|not reached'
END TRY
BEGIN CATCH
  SET @log = @log + N'|catch:' + ERROR_MESSAGE()
END CATCH
PRINT @log
SET @i = 1/0
PRINT 'after'
BEGIN TRY THROW 50001, 'x', 1 END TRY BEGIN CATCH BEGIN TRY THROW; END TRY BEGIN CATCH PRINT ERROR_MESSAGE() END CATCH END CATCH
RAISERROR('note', 5, 1)
RETURN
PRINT 'never'";
        let stmts = parse_batch(src).unwrap();
        let mut s = S::default();
        let flow = run_statements(&mut s, &stmts);
        assert_eq!(flow, Flow::Return(None));
        assert_eq!(
            s.printed,
            vec!["134|try|catch:bad 42", "after", "x", "note"]
        );
        assert_eq!(s.reported, vec![8134]);
        assert!(s.catch.is_none());

        // A batch-ending error (by the session's policy) stops the batch; THROW outside TRY always does.
        let mut s = S::default();
        let stmts = parse_batch("DECLARE @i INT\nSET @i = 'x'\nPRINT 'no'").unwrap();
        assert_eq!(run_statements(&mut s, &stmts), Flow::Aborted);
        assert_eq!(s.reported, vec![245]);
        assert!(s.printed.is_empty());
        let mut s = S::default();
        let stmts = parse_batch("PRINT 'a';\nTHROW 50000, 'stop', 1;\nPRINT 'b'").unwrap();
        assert_eq!(run_statements(&mut s, &stmts), Flow::Aborted);
        assert_eq!(s.printed, vec!["a"]);
        assert_eq!(s.reported, vec![50000]);
        // An endless loop ends when the session reports cancellation (ATTENTION).
        let mut s = S {
            cancel_after: Some(3),
            ..S::default()
        };
        let stmts = parse_batch(
            "WHILE 1 = 1 BEGIN TRY PRINT 'tick' END TRY BEGIN CATCH END CATCH PRINT 'no'",
        )
        .unwrap();
        assert_eq!(run_statements(&mut s, &stmts), Flow::Aborted);
        assert_eq!(s.printed.len(), 3);
        let mut s = S::default();
        let stmts = parse_batch("THROW").unwrap();
        run_statements(&mut s, &stmts);
        assert_eq!(s.reported, vec![10704]);
    }
}
