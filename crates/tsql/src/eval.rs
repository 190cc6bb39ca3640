//! Evaluator for expressions that need no table: what DECLARE, SET, IF, WHILE, PRINT, RAISERROR and EXEC
//! arguments evaluate. Session state (variables, @@globals, instance functions) comes from a [`Context`].

use crate::ast::{BinOp, Expr, Literal, Query, UnaryOp};
use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::types::{DataType, Len};
use crate::value::{compare, convert, implicit_convert, parse_datetime_text, Value};
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Timelike};
use std::cmp::Ordering;

/// What the session layer supplies to the evaluator.
pub trait Context {
    /// A declared variable's current value, by name with '@' (case-insensitive lookup is the caller's choice;
    /// SQL Server's default collation makes variable names case-insensitive). None: not declared (error 137).
    fn variable(&self, name: &str) -> Option<Value>;
    /// @@SERVERNAME, @@SPID, @@TRANCOUNT, @@ROWCOUNT, @@ERROR, @@VERSION, … by name with '@@', any case.
    fn global(&self, _name: &str) -> Option<Value> {
        None
    }
    /// Functions the instance answers (GETDATE, SYSDATETIME, NEWID, DB_NAME, DB_ID, SERVERPROPERTY, CERT_ID,
    /// CERTENCODED, SCOPE_IDENTITY, ERROR_MESSAGE, OBJECT_ID, …). `name` is upper-case, schema-qualified names
    /// joined with '.'. Return None to fall through to the built-ins here.
    fn function(&self, _name: &str, _args: &[Value]) -> Option<Result<Value>> {
        None
    }
    /// A scalar subquery `(SELECT …)`, if the caller can run queries.
    fn subquery(&self, _query: &Query) -> Result<Value> {
        Err(SqlError::new(
            40000,
            16,
            "Subqueries are not allowed in this context.",
        ))
    }
    /// EXISTS (SELECT …)
    fn exists(&self, _query: &Query) -> Result<bool> {
        Err(SqlError::new(
            40000,
            16,
            "Subqueries are not allowed in this context.",
        ))
    }
    /// True after `SET DATEFORMAT dmy`: d/m/y strings read day first in CAST/CONVERT.
    fn date_format_dmy(&self) -> bool {
        false
    }
    /// `value IN (SELECT …)` in three-valued logic (None when no row matched but a NULL was seen).
    fn in_subquery(&self, _value: &Value, _query: &Query) -> Result<Option<bool>> {
        Err(SqlError::new(
            40000,
            16,
            "Subqueries are not allowed in this context.",
        ))
    }
}

/// A context with no variables: for constant expressions.
pub struct EmptyContext;
impl Context for EmptyContext {
    fn variable(&self, _name: &str) -> Option<Value> {
        None
    }
}

const MAX_EVAL_DEPTH: usize = 256;

/// Evaluates a scalar expression. Predicates (comparisons, AND/OR, LIKE…) evaluate to BIT 1/0 or NULL.
pub fn eval(expr: &Expr, ctx: &dyn Context) -> Result<Value> {
    Evaluator { ctx, depth: 0 }.eval(expr)
}

/// Evaluates a search condition (IF, WHILE, CASE WHEN, IIF) in three-valued logic.
pub fn eval_predicate(expr: &Expr, ctx: &dyn Context) -> Result<Option<bool>> {
    Evaluator { ctx, depth: 0 }.pred(expr)
}

struct Evaluator<'c> {
    ctx: &'c dyn Context,
    depth: usize,
}

fn literal_value(l: &Literal) -> Result<Value> {
    Ok(match l {
        Literal::Null => Value::Null,
        Literal::Int(n) => {
            // SQL Server types integer constants beyond INT as NUMERIC(p, 0), not BIGINT.
            if *n >= i32::MIN as i64 && *n <= i32::MAX as i64 {
                Value::Int(*n as i32)
            } else {
                let p = n.unsigned_abs().to_string().len() as u8;
                Value::Decimal(Decimal::new(*n as i128, p, 0))
            }
        }
        Literal::Decimal(s) => Value::Decimal(Decimal::parse(s).ok_or_else(|| {
            SqlError::new(1007, 15, format!("The number '{}' is out of the range for numeric representation (maximum precision 38).", s))
        })?),
        Literal::Float(f) => Value::Float(*f),
        Literal::Money(s) => {
            let d = Decimal::parse(s).ok_or_else(|| SqlError::overflow("money"))?;
            convert(&Value::Decimal(d), &DataType::Money, None)?
        }
        Literal::String(s) => Value::VarChar(s.clone()),
        Literal::NString(s) => Value::NVarChar(s.clone()),
        Literal::Binary(b) => Value::Binary(b.clone()),
        Literal::Default => return Err(SqlError::syntax_near_keyword("DEFAULT", 0)),
    })
}

impl<'c> Evaluator<'c> {
    /// Without an explicit style, string-to-date conversions follow the session's DATEFORMAT (103 = d/m/y).
    fn session_date_style(&self, v: &Value, ty: &DataType, style: Option<i64>) -> Option<i64> {
        if style.is_none() && ty.is_temporal() && v.as_str().is_some() && self.ctx.date_format_dmy()
        {
            Some(103)
        } else {
            style
        }
    }

