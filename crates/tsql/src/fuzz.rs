//! Fuzz entry points: each takes arbitrary bytes and must never panic, whatever they are. A cargo-fuzz or
//! AFL harness calls these directly; the unit tests below replay `fuzz/corpus/`, a deterministic stream of
//! mutations and randomly generated typed expressions, so CI exercises them on every run.
//!
//! Long runs (minutes) use the same tests with more iterations and other seeds, e.g.
//! `TSQL_FUZZ_SEED=7 TSQL_FUZZ_ITERS=1000000 cargo test -p tsql --release fuzz::`. A crashing input is added
//! to `fuzz/corpus/` so the replay test keeps it fixed.

use crate::error::Result;
use crate::eval::Context;
use crate::storage::{call_function, to_stored, PURE_FUNCTIONS};
use crate::translate::Catalog;
use crate::types::{DataType, Len};
use crate::value::Value;

/// Inputs past this size are cut: the parser is linear, but some built-ins (PATINDEX, LIKE) are not.
const MAX_INPUT: usize = 8 * 1024;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(MAX_INPUT)]).into_owned()
}

pub fn lex(data: &[u8]) {
    let _ = crate::lexer::tokenize(&text(data));
}

/// Parses a batch (and its GO split), then translates every statement against a small catalog.
pub fn parse_batch(data: &[u8]) {
    let s = text(data);
    let _ = crate::parser::split_go(&s);
    if let Ok(stmts) = crate::parser::parse_batch(&s) {
        for st in &stmts {
            let _ = crate::translate::translate(st, &FuzzCatalog);
            let _ = crate::analysis::referenced_tables(&st.kind);
            let _ = st.kind.is_write();
            if let crate::ast::StatementKind::Query(q) = &st.kind {
                let _ = crate::eval::tableless_select(q);
            }
            // Debug formatting walks the whole tree: it must not overflow either.
            let _ = format!("{:?}", st).len();
        }
    }
    let _ = crate::parser::parse_param_definitions(&s);
    let _ = crate::parser::parse_data_type(&s);
}

/// Parses and evaluates a scalar expression with a few variables, then feeds the result through the stored
/// representation and the pure SQL functions.
pub fn eval(data: &[u8]) {
    let s = text(data);
    let expr = match crate::parser::parse_expression(&s) {
        Ok(e) => e,
        Err(_) => return,
    };
    let v = match crate::eval::eval(&expr, &FuzzContext) {
        Ok(v) => v,
        Err(_) => return,
    };
    let _ = v.to_text();
    let _ = crate::runtime::format_raiserror(&s, std::slice::from_ref(&v));
    let stored = to_stored(&v);
    if let Some(t) = v.data_type() {
        let _ = crate::storage::from_stored(&stored, Some(&t));
    }
    // One pure function chosen by the input, applied to the value and its text.
    let idx = data
        .iter()
        .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(*b as usize))
        % PURE_FUNCTIONS.len();
    let (name, argc) = PURE_FUNCTIONS[idx];
    let n = if argc < 0 { 2 } else { argc as usize };
    let args: Vec<_> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                stored.clone()
            } else {
                to_stored(&Value::VarChar(s.chars().take(40).collect()))
            }
        })
        .collect();
    let _ = call_function(name, &args);
}

struct FuzzContext;
impl Context for FuzzContext {
    fn variable(&self, name: &str) -> Option<Value> {
        match name.to_ascii_lowercase().as_str() {
            "@i" => Some(Value::Int(7)),
            "@s" => Some(Value::NVarChar("Cert_x".into())),
            "@d" => Some(Value::Decimal(crate::decimal::Decimal::new(12345, 10, 2))),
            "@n" => Some(Value::Null),
            _ => None,
        }
    }
    fn global(&self, name: &str) -> Option<Value> {
        name.eq_ignore_ascii_case("@@servername")
            .then(|| Value::NVarChar("srv".into()))
    }
    fn function(&self, name: &str, _args: &[Value]) -> Option<Result<Value>> {
        (name == "GETDATE").then(|| {
            crate::value::convert(
                &Value::VarChar("2026-11-27 13:00".into()),
                &DataType::DateTime,
                None,
            )
        })
    }
}

