//! sp_describe_undeclared_parameters: ODBC's SQLDescribeParam (mssql-python asks it for the type of a NULL
//! parameter). The result has SQL Server's 24 columns; types are deduced from the statement the simple ways
//! SQL Server does (a column compared with or assigned the parameter, an INSERT value list), else nvarchar(4000).

use crate::exec::{Conn, Out};
use tsql::lexer::{tokenize, Tok, Token};
use tsql::types::Len;
use tsql::{DataType, SqlError, Value};

/// (system_type_id, max_length, precision, scale, tds_type_id, tds_length)
pub(crate) fn type_facts(t: &DataType) -> (i32, i16, u8, u8, i32, i32) {
    use DataType::*;
    let var = |n: &Len, unit: i32| match n {
        Len::Max => (-1i16, 65535),
        Len::N(n) => ((*n as i32 * unit) as i16, *n as i32 * unit),
    };
    match t {
        Bit => (104, 1, 1, 0, 104, 1),
        TinyInt => (48, 1, 3, 0, 38, 1),
        SmallInt => (52, 2, 5, 0, 38, 2),
        Int => (56, 4, 10, 0, 38, 4),
        BigInt => (127, 8, 19, 0, 38, 8),
        Decimal {
            precision,
            scale,
            numeric,
        } => {
            let len = match precision {
                0..=9 => 5,
                10..=19 => 9,
                20..=28 => 13,
                _ => 17,
            };
            let id = if *numeric { 108 } else { 106 };
            (id, len, *precision, *scale, id, 17)
        }
        Money => (60, 8, 19, 4, 110, 8),
        SmallMoney => (122, 4, 10, 4, 110, 4),
        Float => (62, 8, 53, 0, 109, 8),
        Real => (59, 4, 24, 0, 109, 4),
        Char(n) => (175, *n as i16, 0, 0, 175, *n as i32),
        NChar(n) => (239, (*n * 2) as i16, 0, 0, 239, *n as i32 * 2),
        Binary(n) => (173, *n as i16, 0, 0, 173, *n as i32),
        VarChar(n) => {
            let (m, l) = var(n, 1);
            (167, m, 0, 0, 167, l)
        }
        NVarChar(n) => {
            let (m, l) = var(n, 2);
            (231, m, 0, 0, 231, l)
        }
        SysName => (231, 256, 0, 0, 231, 256),
        VarBinary(n) => {
            let (m, l) = var(n, 1);
            (165, m, 0, 0, 165, l)
        }
        Date => (40, 3, 10, 0, 40, 3),
        Time(s) => (41, 5, 16, *s, 41, 5),
        DateTime => (61, 8, 23, 3, 111, 8),
        SmallDateTime => (58, 4, 16, 0, 111, 4),
        DateTime2(s) => (42, 8, 27, *s, 42, 8),
        DateTimeOffset(s) => (43, 10, 34, *s, 43, 10),
        UniqueIdentifier => (36, 16, 0, 0, 36, 16),
        Text => (35, 16, 0, 0, 35, 16),
        NText => (99, 16, 0, 0, 99, 16),
        Image => (34, 16, 0, 0, 34, 16),
        Xml => (241, -1, 0, 0, 241, 65535),
        SqlVariant => (98, 8016, 0, 0, 98, 8016),
    }
}

fn word(t: &Token) -> Option<&str> {
    match &t.tok {
        Tok::Word(w) | Tok::QuotedId(w) => Some(w.as_str()),
        _ => None,
    }
}

/// The last part of a (possibly qualified) name ending at token `end` (inclusive).
fn name_ending_at(toks: &[Token], end: usize) -> Option<String> {
    word(&toks[end]).map(str::to_string)
}

/// The (possibly qualified) table name starting at `i`; returns (last part, index after it).
fn table_at(toks: &[Token], mut i: usize) -> Option<(String, usize)> {
    let mut last = word(toks.get(i)?)?.to_string();
    i += 1;
    while matches!(toks.get(i).map(|t| &t.tok), Some(Tok::Dot)) {
        last = word(toks.get(i + 1)?)?.to_string();
        i += 2;
    }
    Some((last, i))
}