    fn eval(&mut self, e: &Expr) -> Result<Value> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            return Err(SqlError::new(
                191,
                15,
                "Some part of your SQL statement is nested too deeply.",
            ));
        }
        let r = self.eval_inner(e);
        self.depth -= 1;
        r
    }

    fn eval_inner(&mut self, e: &Expr) -> Result<Value> {
        match e {
            Expr::Literal(l) => literal_value(l),
            Expr::Variable(v) => self
                .ctx
                .variable(v)
                .ok_or_else(|| SqlError::must_declare(v)),
            Expr::Global(g) => self.ctx.global(g).ok_or_else(|| SqlError::must_declare(g)),
            Expr::Column(parts) => Err(SqlError::new(
                207,
                16,
                format!(
                    "Invalid column name '{}'.",
                    parts.last().map(|p| p.value.as_str()).unwrap_or("")
                ),
            )),
            Expr::Wildcard(_) => Err(SqlError::syntax_near("*", 0)),
            Expr::Nested(inner) => self.eval(inner),
            Expr::Unary {
                op: UnaryOp::Not, ..
            }
            | Expr::Binary {
                op:
                    BinOp::And
                    | BinOp::Or
                    | BinOp::Eq
                    | BinOp::Ne
                    | BinOp::Lt
                    | BinOp::Le
                    | BinOp::Gt
                    | BinOp::Ge,
                ..
            }
            | Expr::IsNull { .. }
            | Expr::Like { .. }
            | Expr::InList { .. }
            | Expr::InSubquery { .. }
            | Expr::Between { .. }
            | Expr::Exists { .. } => Ok(match self.pred(e)? {
                None => Value::Null,
                Some(b) => Value::Bit(b),
            }),
            Expr::Unary { op, expr } => {
                let v = self.eval(expr)?;
                unary_op(*op, &v)
            }
            Expr::Binary { .. } => {
                // Arithmetic chains are folded iteratively: their length costs no stack.
                let mut spine: Vec<(BinOp, &Expr)> = Vec::new();
                let mut cur = e;
                while let Expr::Binary { op, left, right } = cur {
                    if matches!(
                        op,
                        BinOp::And
                            | BinOp::Or
                            | BinOp::Eq
                            | BinOp::Ne
                            | BinOp::Lt
                            | BinOp::Le
                            | BinOp::Gt
                            | BinOp::Ge
                    ) {
                        break;
                    }
                    spine.push((*op, right));
                    cur = left;
                }
                let mut acc = self.eval(cur)?;
                for (op, right) in spine.into_iter().rev() {
                    let b = self.eval(right)?;
                    acc = binary_op(op, &acc, &b)?;
                }
                Ok(acc)
            }
            Expr::Subquery(q) => self.ctx.subquery(q),
            Expr::Case {
                operand,
                whens,
                else_,
            } => {
                let op_val = match operand {
                    Some(o) => Some(self.eval(o)?),
                    None => None,
                };
                for (w, t) in whens {
                    let hit = match &op_val {
                        Some(v) => {
                            let wv = self.eval(w)?;
                            compare(v, &wv)? == Some(Ordering::Equal)
                        }
                        None => self.pred(w)? == Some(true),
                    };
                    if hit {
                        return self.eval(t);
                    }
                }
                match else_ {
                    Some(e) => self.eval(e),
                    None => Ok(Value::Null),
                }
            }
            Expr::Cast { expr, ty, try_ } => {
                let v = self.eval(expr)?;
                let style = self.session_date_style(&v, ty, None);
                match convert(&v, ty, style) {
                    Ok(x) => Ok(x),
                    Err(_) if *try_ => Ok(Value::Null),
                    Err(e) => Err(e),
                }
            }
            Expr::Convert {
                ty,
                expr,
                style,
                try_,
            } => {
                let v = self.eval(expr)?;
                let st = match style {
                    Some(s) => self.eval(s)?.as_i64(),
                    None => None,
                };
                let st = self.session_date_style(&v, ty, st);
                match convert(&v, ty, st) {
                    Ok(x) => Ok(x),
                    Err(_) if *try_ => Ok(Value::Null),
                    Err(e) => Err(e),
                }
            }
            Expr::Collate { expr, .. } => self.eval(expr),
            Expr::Function(f) => {
                if f.over.is_some() {
                    return Err(SqlError::new(
                        4108,
                        16,
                        "Windowed functions can only appear in the SELECT or ORDER BY clauses.",
                    ));
                }
                let name = f
                    .name
                    .0
                    .iter()
                    .map(|i| i.value.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(".");
                let short = f.name.name().to_ascii_uppercase();
                // Lazily evaluated built-ins first: their arguments are not all values.
                match short.as_str() {
                    "IIF" if f.args.len() == 3 => {
                        return if self.pred(&f.args[0])? == Some(true) {
                            self.eval(&f.args[1])
                        } else {
                            self.eval(&f.args[2])
                        };
                    }
                    "COALESCE" => {
                        if f.args.len() < 2 {
                            return Err(SqlError::new(
                                174,
                                15,
                                "The coalesce function requires at least 2 argument(s).",
                            ));
                        }
                        for a in &f.args {
                            let v = self.eval(a)?;
                            if !v.is_null() {
                                return Ok(v);
                            }
                        }
                        return Ok(Value::Null);
                    }
                    "DATEADD" | "DATEDIFF" | "DATEDIFF_BIG" | "DATEPART" | "DATENAME"
                        if !f.args.is_empty() =>
                    {
                        let part = match &f.args[0] {
                            Expr::Column(p) if p.len() == 1 => p[0].value.to_ascii_lowercase(),
                            Expr::Literal(Literal::String(s))
                            | Expr::Literal(Literal::NString(s)) => s.to_ascii_lowercase(),
                            _ => {
                                return Err(SqlError::new(
                                    1023,
                                    15,
                                    format!(
                                        "Invalid parameter 1 specified for {}.",
                                        short.to_ascii_lowercase()
                                    ),
                                ))
                            }
                        };
                        let mut rest = Vec::new();
                        for a in &f.args[1..] {
                            rest.push(self.eval(a)?);
                        }
                        return date_function(&short, &part, &rest);
                    }
                    _ => {}
                }
                let mut args = Vec::with_capacity(f.args.len());
                for a in &f.args {
                    if matches!(a, Expr::Wildcard(None)) {
                        return Err(SqlError::new(
                            40000,
                            16,
                            format!("{}(*) needs a table.", short),
                        ));
                    }
                    args.push(self.eval(a)?);
                }
                if let Some(r) = self.ctx.function(&name, &args) {
                    return r;
                }
                if f.name.0.len() == 1
                    || f.name
                        .schema()
                        .is_some_and(|s| s.eq_ignore_ascii_case("sys"))
                {
                    if let Some(r) = builtin(&short, &args) {
                        return r;
                    }
                }
                Err(SqlError::new(
                    195,
                    15,
                    format!(
                        "'{}' is not a recognized built-in function name.",
                        f.name.name()
                    ),
                ))
            }
        }
    }

    fn pred(&mut self, e: &Expr) -> Result<Option<bool>> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            return Err(SqlError::new(
                191,
                15,
                "Some part of your SQL statement is nested too deeply.",
            ));
        }
        let r = self.pred_inner(e);
        self.depth -= 1;
        r
    }

    fn pred_inner(&mut self, e: &Expr) -> Result<Option<bool>> {
        Ok(match e {
            Expr::Nested(inner) => return self.pred(inner),
            Expr::Unary {
                op: UnaryOp::Not,
                expr,
            } => self.pred(expr)?.map(|b| !b),
            Expr::Binary {
                op: op @ (BinOp::And | BinOp::Or),
                ..
            } => {
                // a AND b AND c …: collect the left spine and decide left to right, three-valued.
                let mut terms: Vec<&Expr> = Vec::new();
                let mut cur = e;
                while let Expr::Binary { op: o, left, right } = cur {
                    if o != op {
                        break;
                    }
                    terms.push(right);
                    cur = left;
                }
                terms.push(cur);
                terms.reverse();
                let decisive = *op == BinOp::Or;
                let mut unknown = false;
                for t in terms {
                    match self.pred(t)? {
                        Some(b) if b == decisive => return Ok(Some(decisive)),
                        None => unknown = true,
                        _ => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(!decisive)
                }
            }
            Expr::Binary { op, left, right }
                if matches!(
                    op,
                    BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
                ) =>
            {
                let a = self.eval(left)?;
                let b = self.eval(right)?;
                compare(&a, &b)?.map(|o| match op {
                    BinOp::Eq => o == Ordering::Equal,
                    BinOp::Ne => o != Ordering::Equal,
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                })
            }
            Expr::IsNull { expr, negated } => Some(self.eval(expr)?.is_null() != *negated),
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
            } => {
                let v = self.eval(expr)?;
                let p = self.eval(pattern)?;
                let esc = match escape {
                    Some(x) => self.eval(x)?.to_text().and_then(|s| s.chars().next()),
                    None => None,
                };
                match (v.to_text(), p.to_text()) {
                    (Some(s), Some(pat)) if !v.is_null() && !p.is_null() => {
                        Some(like(&s, &pat, esc) != *negated)
                    }
                    _ => None,
                }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let v = self.eval(expr)?;
                if v.is_null() {
                    return Ok(None);
                }
                let mut saw_null = false;
                for item in list {
                    let x = self.eval(item)?;
                    match compare(&v, &x)? {
                        Some(Ordering::Equal) => return Ok(Some(!*negated)),
                        None => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    None
                } else {
                    Some(*negated)
                }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let v = self.eval(expr)?;
                let lo = self.eval(low)?;
                let hi = self.eval(high)?;
                let a = compare(&v, &lo)?.map(|o| o != Ordering::Less);
                let b = compare(&v, &hi)?.map(|o| o != Ordering::Greater);
                let r = match (a, b) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                r.map(|x| x != *negated)
            }
            Expr::Exists { query, negated } => Some(self.ctx.exists(query)? != *negated),
            Expr::InSubquery {
                expr,
                query,
                negated,
            } => {
                let v = self.eval(expr)?;
                if v.is_null() {
                    return Ok(None);
                }
                self.ctx.in_subquery(&v, query)?.map(|b| b != *negated)
            }
            other => {
                // A scalar used as a condition: SQL Server rejects it (4145); BIT values are accepted leniently.
                match self.eval(other)? {
                    Value::Null => None,
                    Value::Bit(b) => Some(b),
                    _ => {
                        return Err(SqlError::new(
                            4145,
                            15,
                            "An expression of non-boolean type specified in a context where a condition is expected.",
                        ))
                    }
                }
            }
        })
    }
}

fn unary_op(op: UnaryOp, v: &Value) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match op {
        UnaryOp::Plus => Ok(v.clone()),
        UnaryOp::Neg => match v {
            Value::TinyInt(_)
            | Value::SmallInt(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Bit(_) => {
                let t = v.data_type().unwrap_or(DataType::Int);
                let t = if t == DataType::Bit || t == DataType::TinyInt {
                    DataType::Int
                } else {
                    t
                };
                int_result(-(v.as_i64().unwrap_or(0) as i128), &t)
            }
            Value::Decimal(d) => Ok(Value::Decimal(d.neg())),
            Value::Money(m) => m
                .checked_neg()
                .map(Value::Money)
                .ok_or_else(|| SqlError::overflow("money")),
            Value::SmallMoney(m) => Ok(Value::SmallMoney(-m)),
            Value::Float(f) => Ok(Value::Float(-f)),
            Value::Real(f) => Ok(Value::Real(-f)),
            Value::VarChar(_) | Value::NVarChar(_) => {
                let f = implicit_convert(v, &DataType::Float)?;
                unary_op(op, &f)
            }
            other => Err(SqlError::new(
                8117,
                16,
                format!(
                    "Operand data type {} is invalid for minus operator.",
                    other.type_name()
                ),
            )),
        },
        UnaryOp::BitNot => match v.as_i64() {
            Some(i) => int_result(!(i as i128), &v.data_type().unwrap_or(DataType::Int)),
            None => Err(SqlError::new(
                8117,
                16,
                format!(
                    "Operand data type {} is invalid for ~ operator.",
                    v.type_name()
                ),
            )),
        },
        UnaryOp::Not => Err(SqlError::syntax_near_keyword("NOT", 0)),
    }
}