struct FuzzCatalog;
impl Catalog for FuzzCatalog {
    fn column_types(&self, table: &str) -> Option<Vec<(String, DataType)>> {
        table.eq_ignore_ascii_case("t").then(|| {
            vec![
                ("id".to_string(), DataType::Int),
                ("name".to_string(), DataType::NVarChar(Len::N(20))),
                (
                    "amount".to_string(),
                    DataType::Decimal {
                        precision: 10,
                        scale: 2,
                        numeric: false,
                    },
                ),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Tokens spliced into inputs so mutations reach deep into the grammar.
    const DICT: &[&str] = &[
        "SELECT ",
        "FROM ",
        "WHERE ",
        " + ",
        " - ",
        " * ",
        " / ",
        "(",
        ")",
        ",",
        "'",
        "N'",
        "[",
        "]",
        "\"",
        "@i",
        "@@servername",
        "0x",
        "1",
        "2147483647",
        "9999999999999999999999999999999999999999",
        "1.5",
        "1e308",
        "$",
        "--",
        "/*",
        "*/",
        "\n",
        "GO\n",
        "BEGIN ",
        "END ",
        "IF ",
        "ELSE ",
        "CASE WHEN ",
        " THEN ",
        " END",
        "CAST(",
        " AS ",
        "CONVERT(",
        "DATEADD(day,",
        "LEFT(",
        "SUBSTRING(",
        "REPLICATE(",
        "LIKE '",
        "[^a-",
        "%",
        "_",
        "CREATE ENDPOINT e ",
        "AS TCP (",
        "LISTENER_IP = (",
        "FOR DATABASE_MIRRORING (",
        "CREATE AVAILABILITY GROUP ",
        "WITH (",
        "REPLICA ON ",
        "BACKUP LOG d TO DISK = ",
        "DECLARE @x ",
        "NVARCHAR(MAX)",
        "DECIMAL(38,38)",
        "DATETIME2(7)",
        "INSERT INTO t ",
        "VALUES ",
        "UPDATE t SET ",
        "DELETE ",
        "OUTPUT inserted.*",
        "TOP ",
        "ORDER BY ",
        "OFFSET 1 ROWS",
        "EXEC ",
        "sp_executesql ",
        "= ",
        ";",
        "NULL",
        "NOT ",
        " AND ",
        " OR ",
        " IN (",
        " BETWEEN ",
        " IS NULL",
        "-2147483648",
        "'2026-02-30'",
        "'23:59:59.9999999'",
        "'9999-12-31'",
        "'0001-01-01'",
        "DATEDIFF(nanosecond,",
        "ROUND(",
        ",-40)",
        "POWER(",
        "EOMONTH(",
        "QUOTENAME(",
    ];

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*: deterministic, so a failure replays exactly.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545F4914F6CDD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn corpus() -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    fn mutate(rng: &mut Rng, base: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(v.len() + 1);
                    let tok = DICT[rng.below(DICT.len())].as_bytes();
                    v.splice(i..i, tok.iter().copied());
                }
                2 if !v.is_empty() => {
                    let a = rng.below(v.len());
                    let b = (a + rng.below(16)).min(v.len());
                    v.drain(a..b);
                }
                3 if !corpus.is_empty() => {
                    let other = &corpus[rng.below(corpus.len())];
                    let cut = rng.below(v.len() + 1);
                    let from = rng.below(other.len() + 1);
                    v.truncate(cut);
                    v.extend_from_slice(&other[from..]);
                }
                4 if !v.is_empty() => v.truncate(rng.below(v.len())),
                _ => {
                    let i = rng.below(v.len() + 1);
                    v.insert(i, rng.below(256) as u8);
                }
            }
        }
        v
    }

    fn run_all(input: &[u8]) {
        lex(input);
        parse_batch(input);
        eval(input);
    }

    #[test]
    fn corpus_replays_without_panic() {
        let corpus = corpus();
        assert!(corpus.len() >= 10, "fuzz corpus missing");
        for c in &corpus {
            run_all(c);
        }
    }

    /// The generator and iteration count: TSQL_FUZZ_SEED / TSQL_FUZZ_ITERS override the fixed defaults.
    fn fuzz_run(default_seed: u64) -> (Rng, u64) {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
        let seed = env("TSQL_FUZZ_SEED").unwrap_or(default_seed);
        (Rng(seed | 1), env("TSQL_FUZZ_ITERS").unwrap_or(3000))
    }

    #[test]
    fn deterministic_mutations_without_panic() {
        let corpus = corpus();
        let (mut rng, n) = fuzz_run(0x5eed_7501_2026_1127);
        for _ in 0..n {
            let base = if corpus.is_empty() {
                Vec::new()
            } else {
                corpus[rng.below(corpus.len())].clone()
            };
            let input = mutate(&mut rng, &base, &corpus);
            run_all(&input);
        }
    }

    const FUNCS: &[&str] = &[
        "LEN",
        "DATALENGTH",
        "LEFT",
        "RIGHT",
        "SUBSTRING",
        "UPPER",
        "LOWER",
        "LTRIM",
        "RTRIM",
        "TRIM",
        "REVERSE",
        "REPLACE",
        "CHARINDEX",
        "PATINDEX",
        "CONCAT",
        "CONCAT_WS",
        "REPLICATE",
        "SPACE",
        "STUFF",
        "CHAR",
        "NCHAR",
        "ASCII",
        "UNICODE",
        "QUOTENAME",
        "STR",
        "ISNULL",
        "NULLIF",
        "CHOOSE",
        "ISNUMERIC",
        "ISDATE",
        "ABS",
        "SIGN",
        "CEILING",
        "FLOOR",
        "ROUND",
        "POWER",
        "SQRT",
        "SQUARE",
        "EXP",
        "LOG",
        "LOG10",
        "PI",
        "YEAR",
        "MONTH",
        "DAY",
        "EOMONTH",
        "DATEFROMPARTS",
        "COALESCE",
        "IIF",
        "GETDATE",
    ];
    const ATOMS: &[&str] = &[
        "NULL",
        "0",
        "1",
        "-1",
        "2147483647",
        "-2147483648",
        "9223372036854775807",
        "99999999999999999999999999999999999999",
        "0.5",
        "-12.345",
        "1e308",
        "-1e-308",
        "$922337203685477.5807",
        "'abc'",
        "N'ÿ€'",
        "''",
        "' x '",
        "'2026-02-28'",
        "'12:30'",
        "'1.5'",
        "'abc%'",
        "'[a-'",
        "0x",
        "0xFF00",
        "@i",
        "@s",
        "@d",
        "@n",
        "@@servername",
        "CAST('9999-12-31' AS DATETIME2)",
        "CAST('0001-01-01' AS DATE)",
        "CAST(1 AS BIT)",
        "CAST(255 AS TINYINT)",
        "CAST('6F9619FF-8B86-D011-B42D-00C04FC964FF' AS UNIQUEIDENTIFIER)",
        "CAST(1.5 AS MONEY)",
        "CAST(0.1 AS REAL)",
        "CAST('2026-11-27 10:00 +05:00' AS DATETIMEOFFSET)",
        "CAST('23:59:59.9999999' AS TIME)",
    ];
    const TYPES: &[&str] = &[
        "INT",
        "BIGINT",
        "TINYINT",
        "SMALLINT",
        "BIT",
        "DECIMAL(38,38)",
        "DECIMAL(5,2)",
        "NUMERIC(38,0)",
        "MONEY",
        "SMALLMONEY",
        "FLOAT",
        "REAL",
        "VARCHAR(3)",
        "NVARCHAR(MAX)",
        "CHAR(2)",
        "VARBINARY(4)",
        "BINARY(2)",
        "DATE",
        "TIME(0)",
        "DATETIME",
        "SMALLDATETIME",
        "DATETIME2(3)",
        "DATETIMEOFFSET",
        "UNIQUEIDENTIFIER",
        "SYSNAME",
    ];
    const PARTS: &[&str] = &[
        "year",
        "quarter",
        "month",
        "dayofyear",
        "day",
        "week",
        "weekday",
        "hour",
        "minute",
        "second",
        "millisecond",
        "microsecond",
        "nanosecond",
        "tzoffset",
        "iso_week",
        "bogus",
    ];

    fn gen_expr(rng: &mut Rng, depth: usize) -> String {
        if depth == 0 {
            return ATOMS[rng.below(ATOMS.len())].to_string();
        }
        match rng.below(9) {
            0 | 1 => {
                let f = FUNCS[rng.below(FUNCS.len())];
                let n = rng.below(5);
                let args: Vec<String> = (0..n).map(|_| gen_expr(rng, depth - 1)).collect();
                format!("{}({})", f, args.join(", "))
            }
            2 => {
                let ops = ["+", "-", "*", "/", "%", "&", "|", "^"];
                format!(
                    "({} {} {})",
                    gen_expr(rng, depth - 1),
                    ops[rng.below(ops.len())],
                    gen_expr(rng, depth - 1)
                )
            }
            3 => format!(
                "CAST({} AS {})",
                gen_expr(rng, depth - 1),
                TYPES[rng.below(TYPES.len())]
            ),
            4 => {
                let styles = [
                    "0", "1", "2", "101", "103", "112", "120", "121", "126", "127", "999",
                ];
                format!(
                    "CONVERT({}, {}, {})",
                    TYPES[rng.below(TYPES.len())],
                    gen_expr(rng, depth - 1),
                    styles[rng.below(styles.len())]
                )
            }
            5 => {
                let f = [
                    "DATEADD",
                    "DATEDIFF",
                    "DATEDIFF_BIG",
                    "DATEPART",
                    "DATENAME",
                ][rng.below(5)];
                let part = PARTS[rng.below(PARTS.len())];
                if f == "DATEPART" || f == "DATENAME" {
                    format!("{}({}, {})", f, part, gen_expr(rng, depth - 1))
                } else {
                    format!(
                        "{}({}, {}, {})",
                        f,
                        part,
                        gen_expr(rng, depth - 1),
                        gen_expr(rng, depth - 1)
                    )
                }
            }
            6 => format!(
                "CASE WHEN {} LIKE {} THEN {} ELSE {} END",
                gen_expr(rng, depth - 1),
                gen_expr(rng, depth - 1),
                gen_expr(rng, depth - 1),
                gen_expr(rng, depth - 1)
            ),
            7 => format!("-{}", gen_expr(rng, depth - 1)),
            _ => format!(
                "TRY_CAST({} AS {})",
                gen_expr(rng, depth - 1),
                TYPES[rng.below(TYPES.len())]
            ),
        }
    }

    #[test]
    fn random_typed_expressions_without_panic() {
        let (mut rng, n) = fuzz_run(0x000d_ec13_a10f_5eed);
        for _ in 0..n {
            let d = 1 + rng.below(3);
            let e = gen_expr(&mut rng, d);
            eval(e.as_bytes());
            // The same expression inside a statement goes through translation.
            parse_batch(format!("SELECT {} AS x FROM t WHERE amount > {}", e, e).as_bytes());
        }
    }

    #[test]
    fn pathological_nesting_is_an_error_not_a_crash() {
        let deep_parens = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        let e = crate::parser::parse_batch(&deep_parens).unwrap_err();
        assert_eq!(e.number, 191);
        let long_chain = format!("SELECT 1{}", " + 1".repeat(5000));
        assert_eq!(
            crate::parser::parse_batch(&long_chain).unwrap_err().number,
            191
        );
        let deep_if = "IF 1=1 ".repeat(3000) + "PRINT 1";
        assert_eq!(
            crate::parser::parse_batch(&deep_if).unwrap_err().number,
            191
        );
        let neg = format!("SELECT {}1", "- ".repeat(5000));
        assert_eq!(crate::parser::parse_batch(&neg).unwrap_err().number, 191);
        let opts = format!("CREATE AVAILABILITY GROUP a WITH {}", "(x ".repeat(5000));
        assert!(crate::parser::parse_batch(&opts).is_err());
        // Within the budget the tree can still be evaluated and translated.
        let ok_chain = format!("SELECT 1{}", " + 1".repeat(300));
        let stmts = crate::parser::parse_batch(&ok_chain).unwrap();
        assert!(crate::translate::translate(&stmts[0], &FuzzCatalog).is_ok());
        run_all(ok_chain.as_bytes());
    }
}