pub fn run(
    conn: &mut Conn,
    args: &[(Option<String>, Value)],
    out: &mut Vec<Out>,
) -> Result<i32, SqlError> {
    let arg = |pos: usize, name: &str| {
        args.iter()
            .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .or_else(|| args.get(pos).filter(|(n, _)| n.is_none()))
            .map(|(_, v)| crate::exec::display(v))
    };
    let Some(sql) = arg(0, "@tsql") else {
        return Err(SqlError::new(
            201,
            16,
            "Procedure or function 'sp_describe_undeclared_parameters' expects parameter '@tsql', which was not supplied.",
        ));
    };
    let declared: Vec<String> = match arg(1, "@params") {
        Some(p) if !p.trim().is_empty() => tsql::parse_param_definitions(&p)?
            .into_iter()
            .map(|d| d.name.to_lowercase())
            .collect(),
        _ => vec![],
    };
    let toks = tokenize(&sql)?;
    // Undeclared variables in order of first use (DECLAREd ones are the batch's own).
    let mut locals: Vec<String> = Vec::new();
    let mut in_declare = false;
    for (i, t) in toks.iter().enumerate() {
        if t.is_word("DECLARE") {
            in_declare = true;
            continue;
        }
        if let Tok::Var(v) = &t.tok {
            let prev_ok =
                i > 0 && (toks[i - 1].is_word("DECLARE") || toks[i - 1].tok == Tok::Comma);
            if in_declare && prev_ok {
                locals.push(v.to_lowercase());
            }
        }
        if matches!(t.tok, Tok::Semi) || t.is_word("SELECT") || t.is_word("SET") {
            in_declare = false;
        }
    }
    let mut names: Vec<String> = Vec::new();
    for t in &toks {
        if let Tok::Var(v) = &t.tok {
            let k = v.to_lowercase();
            if !declared.contains(&k)
                && !locals.contains(&k)
                && !names.iter().any(|n| n.eq_ignore_ascii_case(v))
            {
                names.push(v.clone());
            }
        }
    }
    // Tables the statement mentions, with their declared columns.
    let mut tables: Vec<Vec<(String, DataType)>> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if let Some(w) = word(t) {
            if let Some(cols) = conn.table_columns(w) {
                let _ = i;
                tables.push(cols);
            }
        }
    }
    let column_type = |col: &str| -> Option<DataType> {
        tables.iter().find_map(|cols| {
            cols.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(col))
                .map(|(_, t)| *t)
        })
    };
    let mut types: Vec<Option<DataType>> = vec![None; names.len()];
    let idx = |v: &str| names.iter().position(|n| n.eq_ignore_ascii_case(v));
    // INSERT [INTO] t [(cols)] VALUES (…, @p, …)
    let mut i = 0;
    while i < toks.len() {
        if toks[i].is_word("INSERT") {
            let mut j = i + 1;
            if toks.get(j).is_some_and(|t| t.is_word("INTO")) {
                j += 1;
            }
            if let Some((table, after)) = table_at(&toks, j) {
                let table_cols = conn.table_columns(&table).unwrap_or_default();
                let identity = conn.table_identity(&table);
                let mut cols: Vec<String> = Vec::new();
                let mut k = after;
                if matches!(toks.get(k).map(|t| &t.tok), Some(Tok::LParen)) {
                    k += 1;
                    while let Some(t) = toks.get(k) {
                        match &t.tok {
                            Tok::RParen => break,
                            Tok::Word(w) | Tok::QuotedId(w) => cols.push(w.clone()),
                            _ => {}
                        }
                        k += 1;
                    }
                    k += 1;
                } else {
                    cols = table_cols
                        .iter()
                        .map(|(n, _)| n.clone())
                        .filter(|n| {
                            identity
                                .as_deref()
                                .is_none_or(|id| !id.eq_ignore_ascii_case(n))
                        })
                        .collect();
                }
                if toks.get(k).is_some_and(|t| t.is_word("VALUES")) {
                    k += 1;
                    // each row: ( e1, e2, … ); only bare variables are typed
                    while matches!(toks.get(k).map(|t| &t.tok), Some(Tok::LParen)) {
                        let mut pos = 0;
                        let mut depth = 0;
                        let mut bare = true;
                        let mut var: Option<String> = None;
                        k += 1;
                        while let Some(t) = toks.get(k) {
                            match &t.tok {
                                Tok::LParen => {
                                    depth += 1;
                                    bare = false;
                                }
                                Tok::RParen if depth == 0 => break,
                                Tok::RParen => depth -= 1,
                                Tok::Comma if depth == 0 => {
                                    if let (true, Some(v)) = (bare, var.take()) {
                                        if let (Some(p), Some(c)) = (idx(&v), cols.get(pos)) {
                                            types[p] = types[p].take().or_else(|| column_type(c));
                                        }
                                    }
                                    pos += 1;
                                    bare = true;
                                    var = None;
                                }
                                Tok::Var(v) if var.is_none() && depth == 0 => var = Some(v.clone()),
                                _ => bare = false,
                            }
                            k += 1;
                        }
                        if let (true, Some(v)) = (bare, var.take()) {
                            if let (Some(p), Some(c)) = (idx(&v), cols.get(pos)) {
                                types[p] = types[p].take().or_else(|| column_type(c));
                            }
                        }
                        k += 1;
                        if matches!(toks.get(k).map(|t| &t.tok), Some(Tok::Comma)) {
                            k += 1;
                        }
                    }
                }
                i = k;
                continue;
            }
        }
        i += 1;
    }
    // column <op> @p  /  @p <op> column  (also SET column = @p)
    for (i, t) in toks.iter().enumerate() {
        let Tok::Op(op) = &t.tok else { continue };
        if !matches!(
            *op,
            "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=" | "!<" | "!>"
        ) {
            continue;
        }
        let (Some(l), Some(r)) = (i.checked_sub(1).map(|j| &toks[j]), toks.get(i + 1)) else {
            continue;
        };
        let pair = match (&l.tok, &r.tok) {
            (_, Tok::Var(v)) => name_ending_at(&toks, i - 1).map(|c| (v.clone(), c)),
            (Tok::Var(v), _) => name_ending_at(&toks, i + 1).map(|c| (v.clone(), c)),
            _ => None,
        };
        if let Some((v, c)) = pair {
            if let Some(p) = idx(&v) {
                if types[p].is_none() {
                    types[p] = column_type(&c);
                }
            }
        }
    }

    let sysname = DataType::SysName;
    let nv = |n| DataType::NVarChar(Len::N(n));
    let cols: Vec<(String, DataType)> = vec![
        ("parameter_ordinal".into(), DataType::Int),
        ("name".into(), sysname),
        ("suggested_system_type_id".into(), DataType::Int),
        ("suggested_system_type_name".into(), nv(256)),
        ("suggested_max_length".into(), DataType::SmallInt),
        ("suggested_precision".into(), DataType::TinyInt),
        ("suggested_scale".into(), DataType::TinyInt),
        ("suggested_user_type_id".into(), DataType::Int),
        ("suggested_user_type_database".into(), sysname),
        ("suggested_user_type_schema".into(), sysname),
        ("suggested_user_type_name".into(), sysname),
        ("suggested_assembly_qualified_type_name".into(), nv(4000)),
        ("suggested_xml_collection_id".into(), DataType::Int),
        ("suggested_xml_collection_database".into(), sysname),
        ("suggested_xml_collection_schema".into(), sysname),
        ("suggested_xml_collection_name".into(), sysname),
        ("suggested_is_xml_document".into(), DataType::Bit),
        ("suggested_is_case_sensitive".into(), DataType::Bit),
        ("suggested_is_fixed_length_type".into(), DataType::Bit),
        ("suggested_is_input".into(), DataType::Bit),
        ("suggested_is_output".into(), DataType::Bit),
        ("formal_parameter_name".into(), sysname),
        ("suggested_tds_type_id".into(), DataType::Int),
        ("suggested_tds_length".into(), DataType::Int),
    ];
    out.push(Out::Columns(cols));
    let n = names.len();
    for (i, (name, ty)) in names.into_iter().zip(types).enumerate() {
        let ty = ty.unwrap_or(DataType::NVarChar(Len::N(4000)));
        let (id, max_len, prec, scale, tds_id, tds_len) = type_facts(&ty);
        let fixed = !matches!(
            ty,
            DataType::VarChar(_)
                | DataType::NVarChar(_)
                | DataType::VarBinary(_)
                | DataType::SysName
                | DataType::Xml
                | DataType::Text
                | DataType::NText
                | DataType::Image
        );
        let type_name = match &ty {
            DataType::SysName => "nvarchar(128)".to_string(),
            t => t.to_string(),
        };
        out.push(Out::Row(vec![
            Value::Int(i as i32 + 1),
            Value::NVarChar(name),
            Value::Int(id),
            Value::NVarChar(type_name),
            Value::SmallInt(max_len),
            Value::TinyInt(prec),
            Value::TinyInt(scale),
            Value::Int(id),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Bit(false),
            Value::Bit(false),
            Value::Bit(fixed),
            Value::Bit(true),
            Value::Bit(false),
            Value::Null,
            Value::Int(tds_id),
            Value::Int(tds_len),
        ]));
    }
    conn.out_done(out, Some(n as u64));
    Ok(0)
}