fn int_result(v: i128, t: &DataType) -> Result<Value> {
    let r = match t {
        DataType::TinyInt if (0..=255).contains(&v) => Value::TinyInt(v as u8),
        DataType::SmallInt if (i16::MIN as i128..=i16::MAX as i128).contains(&v) => {
            Value::SmallInt(v as i16)
        }
        DataType::Int | DataType::Bit if (i32::MIN as i128..=i32::MAX as i128).contains(&v) => {
            Value::Int(v as i32)
        }
        DataType::BigInt if (i64::MIN as i128..=i64::MAX as i128).contains(&v) => {
            Value::BigInt(v as i64)
        }
        _ => {
            let name = if *t == DataType::Bit {
                "int".to_string()
            } else {
                t.base_name()
            };
            return Err(SqlError::overflow(&name));
        }
    };
    Ok(r)
}

fn op_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "add",
        BinOp::Sub => "subtract",
        BinOp::Mul => "multiply",
        BinOp::Div => "divide",
        BinOp::Mod => "modulo",
        BinOp::BitAnd => "&",
        BinOp::BitOr => "|",
        BinOp::BitXor => "^",
        _ => "comparison",
    }
}

fn incompatible(op: BinOp, a: &Value, b: &Value) -> SqlError {
    SqlError::new(
        402,
        16,
        format!(
            "The data types {} and {} are incompatible in the {} operator.",
            a.type_name(),
            b.type_name(),
            op_name(op)
        ),
    )
}

/// T-SQL binary arithmetic and `+` concatenation with implicit conversion by data type precedence. Exposed so
/// the engine can implement the same semantics inside SQLite (e.g. a registered `tsql_add`).
pub fn binary_op(op: BinOp, a: &Value, b: &Value) -> Result<Value> {
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let (ta, tb) = match (a.data_type(), b.data_type()) {
        (Some(x), Some(y)) => (x, y),
        _ => return Ok(Value::Null),
    };
    // String concatenation.
    if op == BinOp::Add && ta.is_string() && tb.is_string() {
        let (x, y) = (a.as_str().unwrap_or(""), b.as_str().unwrap_or(""));
        let s = format!("{}{}", x, y);
        return Ok(if ta.is_unicode() || tb.is_unicode() {
            Value::NVarChar(s)
        } else {
            Value::VarChar(s)
        });
    }
    if op == BinOp::Add && ta.is_binary() && tb.is_binary() {
        if let (Value::Binary(x), Value::Binary(y)) = (a, b) {
            let mut v = x.clone();
            v.extend_from_slice(y);
            return Ok(Value::Binary(v));
        }
    }
    if ta.is_string() && tb.is_string() {
        return Err(incompatible(op, a, b));
    }
    // Date arithmetic: DATETIME +/- number adds days.
    if matches!(op, BinOp::Add | BinOp::Sub)
        && (matches!(ta, DataType::DateTime | DataType::SmallDateTime)
            || matches!(tb, DataType::DateTime | DataType::SmallDateTime))
    {
        return datetime_arith(op, a, b, &ta, &tb);
    }
    if ta.is_temporal()
        || tb.is_temporal()
        || ta == DataType::UniqueIdentifier
        || tb == DataType::UniqueIdentifier
    {
        return Err(SqlError::new(
            8117,
            16,
            format!(
                "Operand data type {} is invalid for {} operator.",
                if ta.is_temporal() || ta == DataType::UniqueIdentifier {
                    ta.base_name()
                } else {
                    tb.base_name()
                },
                op_name(op)
            ),
        ));
    }
    // Convert the lower-precedence side (a string converts to the other side's type: 245 on failure).
    let target = if ta.precedence() >= tb.precedence() {
        ta
    } else {
        tb
    };
    // Exact numerics keep their own precision/scale (int * decimal(10,2) has scale 2); only strings and floats
    // are converted to the target type first.
    let keep = |t: &DataType| {
        t.is_numeric() && !matches!(t, DataType::Float | DataType::Real) && target.is_numeric()
    };
    let a2 = if ta == target || (keep(&ta) && !matches!(target, DataType::Float | DataType::Real)) {
        a.clone()
    } else {
        implicit_convert(a, &target)?
    };
    let b2 = if tb == target || (keep(&tb) && !matches!(target, DataType::Float | DataType::Real)) {
        b.clone()
    } else {
        implicit_convert(b, &target)?
    };
    if matches!(op, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor) {
        let (x, y) = match (a2.as_i64(), b2.as_i64()) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(incompatible(op, a, b)),
        };
        let r = match op {
            BinOp::BitAnd => x & y,
            BinOp::BitOr => x | y,
            _ => x ^ y,
        };
        if target == DataType::Bit {
            return Ok(Value::Bit(r != 0));
        }
        return int_result(r as i128, &target);
    }
    match target {
        DataType::Float | DataType::Real => {
            let x = a2.as_f64().unwrap_or(0.0);
            let y = b2.as_f64().unwrap_or(0.0);
            let r = match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => {
                    if y == 0.0 {
                        return Err(SqlError::divide_by_zero());
                    }
                    x / y
                }
                BinOp::Mod => return Err(incompatible(op, a, b)),
                _ => return Err(incompatible(op, a, b)),
            };
            if !r.is_finite() {
                return Err(SqlError::overflow("float"));
            }
            Ok(if target == DataType::Real {
                Value::Real(r as f32)
            } else {
                Value::Float(r)
            })
        }
        DataType::Decimal { .. } | DataType::Money | DataType::SmallMoney => {
            let x = a2.as_decimal().ok_or_else(|| incompatible(op, a, b))?;
            let y = b2.as_decimal().ok_or_else(|| incompatible(op, a, b))?;
            let c = match op {
                BinOp::Add => '+',
                BinOp::Sub => '-',
                BinOp::Mul => '*',
                BinOp::Div => '/',
                BinOp::Mod => '%',
                _ => return Err(incompatible(op, a, b)),
            };
            let r = x.arith(&y, c)?;
            match target {
                DataType::Money | DataType::SmallMoney => {
                    convert(&Value::Decimal(r), &target, None)
                }
                _ => Ok(Value::Decimal(r)),
            }
        }
        t if t.is_integer() => {
            let x = a2.as_i64().unwrap_or(0) as i128;
            let y = b2.as_i64().unwrap_or(0) as i128;
            let r = match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => {
                    if y == 0 {
                        return Err(SqlError::divide_by_zero());
                    }
                    x / y
                }
                BinOp::Mod => {
                    if y == 0 {
                        return Err(SqlError::divide_by_zero());
                    }
                    x % y
                }
                _ => return Err(incompatible(op, a, b)),
            };
            int_result(r, &t)
        }
        _ => Err(incompatible(op, a, b)),
    }
}

fn datetime_arith(op: BinOp, a: &Value, b: &Value, ta: &DataType, tb: &DataType) -> Result<Value> {
    let as_dt = |v: &Value| -> Option<NaiveDateTime> {
        match v {
            Value::DateTime(d) | Value::SmallDateTime(d) => Some(*d),
            _ => None,
        }
    };
    let days_of = |v: &Value| -> Result<f64> {
        match v {
            Value::VarChar(_) | Value::NVarChar(_) => {
                let d = implicit_convert(v, &DataType::DateTime)?;
                Ok(as_dt(&d).map(days_since_1900).unwrap_or(0.0))
            }
            other => other.as_f64().ok_or_else(|| incompatible(op, a, b)),
        }
    };
    let (base, delta, out_ty) = match (as_dt(a), as_dt(b)) {
        (Some(x), Some(y)) => (
            days_since_1900(x),
            if op == BinOp::Add {
                days_since_1900(y)
            } else {
                -days_since_1900(y)
            },
            *ta,
        ),
        (Some(x), None) => {
            let d = days_of(b)?;
            (
                days_since_1900(x),
                if op == BinOp::Add { d } else { -d },
                *ta,
            )
        }
        (None, Some(y)) => {
            if op == BinOp::Sub {
                let d = days_of(a)?;
                (d, -days_since_1900(y), *tb)
            } else {
                (days_since_1900(y), days_of(a)?, *tb)
            }
        }
        (None, None) => return Err(incompatible(op, a, b)),
    };
    convert(&Value::Float(base + delta), &out_ty, None)
}

fn days_since_1900(d: NaiveDateTime) -> f64 {
    let base = NaiveDate::from_ymd_opt(1900, 1, 1)
        .and_then(|x| x.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let delta = d - base;
    delta.num_milliseconds() as f64 / 86_400_000.0
}

/// LIKE with `%`, `_`, `[set]`, `[^set]`, `[a-z]` and an optional escape character; case-insensitive (default collation).
pub fn like(s: &str, pattern: &str, escape: Option<char>) -> bool {
    let s: Vec<char> = s.chars().flat_map(|c| c.to_lowercase()).collect();
    let p: Vec<char> = pattern.chars().flat_map(|c| c.to_lowercase()).collect();
    // Iterative matcher with backtracking on the last %: linear-ish, no recursion (fuzz-safe).
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            let c = p[pi];
            if Some(c) == escape && pi + 1 < p.len() {
                if si < s.len() && s[si] == p[pi + 1] {
                    si += 1;
                    pi += 2;
                    continue;
                }
            } else if c == '%' {
                star = Some((pi, si));
                pi += 1;
                continue;
            } else if si < s.len() {
                if c == '_' {
                    si += 1;
                    pi += 1;
                    continue;
                }
                if c == '[' {
                    if let Some((matched, next)) = match_set(&p, pi, s[si]) {
                        if matched {
                            si += 1;
                            pi = next;
                            continue;
                        }
                    } else if s[si] == '[' {
                        si += 1;
                        pi += 1;
                        continue;
                    }
                } else if c == s[si] {
                    si += 1;
                    pi += 1;
                    continue;
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: backtrack to the last % and let it eat one more character.
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp + 1;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against a [set] starting at p[start] == '['; returns (matched, index after ']').
fn match_set(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

// ---- built-in functions ------------------------------------------------------------------------------------

fn wrong_args(name: &str, n: usize) -> SqlError {
    SqlError::new(
        174,
        15,
        format!(
            "The {} function requires {} argument(s).",
            name.to_ascii_lowercase(),
            n
        ),
    )
}

fn text_like(template: &Value, s: String) -> Value {
    match template {
        Value::NVarChar(_) => Value::NVarChar(s),
        _ => Value::VarChar(s),
    }
}

fn to_text_arg(v: &Value) -> Option<String> {
    if v.is_null() {
        None
    } else {
        v.to_text()
    }
}

fn int_arg(v: &Value, fname: &str) -> Result<Option<i64>> {
    if v.is_null() {
        return Ok(None);
    }
    match implicit_convert(v, &DataType::BigInt) {
        Ok(x) => Ok(x.as_i64()),
        Err(e) if e.number == 245 => Err(e),
        Err(_) => Err(SqlError::new(
            8116,
            16,
            format!(
                "Argument data type {} is invalid for argument 2 of {} function.",
                v.type_name(),
                fname.to_ascii_lowercase()
            ),
        )),
    }
}

/// Calls a built-in by (case-insensitive) name with evaluated arguments. The date functions take their datepart
/// as a string first argument ('day', 'mi', …), which is how translated SQL passes it to `tsql_dateadd` etc.
pub fn call_builtin(name: &str, args: &[Value]) -> Result<Value> {
    let u = name.to_ascii_uppercase();
    match u.as_str() {
        "DATEADD" | "DATEDIFF" | "DATEDIFF_BIG" | "DATEPART" | "DATENAME" => {
            let part = args
                .first()
                .and_then(|v| v.to_text())
                .unwrap_or_default()
                .to_ascii_lowercase();
            date_function(&u, &part, args.get(1..).unwrap_or(&[]))
        }
        "COALESCE" => Ok(args
            .iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null)),
        _ => builtin_inner(&u, args),
    }
}

/// Built-in scalar functions that need nothing from the instance. None: not a function implemented here.
pub fn builtin(name: &str, args: &[Value]) -> Option<Result<Value>> {
    Some(builtin_inner(name, args))
}

fn builtin_inner(name: &str, args: &[Value]) -> Result<Value> {
    let n = args.len();
    let need = |k: usize| -> Result<()> {
        if n != k {
            Err(wrong_args(name, k))
        } else {
            Ok(())
        }
    };
    let null_in = args.iter().any(|a| a.is_null());
    match name {
        "LEN" => {
            need(1)?;
            if null_in {
                return Ok(Value::Null);
            }
            let s = args[0].to_text().unwrap_or_default();
            let l = s.trim_end_matches(' ').chars().count() as i64;
            Ok(
                if matches!(
                    args[0].data_type(),
                    Some(DataType::VarChar(Len::Max)) | Some(DataType::NVarChar(Len::Max))
                ) && l > i32::MAX as i64
                {
                    Value::BigInt(l)
                } else {
                    Value::Int(l as i32)
                },
            )
        }
        "DATALENGTH" => {
            need(1)?;
            Ok(match &args[0] {
                Value::Null => Value::Null,
                Value::VarChar(s) => Value::Int(s.chars().count() as i32),
                Value::NVarChar(s) => Value::Int((s.encode_utf16().count() * 2) as i32),
                Value::Binary(b) => Value::Int(b.len() as i32),
                Value::Bit(_) | Value::TinyInt(_) => Value::Int(1),
                Value::SmallInt(_) => Value::Int(2),
                Value::Int(_) | Value::Real(_) | Value::SmallMoney(_) | Value::SmallDateTime(_) => {
                    Value::Int(4)
                }
                Value::BigInt(_) | Value::Float(_) | Value::Money(_) | Value::DateTime(_) => {
                    Value::Int(8)
                }
                Value::Decimal(d) => Value::Int(match d.precision {
                    0..=9 => 5,
                    10..=19 => 9,
                    20..=28 => 13,
                    _ => 17,
                }),
                Value::Date(_) => Value::Int(3),
                Value::Time(_, p) => Value::Int(if *p <= 2 {
                    3
                } else if *p <= 4 {
                    4
                } else {
                    5
                }),
                Value::DateTime2(_, p) => Value::Int(if *p <= 2 {
                    6
                } else if *p <= 4 {
                    7
                } else {
                    8
                }),
                Value::DateTimeOffset(_, p) => Value::Int(if *p <= 2 {
                    8
                } else if *p <= 4 {
                    9
                } else {
                    10
                }),
                Value::Guid(_) => Value::Int(16),
            })
        }
        "LEFT" | "RIGHT" => {
            need(2)?;
            let k = int_arg(&args[1], name)?;
            let (s, k) = match (to_text_arg(&args[0]), k) {
                (Some(s), Some(k)) => (s, k),
                _ => return Ok(Value::Null),
            };
            if k < 0 {
                return Err(SqlError::new(
                    536,
                    16,
                    format!(
                        "Invalid length parameter passed to the {} function.",
                        name.to_ascii_lowercase()
                    ),
                ));
            }
            let chars: Vec<char> = s.chars().collect();
            let k = (k as usize).min(chars.len());
            let out: String = if name == "LEFT" {
                chars[..k].iter().collect()
            } else {
                chars[chars.len() - k..].iter().collect()
            };
            Ok(text_like(&args[0], out))
        }
        "SUBSTRING" => {
            need(3)?;
            let start = int_arg(&args[1], name)?;
            let len = int_arg(&args[2], name)?;
            // NULL in any argument gives NULL before the length is checked.
            let text = match &args[0] {
                Value::Binary(_) => None,
                v => match to_text_arg(v) {
                    Some(t) => Some(t),
                    None => return Ok(Value::Null),
                },
            };
            let (Some(st), Some(ln)) = (start, len) else {
                return Ok(Value::Null);
            };
            if ln < 0 {
                return Err(SqlError::new(
                    537,
                    16,
                    "Invalid length parameter passed to the substring function.",
                ));
            }
            // Positions before 1 consume length, as in SQL Server; binary counts bytes, text counts characters.
            let from = st.saturating_sub(1).max(0) as usize;
            let to = (st.saturating_sub(1).saturating_add(ln).max(0) as usize).max(from);
            match (&args[0], text) {
                (Value::Binary(b), _) => Ok(Value::Binary(
                    b[from.min(b.len())..to.min(b.len())].to_vec(),
                )),
                (_, Some(s)) => Ok(text_like(
                    &args[0],
                    s.chars().skip(from).take(to - from).collect(),
                )),
                (_, None) => Ok(Value::Null),
            }
        }
        "UPPER" | "LOWER" | "LTRIM" | "RTRIM" | "TRIM" | "REVERSE" => {
            if n != 1 && !(n == 2 && matches!(name, "LTRIM" | "RTRIM" | "TRIM")) {
                return Err(wrong_args(name, 1));
            }
            let s = match to_text_arg(&args[0]) {
                Some(s) => s,
                None => return Ok(Value::Null),
            };
            let chars: Vec<char> = match args.get(1) {
                Some(c) => c.to_text().unwrap_or_default().chars().collect(),
                None => vec![' '],
            };
            let out = match name {
                "UPPER" => s.to_uppercase(),
                "LOWER" => s.to_lowercase(),
                "LTRIM" => s.trim_start_matches(chars.as_slice()).to_string(),
                "RTRIM" => s.trim_end_matches(chars.as_slice()).to_string(),
                "TRIM" => s.trim_matches(chars.as_slice()).to_string(),
                _ => s.chars().rev().collect(),
            };
            Ok(text_like(&args[0], out))
        }
        "REPLACE" => {
            need(3)?;
            let (s, from, to) = match (
                to_text_arg(&args[0]),
                to_text_arg(&args[1]),
                to_text_arg(&args[2]),
            ) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => return Ok(Value::Null),
            };
            let unicode = args.iter().any(|a| matches!(a, Value::NVarChar(_)));
            let out = replace_ci(&s, &from, &to);
            Ok(if unicode {
                Value::NVarChar(out)
            } else {
                Value::VarChar(out)
            })
        }
        "CHARINDEX" => {
            if !(n == 2 || n == 3) {
                return Err(wrong_args(name, 2));
            }
            let start = match args.get(2) {
                Some(v) => int_arg(v, name)?,
                None => Some(1),
            };
            let (needle, hay, start) = match (to_text_arg(&args[0]), to_text_arg(&args[1]), start) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => return Ok(Value::Null),
            };
            Ok(Value::Int(
                charindex_ci(&needle, &hay, start.max(1) as usize) as i32,
            ))
        }
        "PATINDEX" => {
            need(2)?;
            let (pat, s) = match (to_text_arg(&args[0]), to_text_arg(&args[1])) {
                (Some(a), Some(b)) => (a, b),
                _ => return Ok(Value::Null),
            };
            // PATINDEX('%p%', s) is the first i where s[i..] LIKE 'p%'; without a leading % only i = 1 counts.
            let chars: Vec<char> = s.chars().collect();
            match pat.strip_prefix('%') {
                Some(rest) => {
                    for i in 0..chars.len() {
                        let tail: String = chars[i..].iter().collect();
                        if like(&tail, rest, None) {
                            return Ok(Value::Int(i as i32 + 1));
                        }
                    }
                    Ok(Value::Int(0))
                }
                None => Ok(Value::Int(like(&s, &pat, None) as i32)),
            }
        }
        "CONCAT" | "CONCAT_WS" => {
            let (sep, items) = if name == "CONCAT_WS" {
                if n < 3 {
                    return Err(SqlError::new(
                        189,
                        15,
                        "The concat_ws function requires 3 to 254 arguments.",
                    ));
                }
                (to_text_arg(&args[0]), &args[1..])
            } else {
                if n < 2 {
                    return Err(SqlError::new(
                        189,
                        15,
                        "The concat function requires 2 to 254 arguments.",
                    ));
                }
                (None, args)
            };
            let parts: Vec<String> = items
                .iter()
                .filter(|v| !(name == "CONCAT_WS" && v.is_null()))
                .map(|v| to_text_arg(v).unwrap_or_default())
                .collect();
            let out = parts.join(sep.as_deref().unwrap_or(""));
            let unicode = args.iter().any(|a| matches!(a, Value::NVarChar(_)));
            Ok(if unicode {
                Value::NVarChar(out)
            } else {
                Value::VarChar(out)
            })
        }
        "REPLICATE" => {
            need(2)?;
            let (s, k) = match (to_text_arg(&args[0]), int_arg(&args[1], name)?) {
                (Some(s), Some(k)) => (s, k),
                _ => return Ok(Value::Null),
            };
            if k < 0 {
                return Ok(Value::Null);
            }
            // Cap like a non-MAX result (8000 bytes) so a fuzzer cannot allocate gigabytes.
            let limit = 8000usize.max(s.len());
            let times = if s.is_empty() {
                0
            } else {
                (k as usize).min(limit / s.len())
            };
            let out = s.repeat(times);
            Ok(text_like(&args[0], out))
        }
        "SPACE" => {
            need(1)?;
            match int_arg(&args[0], name)? {
                Some(k) if k >= 0 => Ok(Value::VarChar(" ".repeat((k as usize).min(8000)))),
                _ => Ok(Value::Null),
            }
        }
        "STUFF" => {
            need(4)?;
            let (s, st, ln, ins) = match (
                to_text_arg(&args[0]),
                int_arg(&args[1], name)?,
                int_arg(&args[2], name)?,
                to_text_arg(&args[3]).or(Some(String::new())),
            ) {
                (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
                _ => return Ok(Value::Null),
            };
            let chars: Vec<char> = s.chars().collect();
            if st < 1 || st as usize > chars.len() || ln < 0 {
                return Ok(Value::Null);
            }
            let from = st as usize - 1;
            let to = from.saturating_add(ln as usize).min(chars.len());
            let out: String = chars[..from]
                .iter()
                .chain(ins.chars().collect::<Vec<_>>().iter())
                .chain(chars[to..].iter())
                .collect();
            Ok(text_like(&args[0], out))
        }
        "CHAR" | "NCHAR" => {
            need(1)?;
            match int_arg(&args[0], name)? {
                Some(c) if (0..=if name == "CHAR" { 255 } else { 0x10FFFF }).contains(&c) => {
                    let ch = char::from_u32(c as u32).map(|c| c.to_string());
                    Ok(match ch {
                        Some(s) if name == "CHAR" => Value::VarChar(s),
                        Some(s) => Value::NVarChar(s),
                        None => Value::Null,
                    })
                }
                _ => Ok(Value::Null),
            }
        }
        "ASCII" | "UNICODE" => {
            need(1)?;
            Ok(match to_text_arg(&args[0]).and_then(|s| s.chars().next()) {
                Some(c) => Value::Int(c as i32),
                None => Value::Null,
            })
        }
        "QUOTENAME" => {
            if n != 1 && n != 2 {
                return Err(wrong_args(name, 1));
            }
            let s = match to_text_arg(&args[0]) {
                Some(s) => s,
                None => return Ok(Value::Null),
            };
            if s.chars().count() > 128 {
                return Ok(Value::Null);
            }
            let q = args
                .get(1)
                .and_then(to_text_arg)
                .and_then(|q| q.chars().next())
                .unwrap_or('[');
            let (open, close) = match q {
                '[' | ']' => ('[', ']'),
                '\'' => ('\'', '\''),
                '"' => ('"', '"'),
                '(' | ')' => ('(', ')'),
                '<' | '>' => ('<', '>'),
                '{' | '}' => ('{', '}'),
                '`' => ('`', '`'),
                _ => return Ok(Value::Null),
            };
            let escaped = s.replace(close, &format!("{}{}", close, close));
            Ok(Value::NVarChar(format!("{}{}{}", open, escaped, close)))
        }
        "STR" => {
            if n == 0 || n > 3 {
                return Err(wrong_args(name, 1));
            }
            let f = match args[0].as_f64().or_else(|| {
                implicit_convert(&args[0], &DataType::Float)
                    .ok()
                    .and_then(|v| v.as_f64())
            }) {
                Some(f) if !args[0].is_null() => f,
                _ => return Ok(Value::Null),
            };
            let len = match args.get(1) {
                Some(v) => int_arg(v, name)?.unwrap_or(10),
                None => 10,
            }
            .clamp(1, 8000) as usize;
            let dec = match args.get(2) {
                Some(v) => int_arg(v, name)?.unwrap_or(0),
                None => 0,
            }
            .clamp(0, 16) as usize;
            let s = format!("{:.*}", dec, f);
            Ok(Value::VarChar(if s.len() > len {
                "*".repeat(len)
            } else {
                format!("{:>width$}", s, width = len)
            }))
        }
        "ISNULL" => {
            need(2)?;
            if args[0].is_null() {
                // The result takes the first argument's type; an untyped NULL yields the second as is.
                Ok(args[1].clone())
            } else {
                Ok(args[0].clone())
            }
        }
        "NULLIF" => {
            need(2)?;
            if compare(&args[0], &args[1])? == Some(Ordering::Equal) {
                Ok(Value::Null)
            } else {
                Ok(args[0].clone())
            }
        }
        "CHOOSE" => {
            if n < 2 {
                return Err(wrong_args(name, 2));
            }
            match int_arg(&args[0], name)? {
                Some(i) if i >= 1 && (i as usize) < n => Ok(args[i as usize].clone()),
                _ => Ok(Value::Null),
            }
        }
        "ISNUMERIC" => {
            need(1)?;
            let ok = match &args[0] {
                Value::Null => false,
                Value::VarChar(s) | Value::NVarChar(s) => {
                    let t = s.trim().trim_start_matches(['$', '+', '-']);
                    !t.is_empty() && (t.replace(',', "").parse::<f64>().is_ok())
                }
                v => v.data_type().is_some_and(|t| t.is_numeric()),
            };
            Ok(Value::Int(ok as i32))
        }
        "ISDATE" => {
            need(1)?;
            Ok(Value::Int(match &args[0] {
                Value::VarChar(s) | Value::NVarChar(s) => {
                    parse_datetime_text(s).is_some_and(|(d, _, _)| d.year() >= 1753) as i32
                }
                v => v.data_type().is_some_and(|t| t.is_temporal()) as i32,
            }))
        }
        "ABS" => {
            need(1)?;
            Ok(match &args[0] {
                Value::Null => Value::Null,
                Value::Decimal(d) => Value::Decimal(Decimal {
                    mantissa: d.mantissa.abs(),
                    ..*d
                }),
                Value::Money(m) => {
                    Value::Money(m.checked_abs().ok_or_else(|| SqlError::overflow("money"))?)
                }
                Value::SmallMoney(m) => Value::SmallMoney(m.abs()),
                Value::Float(f) => Value::Float(f.abs()),
                Value::Real(f) => Value::Real(f.abs()),
                Value::VarChar(_) | Value::NVarChar(_) => Value::Float(
                    implicit_convert(&args[0], &DataType::Float)?
                        .as_f64()
                        .unwrap_or(0.0)
                        .abs(),
                ),
                v => match v.as_i64() {
                    Some(i) => {
                        int_result((i as i128).abs(), &v.data_type().unwrap_or(DataType::Int))?
                    }
                    None => {
                        return Err(SqlError::new(
                            8116,
                            16,
                            format!(
                                "Argument data type {} is invalid for argument 1 of abs function.",
                                v.type_name()
                            ),
                        ))
                    }
                },
            })
        }
        "SIGN" => {
            need(1)?;
            Ok(match &args[0] {
                Value::Null => Value::Null,
                Value::Float(f) => Value::Float(if *f > 0.0 {
                    1.0
                } else if *f < 0.0 {
                    -1.0
                } else {
                    0.0
                }),
                Value::Decimal(d) => Value::Decimal(Decimal::new(
                    d.mantissa.signum() * crate::decimal::pow10(d.scale as u32) as i128,
                    d.precision,
                    d.scale,
                )),
                v => match v.as_i64() {
                    Some(i) => {
                        int_result(i.signum() as i128, &v.data_type().unwrap_or(DataType::Int))?
                    }
                    None => Value::Float(v.as_f64().unwrap_or(0.0).signum()),
                },
            })
        }
        "CEILING" | "FLOOR" => {
            need(1)?;
            let ceil = name == "CEILING";
            Ok(match &args[0] {
                Value::Null => Value::Null,
                Value::Float(f) => Value::Float(if ceil { f.ceil() } else { f.floor() }),
                Value::Real(f) => Value::Real(if ceil { f.ceil() } else { f.floor() }),
                Value::Decimal(d) => Value::Decimal(d.floor_ceil(ceil)),
                Value::Money(_) | Value::SmallMoney(_) => {
                    let d = args[0]
                        .as_decimal()
                        .unwrap_or(Decimal::new(0, 1, 0))
                        .floor_ceil(ceil);
                    convert(
                        &Value::Decimal(d),
                        &args[0].data_type().unwrap_or(DataType::Money),
                        None,
                    )?
                }
                Value::VarChar(_) | Value::NVarChar(_) => {
                    let f = implicit_convert(&args[0], &DataType::Float)?
                        .as_f64()
                        .unwrap_or(0.0);
                    Value::Float(if ceil { f.ceil() } else { f.floor() })
                }
                v if v.as_i64().is_some() => v.clone(),
                v => {
                    return Err(SqlError::new(
                        8116,
                        16,
                        format!(
                            "Argument data type {} is invalid for argument 1 of {} function.",
                            v.type_name(),
                            name.to_ascii_lowercase()
                        ),
                    ))
                }
            })
        }
        "ROUND" => {
            if n != 2 && n != 3 {
                return Err(wrong_args(name, 2));
            }
            let digits = match int_arg(&args[1], name)? {
                Some(d) => d.clamp(-38, 38) as i32,
                None => return Ok(Value::Null),
            };
            let truncate = match args.get(2) {
                Some(v) => int_arg(v, name)?.unwrap_or(0) != 0,
                None => false,
            };
            Ok(match &args[0] {
                Value::Null => Value::Null,
                Value::Decimal(d) => Value::Decimal(d.round(digits, truncate)?),
                Value::Money(_) | Value::SmallMoney(_) => {
                    let d = args[0]
                        .as_decimal()
                        .unwrap_or(Decimal::new(0, 1, 0))
                        .round(digits, truncate)?;
                    convert(
                        &Value::Decimal(d),
                        &args[0].data_type().unwrap_or(DataType::Money),
                        None,
                    )?
                }
                Value::Float(_) | Value::Real(_) | Value::VarChar(_) | Value::NVarChar(_) => {
                    let f = implicit_convert(&args[0], &DataType::Float)?
                        .as_f64()
                        .unwrap_or(0.0);
                    let m = 10f64.powi(digits);
                    let r = if truncate {
                        (f * m).trunc() / m
                    } else {
                        (f * m).round() / m
                    };
                    if matches!(args[0], Value::Real(_)) {
                        Value::Real(r as f32)
                    } else {
                        Value::Float(r)
                    }
                }
                v => match v.as_i64() {
                    Some(i) => {
                        let t = v.data_type().unwrap_or(DataType::Int);
                        let d = Decimal::new(i as i128, 19, 0)
                            .round(digits, truncate)
                            .map_err(|_| SqlError::overflow(&t.base_name()))?;
                        int_result(d.mantissa, &t)?
                    }
                    None => {
                        return Err(SqlError::new(
                            8116,
                            16,
                            format!(
                            "Argument data type {} is invalid for argument 1 of round function.",
                            v.type_name()
                        ),
                        ))
                    }
                },
            })
        }
        "POWER" | "SQRT" | "SQUARE" | "EXP" | "LOG" | "LOG10" | "SIN" | "COS" | "TAN" | "ATAN"
        | "ASIN" | "ACOS" => {
            let want = if name == "POWER" { 2 } else { 1 };
            if n != want && !(name == "LOG" && n == 2) {
                return Err(wrong_args(name, want));
            }
            if null_in {
                return Ok(Value::Null);
            }
            let x = implicit_convert(&args[0], &DataType::Float)?
                .as_f64()
                .unwrap_or(0.0);
            let y = match args.get(1) {
                Some(v) => implicit_convert(v, &DataType::Float)?
                    .as_f64()
                    .unwrap_or(0.0),
                None => 0.0,
            };
            let r = match name {
                "POWER" => x.powf(y),
                "SQRT" => x.sqrt(),
                "SQUARE" => x * x,
                "EXP" => x.exp(),
                "LOG" if n == 2 => x.ln() / y.ln(),
                "LOG" => x.ln(),
                "LOG10" => x.log10(),
                "SIN" => x.sin(),
                "COS" => x.cos(),
                "TAN" => x.tan(),
                "ATAN" => x.atan(),
                "ASIN" => x.asin(),
                _ => x.acos(),
            };
            if !r.is_finite() {
                return Err(SqlError::new(
                    3623,
                    16,
                    "An invalid floating point operation occurred.",
                ));
            }
            // POWER keeps the first argument's type (POWER(2, 10) is an int).
            if name == "POWER"
                && !matches!(
                    args[0],
                    Value::Float(_) | Value::Real(_) | Value::VarChar(_) | Value::NVarChar(_)
                )
            {
                let t = args[0].data_type().unwrap_or(DataType::Float);
                return convert(&Value::Float(r), &t, None);
            }
            Ok(Value::Float(r))
        }
        "PI" => {
            need(0)?;
            Ok(Value::Float(std::f64::consts::PI))
        }
        "YEAR" | "MONTH" | "DAY" => {
            need(1)?;
            if null_in {
                return Ok(Value::Null);
            }
            let d = to_datetime(&args[0])?;
            Ok(Value::Int(match name {
                "YEAR" => d.year(),
                "MONTH" => d.month() as i32,
                _ => d.day() as i32,
            }))
        }
        "EOMONTH" => {
            if n != 1 && n != 2 {
                return Err(wrong_args(name, 1));
            }
            if null_in {
                return Ok(Value::Null);
            }
            let d = to_datetime(&args[0])?.date();
            let add = match args.get(1) {
                Some(v) => int_arg(v, name)?.unwrap_or(0),
                None => 0,
            };
            let first =
                NaiveDate::from_ymd_opt(d.year(), d.month(), 1).ok_or_else(date_overflow)?;
            let shifted = add_months(
                first.and_hms_opt(0, 0, 0).unwrap_or_default(),
                add.saturating_add(1),
            )?;
            Ok(Value::Date(
                shifted.date().pred_opt().ok_or_else(date_overflow)?,
            ))
        }
        "DATEFROMPARTS" => {
            need(3)?;
            let (y, m, d) = match (
                int_arg(&args[0], name)?,
                int_arg(&args[1], name)?,
                int_arg(&args[2], name)?,
            ) {
                (Some(y), Some(m), Some(d)) => (y, m, d),
                _ => return Ok(Value::Null),
            };
            NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
                .map(Value::Date)
                .ok_or_else(|| SqlError::new(289, 16, "Cannot construct data type date, some of the arguments have values which are not valid."))
        }
        _ => Err(SqlError::new(
            195,
            15,
            format!(
                "'{}' is not a recognized built-in function name.",
                name.to_ascii_lowercase()
            ),
        )),
    }
}

fn replace_ci(s: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return s.to_string();
    }
    let sl: Vec<char> = s.chars().collect();
    let fl: Vec<char> = from.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < sl.len() {
        if i + fl.len() <= sl.len()
            && sl[i..i + fl.len()]
                .iter()
                .zip(&fl)
                .all(|(a, b)| chars_eq_ci(*a, *b))
        {
            out.push_str(to);
            i += fl.len();
        } else {
            out.push(sl[i]);
            i += 1;
        }
    }
    out
}

fn chars_eq_ci(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

fn charindex_ci(needle: &str, hay: &str, start: usize) -> usize {
    let h: Vec<char> = hay.chars().collect();
    let n: Vec<char> = needle.chars().collect();
    if n.is_empty() {
        return 0;
    }
    let from = start - 1;
    if from >= h.len() {
        return 0;
    }
    for i in from..h.len() {
        if i + n.len() <= h.len()
            && h[i..i + n.len()]
                .iter()
                .zip(&n)
                .all(|(a, b)| chars_eq_ci(*a, *b))
        {
            return i + 1;
        }
    }
    0
}

// ---- date functions ------------------------------------------------------------------------------------------

fn date_overflow() -> SqlError {
    SqlError::new(
        517,
        16,
        "Adding a value to a 'datetime' column caused an overflow.",
    )
}

fn to_datetime(v: &Value) -> Result<NaiveDateTime> {
    Ok(match v {
        Value::DateTime(d) | Value::SmallDateTime(d) | Value::DateTime2(d, _) => *d,
        Value::Date(d) => d.and_hms_opt(0, 0, 0).unwrap_or_default(),
        Value::DateTimeOffset(d, _) => d.naive_local(),
        Value::Time(t, _) => NaiveDate::from_ymd_opt(1900, 1, 1)
            .unwrap_or_default()
            .and_time(*t),
        Value::VarChar(_) | Value::NVarChar(_) => {
            match convert(v, &DataType::DateTime2(7), None)? {
                Value::DateTime2(d, _) => d,
                _ => {
                    return Err(SqlError::new(
                        241,
                        16,
                        "Conversion failed when converting date and/or time from character string.",
                    ))
                }
            }
        }
        other => match convert(other, &DataType::DateTime, None)? {
            Value::DateTime(d) => d,
            _ => {
                return Err(SqlError::new(
                    8116,
                    16,
                    "Argument data type is invalid for argument 2 of datepart function.",
                ))
            }
        },
    })
}

fn add_months(d: NaiveDateTime, months: i64) -> Result<NaiveDateTime> {
    let r = if months >= 0 {
        d.checked_add_months(Months::new(months.min(u32::MAX as i64) as u32))
    } else {
        d.checked_sub_months(Months::new(
            months.unsigned_abs().min(u32::MAX as u64) as u32
        ))
    };
    r.ok_or_else(date_overflow)
}

fn canonical_part(p: &str) -> Option<&'static str> {
    Some(match p {
        "year" | "yy" | "yyyy" => "year",
        "quarter" | "qq" | "q" => "quarter",
        "month" | "mm" | "m" => "month",
        "dayofyear" | "dy" | "y" => "dayofyear",
        "day" | "dd" | "d" => "day",
        "week" | "wk" | "ww" => "week",
        "weekday" | "dw" | "w" => "weekday",
        "hour" | "hh" => "hour",
        "minute" | "mi" | "n" => "minute",
        "second" | "ss" | "s" => "second",
        "millisecond" | "ms" => "millisecond",
        "microsecond" | "mcs" => "microsecond",
        "nanosecond" | "ns" => "nanosecond",
        "tzoffset" | "tz" => "tzoffset",
        "iso_week" | "isowk" | "isoww" => "iso_week",
        _ => return None,
    })
}

fn rewrap(template: &Value, d: NaiveDateTime) -> Result<Value> {
    Ok(match template {
        Value::Date(_) => Value::Date(d.date()),
        Value::Time(_, p) => Value::Time(d.time(), *p),
        Value::SmallDateTime(_) => {
            convert(&Value::DateTime2(d, 7), &DataType::SmallDateTime, None)?
        }
        Value::DateTime2(_, p) => Value::DateTime2(d, *p),
        Value::DateTimeOffset(o, p) => {
            let off = *o.offset();
            Value::DateTimeOffset(
                d.and_local_timezone(off)
                    .single()
                    .ok_or_else(date_overflow)?,
                *p,
            )
        }
        _ => {
            if d.year() < 1753 || d.year() > 9999 {
                return Err(date_overflow());
            }
            convert(&Value::DateTime2(d, 7), &DataType::DateTime, None)?
        }
    })
}

fn date_function(fname: &str, part_raw: &str, args: &[Value]) -> Result<Value> {
    let part = canonical_part(part_raw).ok_or_else(|| {
        SqlError::new(
            155,
            15,
            format!(
                "'{}' is not a recognized {} option.",
                part_raw,
                fname.to_ascii_lowercase()
            ),
        )
    })?;
    match fname {
        "DATEADD" => {
            if args.len() != 2 {
                return Err(wrong_args(fname, 3));
            }
            if args[0].is_null() || args[1].is_null() {
                return Ok(Value::Null);
            }
            let n = int_arg(&args[0], fname)?.unwrap_or(0);
            let template = match &args[1] {
                Value::VarChar(_) | Value::NVarChar(_) => {
                    convert(&args[1], &DataType::DateTime, None)?
                }
                v => v.clone(),
            };
            let d = to_datetime(&template)?;
            let nd = match part {
                "year" => add_months(d, n.saturating_mul(12))?,
                "quarter" => add_months(d, n.saturating_mul(3))?,
                "month" => add_months(d, n)?,
                "dayofyear" | "day" | "weekday" => d.checked_add_signed(TimeDelta::try_days(n).ok_or_else(date_overflow)?).ok_or_else(date_overflow)?,
                "week" => d.checked_add_signed(TimeDelta::try_weeks(n).ok_or_else(date_overflow)?).ok_or_else(date_overflow)?,
                "hour" => d.checked_add_signed(TimeDelta::try_hours(n).ok_or_else(date_overflow)?).ok_or_else(date_overflow)?,
                "minute" => d.checked_add_signed(TimeDelta::try_minutes(n).ok_or_else(date_overflow)?).ok_or_else(date_overflow)?,
                "second" => d.checked_add_signed(TimeDelta::try_seconds(n).ok_or_else(date_overflow)?).ok_or_else(date_overflow)?,
                "millisecond" => d.checked_add_signed(TimeDelta::try_milliseconds(n).ok_or_else(date_overflow)?).ok_or_else(date_overflow)?,
                "microsecond" => d.checked_add_signed(TimeDelta::microseconds(n)).ok_or_else(date_overflow)?,
                "nanosecond" => d.checked_add_signed(TimeDelta::nanoseconds(n)).ok_or_else(date_overflow)?,
                _ => return Err(SqlError::new(9810, 16, format!("The datepart {} is not supported by date function dateadd for data type datetime.", part))),
            };
            if matches!(template, Value::Date(_))
                && matches!(
                    part,
                    "hour" | "minute" | "second" | "millisecond" | "microsecond" | "nanosecond"
                )
            {
                return Err(SqlError::new(9810, 16, format!("The datepart {} is not supported by date function dateadd for data type date.", part)));
            }
            rewrap(&template, nd)
        }
        "DATEDIFF" | "DATEDIFF_BIG" => {
            if args.len() != 2 {
                return Err(wrong_args(fname, 3));
            }
            if args[0].is_null() || args[1].is_null() {
                return Ok(Value::Null);
            }
            let a = to_datetime(&args[0])?;
            let b = to_datetime(&args[1])?;
            let days = |x: NaiveDateTime| x.date().num_days_from_ce() as i128;
            let secs = |x: NaiveDateTime| days(x) * 86_400 + x.num_seconds_from_midnight() as i128;
            let nanos = |x: NaiveDateTime| secs(x) * 1_000_000_000 + x.nanosecond() as i128;
            let diff: i128 = match part {
                "year" => (b.year() - a.year()) as i128,
                "quarter" => {
                    ((b.year() * 4 + b.month0() as i32 / 3)
                        - (a.year() * 4 + a.month0() as i32 / 3)) as i128
                }
                "month" => {
                    ((b.year() * 12 + b.month0() as i32) - (a.year() * 12 + a.month0() as i32))
                        as i128
                }
                "dayofyear" | "day" | "weekday" => days(b) - days(a),
                // Week boundaries are Sundays (DATEFIRST 7).
                "week" => {
                    let wk = |x: NaiveDateTime| {
                        (days(x) - x.weekday().num_days_from_sunday() as i128) / 7
                    };
                    wk(b) - wk(a)
                }
                "hour" => secs(b).div_euclid(3600) - secs(a).div_euclid(3600),
                "minute" => secs(b).div_euclid(60) - secs(a).div_euclid(60),
                "second" => secs(b) - secs(a),
                "millisecond" => nanos(b).div_euclid(1_000_000) - nanos(a).div_euclid(1_000_000),
                "microsecond" => nanos(b).div_euclid(1000) - nanos(a).div_euclid(1000),
                "nanosecond" => nanos(b) - nanos(a),
                _ => {
                    return Err(SqlError::new(
                        9806,
                        16,
                        format!(
                            "The datepart {} is not supported by date function datediff.",
                            part
                        ),
                    ))
                }
            };
            if fname == "DATEDIFF_BIG" {
                return i64::try_from(diff).map(Value::BigInt).map_err(|_| {
                    SqlError::new(
                        535,
                        16,
                        "The datediff_big function resulted in an overflow.",
                    )
                });
            }
            i32::try_from(diff).map(Value::Int).map_err(|_| {
                SqlError::new(535, 16, "The datediff function resulted in an overflow. The number of dateparts separating two date/time instances is too large. Try to use datediff with a less precise datepart.")
            })
        }
        "DATEPART" | "DATENAME" => {
            if args.len() != 1 {
                return Err(wrong_args(fname, 2));
            }
            if args[0].is_null() {
                return Ok(Value::Null);
            }
            if part == "tzoffset" {
                return Ok(match &args[0] {
                    Value::DateTimeOffset(d, _) => Value::Int(d.offset().local_minus_utc() / 60),
                    _ => Value::Int(0),
                });
            }
            let d = to_datetime(&args[0])?;
            let v: i64 = match part {
                "year" => d.year() as i64,
                "quarter" => (d.month0() / 3 + 1) as i64,
                "month" => d.month() as i64,
                "dayofyear" => d.ordinal() as i64,
                "day" => d.day() as i64,
                "week" => {
                    let jan1 = NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or_default();
                    ((d.ordinal0() + jan1.weekday().num_days_from_sunday()) / 7 + 1) as i64
                }
                "weekday" => (d.weekday().num_days_from_sunday() + 1) as i64,
                "hour" => d.hour() as i64,
                "minute" => d.minute() as i64,
                "second" => d.second() as i64,
                "millisecond" => (d.nanosecond() / 1_000_000) as i64,
                "microsecond" => (d.nanosecond() / 1000) as i64,
                "nanosecond" => d.nanosecond() as i64,
                "iso_week" => d.iso_week().week() as i64,
                _ => 0,
            };
            if fname == "DATENAME" {
                let s = match part {
                    "month" => [
                        "January",
                        "February",
                        "March",
                        "April",
                        "May",
                        "June",
                        "July",
                        "August",
                        "September",
                        "October",
                        "November",
                        "December",
                    ][d.month0() as usize]
                        .to_string(),
                    "weekday" => [
                        "Sunday",
                        "Monday",
                        "Tuesday",
                        "Wednesday",
                        "Thursday",
                        "Friday",
                        "Saturday",
                    ][d.weekday().num_days_from_sunday() as usize]
                        .to_string(),
                    _ => v.to_string(),
                };
                return Ok(Value::NVarChar(s));
            }
            Ok(Value::Int(v as i32))
        }
        _ => Err(SqlError::new(
            195,
            15,
            format!(
                "'{}' is not a recognized built-in function name.",
                fname.to_ascii_lowercase()
            ),
        )),
    }
}

/// A SELECT that reads no table (`SELECT @@SPID`, `SELECT @x AS y`, `SELECT @a = 1, @b = N'x'`): the session can
/// answer it with [`eval`] alone, keeping full T-SQL typing (e.g. VARBINARY from CERTENCODED) without SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum TablelessSelect<'a> {
    /// Result columns: (name as SQL Server reports it, expression).
    Columns(Vec<(String, &'a Expr)>),
    /// Variable assignments in order: (variable, operator, expression).
    Assignments(Vec<(&'a str, crate::ast::AssignOp, &'a Expr)>),
}

/// Recognises a [`TablelessSelect`]; None when the query needs SQLite (FROM, WHERE, TOP, ORDER BY, set
/// operations, CTEs, INTO, or a mix of assignments and columns).
pub fn tableless_select(q: &Query) -> Option<TablelessSelect<'_>> {
    use crate::ast::{SelectItem, SetExpr};
    if !q.ctes.is_empty() || !q.order_by.is_empty() || q.offset.is_some() {
        return None;
    }
    let s = match &q.body {
        SetExpr::Select(s) => s,
        _ => return None,
    };
    if !s.from.is_empty()
        || s.selection.is_some()
        || !s.group_by.is_empty()
        || s.having.is_some()
        || s.top.is_some()
        || s.into.is_some()
        || s.distinct
    {
        return None;
    }
    if s.items
        .iter()
        .all(|i| matches!(i, SelectItem::Assign { .. }))
    {
        return Some(TablelessSelect::Assignments(
            s.items
                .iter()
                .filter_map(|i| match i {
                    SelectItem::Assign { var, op, expr } => Some((var.as_str(), *op, expr)),
                    _ => None,
                })
                .collect(),
        ));
    }
    let mut cols = Vec::new();
    for i in &s.items {
        match i {
            SelectItem::Expr { expr, alias } => {
                if matches!(expr, Expr::Wildcard(_)) {
                    return None;
                }
                cols.push((
                    alias.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
                    expr,
                ));
            }
            SelectItem::Assign { .. } => return None,
        }
    }
    Some(TablelessSelect::Columns(cols))
}

#[cfg(test)]
mod tableless_tests {
    use super::*;
    use crate::ast::StatementKind;

    #[test]
    fn recognises_tableless_selects() {
        let b = crate::parser::parse_batch(
            "SELECT @@SPID, @x AS y; SELECT @a = 1, @b += 2; SELECT 1 FROM t; SELECT TOP 1 1",
        )
        .unwrap();
        let q = |i: usize| match &b[i].kind {
            StatementKind::Query(q) => q.clone(),
            _ => unreachable!(),
        };
        let q0 = q(0);
        match tableless_select(&q0) {
            Some(TablelessSelect::Columns(c)) => assert_eq!(
                c.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
                vec!["", "y"]
            ),
            other => panic!("{:?}", other),
        }
        let q1 = q(1);
        assert!(
            matches!(tableless_select(&q1), Some(TablelessSelect::Assignments(a)) if a.len() == 2)
        );
        assert!(tableless_select(&q(2)).is_none());
        assert!(tableless_select(&q(3)).is_none());
    }
}
