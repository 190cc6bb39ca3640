//! Translation of T-SQL DML/DDL into SQLite text. Semantics that SQLite lacks are delegated to `tsql_*`
//! functions (see [`crate::storage`]); declared T-SQL types come back as metadata so the engine can store them
//! inside the database file and type result columns.

use crate::ast::*;
use crate::error::{Result, SqlError};
use crate::storage::{COLLATION_CI_AS, COLLATION_DECIMAL};
use crate::types::{arithmetic_result, concat_result, DataType, Len};

/// What the engine knows about tables (user tables and system views alike). Table keys are
/// [`table_key`]s: `name` for dbo/unqualified names, `schema.name` otherwise, `#name` for temp tables; matching is
/// case-insensitive.
pub trait Catalog {
    /// Declared column types in column order, or None for an unknown table.
    fn column_types(&self, table: &str) -> Option<Vec<(String, DataType)>>;
    /// The IDENTITY column of a table, if any (INSERT without a column list skips it).
    fn identity_column(&self, _table: &str) -> Option<String> {
        None
    }
    /// Declared type of a session variable (@name), to type expressions that use it.
    fn variable_type(&self, _name: &str) -> Option<DataType> {
        None
    }
}

/// A catalog that knows nothing (every type is inferred from literals only).
pub struct NoCatalog;
impl Catalog for NoCatalog {
    fn column_types(&self, _table: &str) -> Option<Vec<(String, DataType)>> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslationKind {
    Query,
    /// SELECT @a = …: run the query; the last row's columns go to `assign_to` (no rows: variables unchanged).
    SelectAssign,
    SelectInto,
    Insert,
    Update,
    Delete,
    CreateTable,
    AlterTable,
    DropTable,
    CreateIndex,
    DropIndex,
    CreateView,
    DropView,
    Truncate,
}

#[derive(Debug, Clone, PartialEq)]
/// Result columns are empty when the shape could not be inferred (a `*` over a table the catalog does not
/// know): use SQLite's column names then, with types by storage class.
pub struct ResultColumn {
    /// Column name as SQL Server reports it ("" for an unnamed expression).
    pub name: String,
    /// The T-SQL type when it could be inferred; the engine reads stored values as this type.
    pub ty: Option<DataType>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    pub name: String,
    /// None for a computed column.
    pub ty: Option<DataType>,
    pub nullable: bool,
    /// IDENTITY(seed, increment)
    pub identity: Option<(i64, i64)>,
    /// DEFAULT as SQLite expression text.
    pub default: Option<String>,
    pub default_name: Option<String>,
    /// Explicit COLLATE name as written.
    pub collation: Option<String>,
    /// Computed column expression (SQLite text).
    pub computed: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintMeta {
    /// As declared; None means the engine generates SQL Server-style names (PK__t__…).
    pub name: Option<String>,
    /// "PRIMARY KEY", "UNIQUE", "FOREIGN KEY", "CHECK"
    pub kind: &'static str,
    pub columns: Vec<String>,
    pub clustered: Option<bool>,
    pub references: Option<(String, Vec<String>)>,
}

/// Declared T-SQL metadata of a table, for the engine to store inside the database file.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMeta {
    /// [`table_key`] of the table.
    pub name: String,
    pub schema: String,
    pub columns: Vec<ColumnMeta>,
    pub constraints: Vec<ConstraintMeta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub kind: TranslationKind,
    /// One SQLite statement.
    pub sql: String,
    /// Further statements to run after `sql`, in order (e.g. DROP TABLE a, b).
    pub extra: Vec<String>,
    /// Bound parameters: `?1` is `params[0]`. Variables by name with '@', globals with '@@'.
    pub params: Vec<String>,
    /// Result set columns (SELECT, or RETURNING from OUTPUT).
    pub columns: Vec<ResultColumn>,
    /// SELECT @v = …: variables receiving the columns, in order.
    pub assign_to: Vec<String>,
    /// CREATE TABLE / ALTER TABLE ADD / SELECT INTO: declared metadata.
    pub table: Option<TableMeta>,
    /// Key of the table written or defined, if any.
    pub target: Option<String>,
}

/// Translates one DML/DDL statement. Procedural and admin statements are the session's, not SQLite's: they give
/// an error here.
pub fn translate(stmt: &Statement, catalog: &dyn Catalog) -> Result<Translation> {
    let mut t = Tx {
        catalog,
        params: Vec::new(),
        scopes: Vec::new(),
    };
    let r = t.statement(&stmt.kind);
    r.map_err(|e| e.at_line(stmt.line))
}

/// Translates a query on its own: what [`crate::eval::Context::subquery`] and `exists` receive, e.g. for
/// `IF EXISTS (SELECT …)` or `SET @n = (SELECT COUNT(*) FROM t)`.
pub fn translate_query(query: &Query, catalog: &dyn Catalog) -> Result<Translation> {
    let mut t = Tx {
        catalog,
        params: Vec::new(),
        scopes: Vec::new(),
    };
    t.top_query(query)
}

/// Translates `SELECT <expr>` for an expression the engine prefers to run inside SQLite.
pub fn translate_expression(expr: &Expr, catalog: &dyn Catalog) -> Result<Translation> {
    let q = Query {
        ctes: vec![],
        body: SetExpr::Select(Box::new(Select {
            distinct: false,
            top: None,
            items: vec![SelectItem::Expr {
                expr: expr.clone(),
                alias: None,
            }],
            into: None,
            from: vec![],
            selection: None,
            group_by: vec![],
            having: None,
        })),
        order_by: vec![],
        offset: None,
        fetch: None,
        option: None,
    };
    translate_query(&q, catalog)
}

/// `DECLARE @t TABLE (…)`: the table variable becomes a table in SQLite's temp schema named `@t` (the engine
/// drops it when the batch ends); later statements reference it as `temp."@t"`, catalog key `@t`.
pub fn translate_table_variable(
    name: &str,
    columns: &[ColumnDef],
    constraints: &[TableConstraint],
    catalog: &dyn Catalog,
) -> Result<Translation> {
    let ct = CreateTable {
        name: ObjectName(vec![Ident::new(name)]),
        columns: columns.to_vec(),
        constraints: constraints.to_vec(),
    };
    let mut t = Tx {
        catalog,
        params: Vec::new(),
        scopes: Vec::new(),
    };
    t.create_table(&ct)
}

/// Key of a table name for [`Catalog`] lookups and metadata.
pub fn table_key(name: &ObjectName) -> String {
    let n = name.name();
    match name.schema() {
        Some(s) if !s.is_empty() && !s.eq_ignore_ascii_case("dbo") => format!("{}.{}", s, n),
        _ => n.to_string(),
    }
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn lit_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// SQLite reference to a table.
fn table_sql(name: &ObjectName) -> String {
    let n = name.name();
    // #temp tables and @table variables live in SQLite's per-connection temp schema.
    if n.starts_with('#') || n.starts_with('@') {
        return format!("temp.{}", q(n));
    }
    let key = table_key(name);
    match name.database() {
        Some(db) if !db.is_empty() => format!("{}.{}", q(db), q(&key)),
        _ => q(&key),
    }
}

/// CASE/IIF/COALESCE/UNION: the type both sides convert to; an untyped side (NULL) takes the other's.
fn either_type(a: Option<DataType>, b: Option<DataType>) -> Option<DataType> {
    match (a, b) {
        (Some(x), Some(y)) => Some(crate::types::union_result(&x, &y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn unsupported(what: &str) -> SqlError {
    SqlError::unsupported(what, 0)
}

#[derive(Clone)]
struct ScopeTable {
    /// Alias or table name used to qualify columns.
    qualifier: String,
    key: String,
    columns: Option<Vec<(String, Option<DataType>)>>,
}

struct Tx<'c> {
    catalog: &'c dyn Catalog,
    params: Vec<String>,
    scopes: Vec<Vec<ScopeTable>>,
}

fn type_lit(t: &Option<DataType>) -> String {
    match t {
        Some(t) => lit_str(&t.to_string()),
        None => "NULL".into(),
    }
}

fn collation_for(c: &str) -> &'static str {
    let u = c.to_ascii_uppercase();
    if u.contains("_CS") || u.ends_with("_BIN") || u.ends_with("_BIN2") {
        "BINARY"
    } else {
        COLLATION_CI_AS
    }
}

impl<'c> Tx<'c> {
    fn base(&self, kind: TranslationKind, sql: String) -> Translation {
        Translation {
            kind,
            sql,
            extra: vec![],
            params: self.params.clone(),
            columns: vec![],
            assign_to: vec![],
            table: None,
            target: None,
        }
    }

    fn param(&mut self, name: &str) -> String {
        let pos = self
            .params
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name));
        let i = match pos {
            Some(i) => i,
            None => {
                self.params.push(name.to_string());
                self.params.len() - 1
            }
        };
        format!("?{}", i + 1)
    }

    fn lookup_table(&self, key: &str) -> Option<Vec<(String, Option<DataType>)>> {
        // CTEs and derived tables in scope shadow catalog tables.
        for scope in self.scopes.iter().rev() {
            for t in scope {
                if t.key.eq_ignore_ascii_case(key)
                    && t.columns.is_some()
                    && t.qualifier.eq_ignore_ascii_case(key)
                {
                    return t.columns.clone();
                }
            }
        }
        self.catalog
            .column_types(key)
            .map(|c| c.into_iter().map(|(n, t)| (n, Some(t))).collect())
    }

    fn column_type(&self, parts: &[Ident]) -> Option<DataType> {
        let col = parts.last()?.value.as_str();
        let find = |cols: &Option<Vec<(String, Option<DataType>)>>| -> Option<Option<DataType>> {
            cols.as_ref()?
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(col))
                .map(|(_, t)| *t)
        };
        if parts.len() >= 2 {
            let qual = parts[parts.len() - 2].value.as_str();
            for scope in self.scopes.iter().rev() {
                for t in scope {
                    if t.qualifier.eq_ignore_ascii_case(qual) || t.key.eq_ignore_ascii_case(qual) {
                        return find(&t.columns).flatten();
                    }
                }
            }
            return None;
        }
        for scope in self.scopes.iter().rev() {
            for t in scope {
                if let Some(ty) = find(&t.columns) {
                    return ty;
                }
            }
        }
        None
    }

    fn statement(&mut self, k: &StatementKind) -> Result<Translation> {
        match k {
            StatementKind::Query(qy) => self.top_query(qy),
            StatementKind::Insert(i) => self.insert(i),
            StatementKind::Update(u) => self.update(u),
            StatementKind::Delete(d) => self.delete(d),
            StatementKind::CreateTable(ct) => self.create_table(ct),
            StatementKind::AlterTable { name, action } => self.alter_table(name, action),
            StatementKind::DropTable { if_exists, names } => {
                let stmts: Vec<String> = names
                    .iter()
                    .map(|n| {
                        format!(
                            "DROP TABLE {}{}",
                            if *if_exists { "IF EXISTS " } else { "" },
                            table_sql(n)
                        )
                    })
                    .collect();
                let mut t = self.base(TranslationKind::DropTable, stmts[0].clone());
                t.extra = stmts[1..].to_vec();
                t.target = Some(table_key(&names[0]));
                Ok(t)
            }
            StatementKind::TruncateTable(n) => {
                let mut t = self.base(
                    TranslationKind::Truncate,
                    format!("DELETE FROM {}", table_sql(n)),
                );
                t.target = Some(table_key(n));
                Ok(t)
            }
            StatementKind::CreateIndex(ci) => {
                let cols: Vec<String> = ci
                    .columns
                    .iter()
                    .map(|(c, d)| format!("{}{}", q(&c.value), if *d { " DESC" } else { "" }))
                    .collect();
                let table_ref = table_sql(&ci.table);
                // The index lives in the table's database; its name is unqualified.
                let (prefix, tname) = match table_ref.split_once('.') {
                    Some((db, t))
                        if !table_ref.starts_with('"') || ci.table.name().starts_with('#') =>
                    {
                        (format!("{}.", db), t.to_string())
                    }
                    _ => (String::new(), table_ref.clone()),
                };
                let mut sql = format!(
                    "CREATE {}INDEX {}{} ON {} ({})",
                    if ci.unique { "UNIQUE " } else { "" },
                    prefix,
                    q(&ci.name.value),
                    tname,
                    cols.join(", ")
                );
                if let Some(f) = &ci.filter {
                    self.scopes.push(vec![self.scope_table(&ci.table, None)]);
                    let (w, _) = self.expr(f)?;
                    self.scopes.pop();
                    sql.push_str(&format!(" WHERE {}", w));
                }
                let mut t = self.base(TranslationKind::CreateIndex, sql);
                t.target = Some(table_key(&ci.table));
                Ok(t)
            }
            StatementKind::DropIndex { if_exists, indexes } => {
                let stmts: Vec<String> = indexes
                    .iter()
                    .map(|(ix, table)| {
                        let prefix = match table {
                            Some(t) if t.name().starts_with('#') => "temp.".to_string(),
                            _ => String::new(),
                        };
                        format!(
                            "DROP INDEX {}{}{}",
                            if *if_exists { "IF EXISTS " } else { "" },
                            prefix,
                            q(&ix.value)
                        )
                    })
                    .collect();
                let mut t = self.base(TranslationKind::DropIndex, stmts[0].clone());
                t.extra = stmts[1..].to_vec();
                Ok(t)
            }
            StatementKind::CreateView {
                name,
                query,
                or_alter,
            } => {
                let (sql, cols) = self.query(query)?;
                let mut t = self.base(
                    TranslationKind::CreateView,
                    format!("CREATE VIEW {} AS {}", table_sql(name), sql),
                );
                if *or_alter {
                    t.extra.push(t.sql.clone());
                    t.sql = format!("DROP VIEW IF EXISTS {}", table_sql(name));
                }
                if !self.params.is_empty() {
                    return Err(SqlError::new(
                        4104,
                        16,
                        "Variables are not allowed in a view definition.",
                    ));
                }
                t.columns = cols;
                t.target = Some(table_key(name));
                Ok(t)
            }
            StatementKind::DropView { if_exists, names } => {
                let stmts: Vec<String> = names
                    .iter()
                    .map(|n| {
                        format!(
                            "DROP VIEW {}{}",
                            if *if_exists { "IF EXISTS " } else { "" },
                            table_sql(n)
                        )
                    })
                    .collect();
                let mut t = self.base(TranslationKind::DropView, stmts[0].clone());
                t.extra = stmts[1..].to_vec();
                Ok(t)
            }
            _ => Err(SqlError::new(
                40000,
                16,
                "Statement is not DML or DDL; the session executes it.",
            )),
        }
    }

    fn scope_table(&self, name: &ObjectName, alias: Option<&Ident>) -> ScopeTable {
        let key = table_key(name);
        ScopeTable {
            qualifier: alias
                .map(|a| a.value.clone())
                .unwrap_or_else(|| name.name().to_string()),
            columns: self.lookup_table(&key),
            key,
        }
    }

    // ---- expressions -------------------------------------------------------------------------------------------

    fn expr(&mut self, e: &Expr) -> Result<(String, Option<DataType>)> {
        Ok(match e {
            Expr::Literal(l) => match l {
                Literal::Null => ("NULL".into(), None),
                Literal::Int(n) => (
                    n.to_string(),
                    Some(if *n >= i32::MIN as i64 && *n <= i32::MAX as i64 {
                        DataType::Int
                    } else {
                        DataType::Decimal {
                            precision: n.unsigned_abs().to_string().len() as u8,
                            scale: 0,
                            numeric: true,
                        }
                    }),
                ),
                // Exact literals travel as text so SQLite never rounds them through a double.
                Literal::Decimal(s) => {
                    let d = crate::decimal::Decimal::parse(s);
                    (
                        lit_str(&d.map(|d| d.to_string()).unwrap_or_else(|| s.clone())),
                        d.map(|d| d.data_type()),
                    )
                }
                Literal::Float(f) => (format!("{:?}", f), Some(DataType::Float)),
                Literal::Money(s) => {
                    let v = crate::eval::eval(e, &crate::eval::EmptyContext)?;
                    let txt = match crate::storage::to_stored(&v) {
                        crate::storage::Stored::Text(t) => t,
                        _ => s.clone(),
                    };
                    (lit_str(&txt), Some(DataType::Money))
                }
                Literal::String(s) => (
                    lit_str(s),
                    Some(DataType::VarChar(Len::N((s.len() as u32).clamp(1, 8000)))),
                ),
                Literal::NString(s) => (
                    lit_str(s),
                    Some(DataType::NVarChar(Len::N(
                        (s.chars().count() as u32).clamp(1, 4000),
                    ))),
                ),
                Literal::Binary(b) => (
                    format!(
                        "X'{}'",
                        b.iter().map(|x| format!("{:02X}", x)).collect::<String>()
                    ),
                    Some(DataType::VarBinary(Len::N((b.len() as u32).clamp(1, 8000)))),
                ),
                Literal::Default => return Err(SqlError::syntax_near_keyword("DEFAULT", 0)),
            },
            Expr::Variable(v) => {
                let ty = self.catalog.variable_type(v);
                (self.param(v), ty)
            }
            Expr::Global(g) => {
                let ty = match g.to_ascii_uppercase().as_str() {
                    "@@ROWCOUNT" | "@@TRANCOUNT" | "@@ERROR" | "@@FETCH_STATUS" | "@@DATEFIRST"
                    | "@@MAX_PRECISION" => Some(DataType::Int),
                    "@@SPID" | "@@LANGID" => Some(DataType::SmallInt),
                    "@@SERVERNAME" | "@@SERVICENAME" | "@@LANGUAGE" => {
                        Some(DataType::NVarChar(Len::N(128)))
                    }
                    "@@VERSION" => Some(DataType::NVarChar(Len::N(300))),
                    "@@IDENTITY" => Some(DataType::Decimal {
                        precision: 38,
                        scale: 0,
                        numeric: true,
                    }),
                    _ => None,
                };
                (self.param(g), ty)
            }
            Expr::Column(parts) => {
                let ty = self.column_type(parts);
                let sql = parts
                    .iter()
                    .filter(|p| !p.value.is_empty())
                    .map(|p| q(&p.value))
                    .collect::<Vec<_>>();
                // Only the last two parts mean something to SQLite (qualifier.column).
                let n = sql.len();
                (sql[n.saturating_sub(2)..].join("."), ty)
            }
            Expr::Wildcard(None) => ("*".into(), None),
            Expr::Wildcard(Some(n)) => (format!("{}.*", q(n.name())), None),
            Expr::Nested(inner) => {
                let (s, t) = self.expr(inner)?;
                (format!("({})", s), t)
            }
            Expr::Unary { op, expr } => {
                let (s, t) = self.expr(expr)?;
                match op {
                    UnaryOp::Neg => (format!("-({})", s), t),
                    UnaryOp::Plus => (s, t),
                    UnaryOp::BitNot => (format!("~({})", s), t),
                    UnaryOp::Not => (format!("NOT ({})", s), Some(DataType::Bit)),
                }
            }
            Expr::Binary { .. } => self.binary_chain(e)?,
            Expr::IsNull { expr, negated } => {
                let (s, _) = self.expr(expr)?;
                (
                    format!("({} IS {}NULL)", s, if *negated { "NOT " } else { "" }),
                    Some(DataType::Bit),
                )
            }
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
            } => {
                let (s, _) = self.expr(expr)?;
                let (p, _) = self.expr(pattern)?;
                let esc = match escape {
                    Some(x) => Some(self.expr(x)?.0),
                    None => None,
                };
                let simple = matches!(&**pattern, Expr::Literal(Literal::String(x)) | Expr::Literal(Literal::NString(x)) if !x.contains('['));
                let not = if *negated { "NOT " } else { "" };
                let sql = if simple {
                    match esc {
                        Some(e) => format!("({} {}LIKE {} ESCAPE {})", s, not, p, e),
                        None => format!("({} {}LIKE {})", s, not, p),
                    }
                } else {
                    let args = match esc {
                        Some(e) => format!("{}, {}, {}", s, p, e),
                        None => format!("{}, {}", s, p),
                    };
                    format!("({}(tsql_like({}) = 1))", not, args)
                };
                (sql, Some(DataType::Bit))
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (s, t) = self.expr(expr)?;
                let s = if t.is_some_and(|t| t.is_string()) {
                    format!("{} COLLATE TSQL_CI_AS", s)
                } else {
                    s
                };
                let mut items = Vec::new();
                for i in list {
                    let (x, xt) = self.expr(i)?;
                    let x = match t {
                        Some(tt) if tt.is_temporal() => {
                            self.temporal_operand(x, xt, Some(i), tt)?
                        }
                        _ => x,
                    };
                    items.push(x);
                }
                (
                    format!(
                        "({} {}IN ({}))",
                        s,
                        if *negated { "NOT " } else { "" },
                        items.join(", ")
                    ),
                    Some(DataType::Bit),
                )
            }
            Expr::InSubquery {
                expr,
                query,
                negated,
            } => {
                let (s, _) = self.expr(expr)?;
                let (sub, _) = self.query(query)?;
                (
                    format!("({} {}IN ({}))", s, if *negated { "NOT " } else { "" }, sub),
                    Some(DataType::Bit),
                )
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let (s, st) = self.expr(expr)?;
                let (l, lt) = self.expr(low)?;
                let (h, ht) = self.expr(high)?;
                let (l, h) = match st {
                    Some(t) if t.is_temporal() => (
                        self.temporal_operand(l, lt, Some(low), t)?,
                        self.temporal_operand(h, ht, Some(high), t)?,
                    ),
                    _ => (l, h),
                };
                (
                    format!(
                        "({} {}BETWEEN {} AND {})",
                        s,
                        if *negated { "NOT " } else { "" },
                        l,
                        h
                    ),
                    Some(DataType::Bit),
                )
            }
            Expr::Exists { query, negated } => {
                let (sub, _) = self.query(query)?;
                (
                    format!("({}EXISTS ({}))", if *negated { "NOT " } else { "" }, sub),
                    Some(DataType::Bit),
                )
            }
            Expr::Subquery(qy) => {
                let (sub, cols) = self.query(qy)?;
                (format!("({})", sub), cols.first().and_then(|c| c.ty))
            }
            Expr::Case {
                operand,
                whens,
                else_,
            } => {
                let mut s = String::from("CASE");
                if let Some(o) = operand {
                    s.push(' ');
                    s.push_str(&self.expr(o)?.0);
                }
                let mut ty = None;
                for (w, t) in whens {
                    let (ws, _) = self.expr(w)?;
                    let (ts, tt) = self.expr(t)?;
                    ty = either_type(ty, tt);
                    s.push_str(&format!(" WHEN {} THEN {}", ws, ts));
                }
                if let Some(e) = else_ {
                    let (es, et) = self.expr(e)?;
                    ty = either_type(ty, et);
                    s.push_str(&format!(" ELSE {}", es));
                }
                s.push_str(" END");
                (s, ty)
            }
            Expr::Cast { expr, ty, try_ } => {
                let (s, from) = self.expr(expr)?;
                (
                    format!(
                        "tsql_convert({}, {}, NULL, {}{})",
                        s,
                        lit_str(&ty.to_string()),
                        type_lit(&from),
                        if *try_ { ", 1" } else { "" }
                    ),
                    Some(*ty),
                )
            }
            Expr::Convert {
                ty,
                expr,
                style,
                try_,
            } => {
                let (s, from) = self.expr(expr)?;
                let st = match style {
                    Some(x) => self.expr(x)?.0,
                    None => "NULL".into(),
                };
                (
                    format!(
                        "tsql_convert({}, {}, {}, {}{})",
                        s,
                        lit_str(&ty.to_string()),
                        st,
                        type_lit(&from),
                        if *try_ { ", 1" } else { "" }
                    ),
                    Some(*ty),
                )
            }
            Expr::Collate { expr, collation } => {
                let (s, t) = self.expr(expr)?;
                (format!("{} COLLATE {}", s, collation_for(collation)), t)
            }
            Expr::Function(f) => self.function(f)?,
        })
    }

    /// Left-deep operator chains (a + b + c …) are walked iteratively so their length costs no stack.
    fn binary_chain(&mut self, e: &Expr) -> Result<(String, Option<DataType>)> {
        let mut spine: Vec<(BinOp, &Expr)> = Vec::new();
        let mut cur = e;
        while let Expr::Binary { op, left, right } = cur {
            spine.push((*op, right));
            cur = left;
        }
        let (mut acc, mut acc_ty) = self.expr(cur)?;
        let mut acc_is_col = matches!(cur, Expr::Column(_));
        let mut acc_expr = Some(cur);
        for (op, right) in spine.into_iter().rev() {
            let (s, t) = self.binary(op, acc, acc_ty, acc_is_col, acc_expr, right)?;
            acc = s;
            acc_ty = t;
            acc_is_col = false;
            acc_expr = None;
        }
        Ok((acc, acc_ty))
    }

    /// The other operand of a comparison with a date/time value, in the stored canonical text form: string
    /// literals are converted now (241 if invalid), anything else through `tsql_convert` at run time.
    fn temporal_operand(
        &mut self,
        sql: String,
        ty: Option<DataType>,
        e: Option<&Expr>,
        target: DataType,
    ) -> Result<String> {
        if ty.is_some_and(|t| t.is_temporal()) {
            return Ok(sql);
        }
        if let Some(Expr::Literal(Literal::String(s) | Literal::NString(s))) = e {
            let v = crate::value::convert(&crate::value::Value::VarChar(s.clone()), &target, None)?;
            if let crate::storage::Stored::Text(t) = crate::storage::to_stored(&v) {
                return Ok(lit_str(&t));
            }
        }
        if sql == "NULL" {
            return Ok(sql);
        }
        Ok(format!(
            "tsql_convert({}, {}, NULL, {})",
            sql,
            lit_str(&target.to_string()),
            type_lit(&ty)
        ))
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: String,
        lt: Option<DataType>,
        left_is_col: bool,
        left_expr: Option<&Expr>,
        right: &Expr,
    ) -> Result<(String, Option<DataType>)> {
        let (r, rt) = self.expr(right)?;
        // Date/time values are stored as canonical text: bring the other side of a comparison to that form.
        let is_cmp = matches!(
            op,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        );
        let temporal = |t: &Option<DataType>| t.is_some_and(|t| t.is_temporal());
        let (l, r) = if is_cmp && temporal(&lt) && !temporal(&rt) {
            let target = lt.unwrap_or(DataType::DateTime2(7));
            (l, self.temporal_operand(r, rt, Some(right), target)?)
        } else if is_cmp && temporal(&rt) && !temporal(&lt) {
            let target = rt.unwrap_or(DataType::DateTime2(7));
            (self.temporal_operand(l, lt, left_expr, target)?, r)
        } else {
            (l, r)
        };
        let sym = match op {
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            _ => "",
        };
        if !sym.is_empty() {
            if matches!(op, BinOp::And | BinOp::Or) {
                return Ok((format!("({} {} {})", l, sym, r), Some(DataType::Bit)));
            }
            // String comparisons always use the instance collation explicitly, so system views and expressions
            // compare case-insensitively too (declared columns carry the same collation, so indexes still apply).
            let collate = if matches!(right, Expr::Collate { .. }) {
                ""
            } else if lt.is_some_and(|t| t.is_string()) || rt.is_some_and(|t| t.is_string()) {
                " COLLATE TSQL_CI_AS"
            } else if left_is_col || matches!(right, Expr::Column(_)) {
                ""
            } else if lt.is_some_and(|t| {
                matches!(
                    t,
                    DataType::Decimal { .. } | DataType::Money | DataType::SmallMoney
                )
            }) && rt.is_some_and(|t| {
                matches!(
                    t,
                    DataType::Decimal { .. } | DataType::Money | DataType::SmallMoney
                )
            }) {
                " COLLATE TSQL_DECIMAL"
            } else {
                ""
            };
            return Ok((
                format!("({} {} {}{})", l, sym, r, collate),
                Some(DataType::Bit),
            ));
        }
        let known = |t: &Option<DataType>| *t;
        let (lk, rk) = (known(&lt), known(&rt));
        let native_num = |t: &Option<DataType>| {
            t.is_some_and(|t| t.is_integer() || matches!(t, DataType::Float | DataType::Real))
        };
        match op {
            BinOp::Add
                if lk.is_some_and(|t| t.is_string()) && rk.is_some_and(|t| t.is_string()) =>
            {
                let ty = concat_result(
                    &lk.unwrap_or(DataType::VarChar(Len::Max)),
                    &rk.unwrap_or(DataType::VarChar(Len::Max)),
                );
                Ok((format!("({} || {})", l, r), Some(ty)))
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul if native_num(&lk) && native_num(&rk) => {
                let c = match op {
                    BinOp::Add => '+',
                    BinOp::Sub => '-',
                    _ => '*',
                };
                let ty = arithmetic_result(
                    &lk.unwrap_or(DataType::Int),
                    &rk.unwrap_or(DataType::Int),
                    c,
                );
                Ok((format!("({} {} {})", l, c, r), Some(ty)))
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let (f, c) = match op {
                    BinOp::Add => ("tsql_add", '+'),
                    BinOp::Sub => ("tsql_sub", '-'),
                    BinOp::Mul => ("tsql_mul", '*'),
                    BinOp::Div => ("tsql_div", '/'),
                    _ => ("tsql_mod", '%'),
                };
                let ty = match (lk, rk) {
                    (Some(a), Some(b)) => Some(arithmetic_result(&a, &b, c)),
                    _ => None,
                };
                Ok((
                    format!("{}({}, {}, {}, {})", f, l, r, type_lit(&lt), type_lit(&rt)),
                    ty,
                ))
            }
            BinOp::BitAnd => Ok((format!("({} & {})", l, r), lk.or(rk))),
            BinOp::BitOr => Ok((format!("({} | {})", l, r), lk.or(rk))),
            // SQLite has no XOR operator.
            BinOp::BitXor => Ok((
                format!("(({0}) | ({1})) - (({0}) & ({1}))", l, r),
                lk.or(rk),
            )),
            _ => Err(unsupported("operator")),
        }
    }

    fn function(&mut self, f: &FunctionCall) -> Result<(String, Option<DataType>)> {
        let name = f.name.name().to_ascii_uppercase();
        let schema_ok = f.name.0.len() == 1
            || f.name
                .schema()
                .is_some_and(|s| s.eq_ignore_ascii_case("sys") || s.eq_ignore_ascii_case("dbo"));
        // Date functions: the datepart is a keyword, passed as a string.
        if matches!(
            name.as_str(),
            "DATEADD" | "DATEDIFF" | "DATEDIFF_BIG" | "DATEPART" | "DATENAME"
        ) && !f.args.is_empty()
        {
            let part = match &f.args[0] {
                Expr::Column(p) if p.len() == 1 => p[0].value.to_ascii_lowercase(),
                Expr::Literal(Literal::String(s)) | Expr::Literal(Literal::NString(s)) => {
                    s.to_ascii_lowercase()
                }
                _ => {
                    return Err(SqlError::new(
                        1023,
                        15,
                        format!(
                            "Invalid parameter 1 specified for {}.",
                            name.to_ascii_lowercase()
                        ),
                    ))
                }
            };
            let mut args = vec![lit_str(&part)];
            let mut types = Vec::new();
            for a in &f.args[1..] {
                let (s, t) = self.expr(a)?;
                args.push(s);
                types.push(t);
            }
            let ty = match name.as_str() {
                "DATEADD" => Some(match types.get(1).copied().flatten() {
                    Some(t) if t.is_temporal() => t,
                    _ => DataType::DateTime,
                }),
                "DATEDIFF" | "DATEPART" => Some(DataType::Int),
                "DATEDIFF_BIG" => Some(DataType::BigInt),
                _ => Some(DataType::NVarChar(Len::N(30))),
            };
            return Ok((
                format!("tsql_{}({})", name.to_ascii_lowercase(), args.join(", ")),
                ty,
            ));
        }
        let mut args = Vec::new();
        let mut types = Vec::new();
        for a in &f.args {
            let (s, t) = self.expr(a)?;
            args.push(s);
            types.push(t);
        }
        let t0 = types.first().copied().flatten();
        let over = match &f.over {
            Some(w) => {
                let mut parts = Vec::new();
                if !w.partition_by.is_empty() {
                    let mut p = Vec::new();
                    for e in &w.partition_by {
                        p.push(self.expr(e)?.0);
                    }
                    parts.push(format!("PARTITION BY {}", p.join(", ")));
                }
                if !w.order_by.is_empty() {
                    parts.push(format!("ORDER BY {}", self.order_by(&w.order_by)?));
                }
                format!(" OVER ({})", parts.join(" "))
            }
            None => String::new(),
        };
        let distinct = if f.distinct { "DISTINCT " } else { "" };
        let call =
            |n: &str, args: &[String]| format!("{}({}{}){}", n, distinct, args.join(", "), over);
        let is_exact = |t: Option<DataType>| {
            t.is_some_and(|t| {
                matches!(
                    t,
                    DataType::Decimal { .. } | DataType::Money | DataType::SmallMoney
                )
            })
        };
        if schema_ok {
            let r = match name.as_str() {
                "COUNT" => Some((call("count", &args), Some(DataType::Int))),
                "COUNT_BIG" => Some((call("count", &args), Some(DataType::BigInt))),
                "SUM" if is_exact(t0) => Some((
                    call("tsql_sum", &args),
                    t0.map(|t| match t {
                        DataType::Decimal { scale, .. } => DataType::Decimal {
                            precision: 38,
                            scale,
                            numeric: false,
                        },
                        other => other,
                    }),
                )),
                "AVG" if is_exact(t0) => Some((
                    call("tsql_avg", &args),
                    // AVG(decimal(p, s)) is decimal(38, max(s, 6)).
                    t0.map(|t| match t {
                        DataType::Decimal { scale, .. } => DataType::Decimal {
                            precision: 38,
                            scale: scale.max(6),
                            numeric: false,
                        },
                        other => other,
                    }),
                )),
                "SUM" => Some((
                    call("sum", &args),
                    t0.map(|t| {
                        if t.is_integer() && t != DataType::BigInt {
                            DataType::Int
                        } else {
                            t
                        }
                    }),
                )),
                "AVG" => Some((
                    call("avg", &args),
                    t0.map(|t| {
                        if t.is_integer() && t != DataType::BigInt {
                            DataType::Int
                        } else {
                            t
                        }
                    }),
                )),
                "MIN" | "MAX" => Some((call(&name.to_ascii_lowercase(), &args), t0)),
                "STRING_AGG" => Some((call("group_concat", &args), t0)),
                "ROW_NUMBER" | "RANK" | "DENSE_RANK" | "NTILE" => Some((
                    call(&name.to_ascii_lowercase(), &args),
                    Some(DataType::BigInt),
                )),
                "LAG" | "LEAD" | "FIRST_VALUE" | "LAST_VALUE" => {
                    Some((call(&name.to_ascii_lowercase(), &args), t0))
                }
                "ISNULL" => Some((
                    call("ifnull", &args),
                    t0.or(types.get(1).copied().flatten()),
                )),
                "COALESCE" => Some((
                    call("coalesce", &args),
                    types.iter().fold(None, |a, b| either_type(a, *b)),
                )),
                "NULLIF" => Some((call("nullif", &args), t0)),
                "IIF" if args.len() == 3 => Some((
                    format!(
                        "(CASE WHEN {} THEN {} ELSE {} END)",
                        args[0], args[1], args[2]
                    ),
                    either_type(types[1], types[2]),
                )),
                "LEN" if args.len() == 1 => {
                    Some((format!("length(rtrim({}))", args[0]), Some(DataType::Int)))
                }
                "UPPER" | "LOWER" | "LTRIM" | "RTRIM" | "TRIM" if args.len() == 1 => {
                    Some((call(&name.to_ascii_lowercase(), &args), t0))
                }
                "SUBSTRING" if args.len() == 3 => Some((call("substr", &args), t0)),
                "CONCAT" => {
                    let unicode = types.iter().any(|t| t.is_some_and(|t| t.is_unicode()));
                    Some((
                        call("concat", &args),
                        Some(if unicode {
                            DataType::NVarChar(Len::Max)
                        } else {
                            DataType::VarChar(Len::Max)
                        }),
                    ))
                }
                "ABS"
                    if t0.is_some_and(|t| {
                        t.is_integer() || matches!(t, DataType::Float | DataType::Real)
                    }) =>
                {
                    Some((call("abs", &args), t0))
                }
                "GETDATE" | "CURRENT_TIMESTAMP" => {
                    Some(("tsql_getdate()".to_string(), Some(DataType::DateTime)))
                }
                "GETUTCDATE" => Some(("tsql_getutcdate()".to_string(), Some(DataType::DateTime))),
                "SYSDATETIME" => Some((
                    "tsql_sysdatetime()".to_string(),
                    Some(DataType::DateTime2(7)),
                )),
                "SYSUTCDATETIME" => Some((
                    "tsql_sysutcdatetime()".to_string(),
                    Some(DataType::DateTime2(7)),
                )),
                "SYSDATETIMEOFFSET" => Some((
                    "tsql_sysdatetimeoffset()".to_string(),
                    Some(DataType::DateTimeOffset(7)),
                )),
                "NEWID" => Some(("tsql_newid()".to_string(), Some(DataType::UniqueIdentifier))),
                "CRYPT_GEN_RANDOM" if args.len() == 1 => Some((
                    format!("randomblob({})", args[0]),
                    Some(DataType::VarBinary(Len::N(8000))),
                )),
                "SCOPE_IDENTITY" => Some((
                    "tsql_scope_identity()".to_string(),
                    Some(DataType::Decimal {
                        precision: 38,
                        scale: 0,
                        numeric: true,
                    }),
                )),
                "YEAR" | "MONTH" | "DAY" | "CHARINDEX" | "PATINDEX" | "DATALENGTH" | "ASCII"
                | "UNICODE" | "ISNUMERIC" | "ISDATE" => Some((
                    call(&format!("tsql_{}", name.to_ascii_lowercase()), &args),
                    Some(DataType::Int),
                )),
                "LEFT" | "RIGHT" | "REPLACE" | "REPLICATE" | "REVERSE" | "STUFF" | "ROUND"
                | "CEILING" | "FLOOR" | "SIGN" | "POWER" | "ABS" => {
                    let ty = if name == "ROUND"
                        || name == "CEILING"
                        || name == "FLOOR"
                        || name == "SIGN"
                        || name == "POWER"
                        || name == "ABS"
                    {
                        t0
                    } else {
                        t0.map(|t| {
                            if t.is_unicode() {
                                DataType::NVarChar(Len::Max)
                            } else {
                                DataType::VarChar(Len::Max)
                            }
                        })
                    };
                    Some((
                        call(&format!("tsql_{}", name.to_ascii_lowercase()), &args),
                        ty,
                    ))
                }
                "QUOTENAME" => Some((
                    call("tsql_quotename", &args),
                    Some(DataType::NVarChar(Len::N(258))),
                )),
                "SQRT" | "SQUARE" | "EXP" | "LOG" | "LOG10" | "PI" => Some((
                    call(&format!("tsql_{}", name.to_ascii_lowercase()), &args),
                    Some(DataType::Float),
                )),
                "EOMONTH" | "DATEFROMPARTS" => Some((
                    call(&format!("tsql_{}", name.to_ascii_lowercase()), &args),
                    Some(DataType::Date),
                )),
                "SPACE" | "STR" | "CHAR" => Some((
                    call(&format!("tsql_{}", name.to_ascii_lowercase()), &args),
                    Some(DataType::VarChar(Len::Max)),
                )),
                "NCHAR" | "CONCAT_WS" => Some((
                    call(&format!("tsql_{}", name.to_ascii_lowercase()), &args),
                    Some(DataType::NVarChar(Len::Max)),
                )),
                _ => None,
            };
            if let Some(r) = r {
                return Ok(r);
            }
        }
        // Everything else is an instance function the engine registers under tsql_<name>.
        let fname = format!(
            "tsql_{}",
            name.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
        );
        Ok((call(&fname, &args), None))
    }

    fn order_by(&mut self, items: &[OrderBy]) -> Result<String> {
        let mut out = Vec::new();
        for o in items {
            let (s, _) = self.expr(&o.expr)?;
            out.push(format!("{}{}", s, if o.desc { " DESC" } else { "" }));
        }
        Ok(out.join(", "))
    }

    // ---- queries -----------------------------------------------------------------------------------------------

    fn top_query(&mut self, qy: &Query) -> Result<Translation> {
        // SELECT @v = … and SELECT … INTO are only meaningful on a plain SELECT body.
        if let SetExpr::Select(s) = &qy.body {
            let assigns = s
                .items
                .iter()
                .filter(|i| matches!(i, SelectItem::Assign { .. }))
                .count();
            if assigns > 0 && assigns != s.items.len() {
                return Err(SqlError::new(
                    141,
                    15,
                    "A SELECT statement that assigns a value to a variable must not be combined with data-retrieval operations.",
                ));
            }
            if let Some(into) = &s.into {
                let mut inner = qy.clone();
                if let SetExpr::Select(sel) = &mut inner.body {
                    sel.into = None;
                }
                let (sql, cols) = self.query(&inner)?;
                let mut t = self.base(
                    TranslationKind::SelectInto,
                    format!("CREATE TABLE {} AS {}", table_sql(into), sql),
                );
                t.params = self.params.clone();
                t.table = Some(TableMeta {
                    name: table_key(into),
                    schema: into.schema().unwrap_or("dbo").to_string(),
                    columns: cols
                        .iter()
                        .map(|c| ColumnMeta {
                            name: c.name.clone(),
                            ty: c.ty,
                            nullable: true,
                            identity: None,
                            default: None,
                            default_name: None,
                            collation: None,
                            computed: None,
                        })
                        .collect(),
                    constraints: vec![],
                });
                t.target = Some(table_key(into));
                return Ok(t);
            }
            if assigns > 0 {
                let (sql, cols) = self.query(qy)?;
                let mut t = self.base(TranslationKind::SelectAssign, sql);
                t.params = self.params.clone();
                t.columns = cols;
                t.assign_to = s
                    .items
                    .iter()
                    .filter_map(|i| match i {
                        SelectItem::Assign { var, .. } => Some(var.clone()),
                        _ => None,
                    })
                    .collect();
                return Ok(t);
            }
        }
        let (sql, cols) = self.query(qy)?;
        let mut t = self.base(TranslationKind::Query, sql);
        t.params = self.params.clone();
        t.columns = cols;
        Ok(t)
    }

    fn query(&mut self, qy: &Query) -> Result<(String, Vec<ResultColumn>)> {
        let mut scope = Vec::new();
        let mut with = String::new();
        if !qy.ctes.is_empty() {
            let mut parts = Vec::new();
            for c in &qy.ctes {
                // Make earlier CTEs (and this one, for recursion) visible.
                self.scopes.push(scope.clone());
                let r = self.query(&c.query);
                self.scopes.pop();
                let (sql, cols) = r?;
                let names: Vec<String> = if c.columns.is_empty() {
                    cols.iter().map(|c| c.name.clone()).collect()
                } else {
                    c.columns.iter().map(|i| i.value.clone()).collect()
                };
                let col_list = if c.columns.is_empty() {
                    String::new()
                } else {
                    format!(
                        "({})",
                        names.iter().map(|n| q(n)).collect::<Vec<_>>().join(", ")
                    )
                };
                parts.push(format!("{}{} AS ({})", q(&c.name.value), col_list, sql));
                scope.push(ScopeTable {
                    qualifier: c.name.value.clone(),
                    key: c.name.value.clone(),
                    columns: Some(
                        names
                            .into_iter()
                            .zip(cols.iter().map(|c| c.ty).chain(std::iter::repeat(None)))
                            .collect(),
                    ),
                });
            }
            // RECURSIVE is harmless for non-recursive CTEs and required for self-reference in SQLite.
            with = format!("WITH RECURSIVE {} ", parts.join(", "));
        }
        self.scopes.push(scope);
        let r = self.query_body(qy);
        self.scopes.pop();
        let (body, cols) = r?;
        Ok((format!("{}{}", with, body), cols))
    }

    fn query_body(&mut self, qy: &Query) -> Result<(String, Vec<ResultColumn>)> {
        // A lone SELECT carries its TOP into the outer LIMIT (after ORDER BY).
        let (mut sql, cols, top) = match &qy.body {
            SetExpr::Select(s) => {
                let (sql, cols) = self.select(s)?;
                (sql, cols, s.top.as_ref())
            }
            other => {
                let (sql, cols) = self.set_expr(other)?;
                (sql, cols, None)
            }
        };
        if !qy.order_by.is_empty() {
            // ORDER BY may name select-list aliases; those resolve in SQLite as written.
            sql.push_str(&format!(" ORDER BY {}", self.order_by(&qy.order_by)?));
        }
        if let Some(t) = top {
            if t.percent || t.with_ties {
                return Err(unsupported("TOP … PERCENT / WITH TIES"));
            }
            let (n, _) = self.expr(&t.count)?;
            sql.push_str(&format!(" LIMIT {}", n));
            if qy.offset.is_some() {
                return Err(SqlError::new(
                    10741,
                    15,
                    "A TOP can not be used in the same query or sub-query as a OFFSET.",
                ));
            }
        }
        if let Some(o) = &qy.offset {
            let (os, _) = self.expr(o)?;
            let fs = match &qy.fetch {
                Some(f) => self.expr(f)?.0,
                None => "-1".into(),
            };
            sql.push_str(&format!(" LIMIT {} OFFSET {}", fs, os));
        }
        Ok((sql, cols))
    }

    fn set_expr(&mut self, e: &SetExpr) -> Result<(String, Vec<ResultColumn>)> {
        match e {
            SetExpr::Select(s) => {
                let (sql, cols) = self.select(s)?;
                if let Some(t) = &s.top {
                    // TOP inside a compound branch needs its own subquery in SQLite.
                    let (n, _) = self.expr(&t.count)?;
                    return Ok((format!("SELECT * FROM ({} LIMIT {})", sql, n), cols));
                }
                Ok((sql, cols))
            }
            SetExpr::Query(inner) => {
                let (sql, cols) = self.query(inner)?;
                Ok((format!("SELECT * FROM ({})", sql), cols))
            }
            SetExpr::SetOp { op, left, right } => {
                let (l, mut lc) = self.set_expr(left)?;
                let (r, rc) = self.set_expr(right)?;
                for (a, b) in lc.iter_mut().zip(rc) {
                    a.ty = either_type(a.ty, b.ty);
                }
                let o = match op {
                    SetOp::Union => "UNION",
                    SetOp::UnionAll => "UNION ALL",
                    SetOp::Except => "EXCEPT",
                    SetOp::Intersect => "INTERSECT",
                };
                Ok((format!("{} {} {}", l, o, r), lc))
            }
            SetExpr::Values(rows) => {
                let mut out = Vec::new();
                let mut cols = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    let mut items = Vec::new();
                    for e in row {
                        let (s, t) = self.expr(e)?;
                        if i == 0 {
                            cols.push(ResultColumn {
                                name: String::new(),
                                ty: t,
                            });
                        } else if let Some(c) = cols.get_mut(items.len()) {
                            c.ty = either_type(c.ty, t);
                        }
                        items.push(s);
                    }
                    out.push(format!("({})", items.join(", ")));
                }
                Ok((format!("VALUES {}", out.join(", ")), cols))
            }
        }
    }

    fn table_factor(&mut self, tf: &TableFactor, scope: &mut Vec<ScopeTable>) -> Result<String> {
        Ok(match tf {
            TableFactor::Table { name, alias, .. } => {
                let st = self.scope_table(name, alias.as_ref());
                scope.push(st);
                match alias {
                    Some(a) => format!("{} AS {}", table_sql(name), q(&a.value)),
                    None if name.0.len() > 1 && !name.name().starts_with('#') => {
                        // Keep the bare name usable as a qualifier (sys.objects → objects.col).
                        format!("{} AS {}", table_sql(name), q(name.name()))
                    }
                    None => table_sql(name),
                }
            }
            TableFactor::Derived {
                query,
                alias,
                columns,
            } => {
                if !columns.is_empty() {
                    return Err(unsupported("derived table column aliases"));
                }
                let (sql, cols) = self.query(query)?;
                let a = alias.as_ref().map(|a| a.value.clone()).unwrap_or_default();
                scope.push(ScopeTable {
                    qualifier: a.clone(),
                    key: a.clone(),
                    columns: Some(cols.iter().map(|c| (c.name.clone(), c.ty)).collect()),
                });
                if a.is_empty() {
                    format!("({})", sql)
                } else {
                    format!("({}) AS {}", sql, q(&a))
                }
            }
            TableFactor::Values {
                rows,
                alias,
                columns,
            } => {
                let (sql, cols) = self.set_expr(&SetExpr::Values(rows.clone()))?;
                let a = alias
                    .as_ref()
                    .map(|a| a.value.clone())
                    .unwrap_or_else(|| "v".into());
                let names: Vec<String> = if columns.is_empty() {
                    (1..=cols.len()).map(|i| format!("column{}", i)).collect()
                } else {
                    columns.iter().map(|c| c.value.clone()).collect()
                };
                // SQLite names VALUES columns column1..N: rename them to the declared aliases.
                let select_list: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("column{} AS {}", i + 1, q(n)))
                    .collect();
                scope.push(ScopeTable {
                    qualifier: a.clone(),
                    key: a.clone(),
                    columns: Some(names.into_iter().zip(cols.iter().map(|c| c.ty)).collect()),
                });
                format!(
                    "(SELECT {} FROM ({})) AS {}",
                    select_list.join(", "),
                    sql,
                    q(&a)
                )
            }
            TableFactor::Function { call, .. } => {
                // Table-valued functions would need SQLite virtual tables; name the gap instead.
                return Err(unsupported(&format!(
                    "table-valued function {}",
                    call.name.name().to_ascii_uppercase()
                )));
            }
            TableFactor::Variable { name, alias } => {
                let tf = TableFactor::Table {
                    name: ObjectName(vec![Ident::new(name.clone())]),
                    alias: Some(alias.clone().unwrap_or_else(|| Ident::new(name.clone()))),
                    hints: vec![],
                };
                return self.table_factor(&tf, scope);
            }
        })
    }

    fn translate_from(
        &mut self,
        from: &[TableWithJoins],
        scope: &mut Vec<ScopeTable>,
    ) -> Result<String> {
        let mut parts = Vec::new();
        for twj in from {
            let mut s = self.table_factor(&twj.table, scope)?;
            for j in &twj.joins {
                let kw = match j.kind {
                    JoinKind::Inner => "JOIN",
                    JoinKind::Left => "LEFT JOIN",
                    JoinKind::Right => "RIGHT JOIN",
                    JoinKind::Full => "FULL JOIN",
                    JoinKind::Cross => "CROSS JOIN",
                    JoinKind::CrossApply | JoinKind::OuterApply => {
                        return Err(unsupported("CROSS/OUTER APPLY"))
                    }
                };
                let t = self.table_factor(&j.table, scope)?;
                s.push_str(&format!(" {} {}", kw, t));
                if let Some(on) = &j.on {
                    // ON may reference every table joined so far.
                    self.scopes.push(scope.clone());
                    let r = self.expr(on);
                    self.scopes.pop();
                    s.push_str(&format!(" ON {}", r?.0));
                }
            }
            parts.push(s);
        }
        Ok(parts.join(", "))
    }

    fn select(&mut self, s: &Select) -> Result<(String, Vec<ResultColumn>)> {
        let mut scope = Vec::new();
        let from = self.translate_from(&s.from, &mut scope)?;
        self.scopes.push(scope.clone());
        let r = self.select_rest(s, &from, &scope);
        self.scopes.pop();
        r
    }

    fn select_rest(
        &mut self,
        s: &Select,
        from: &str,
        scope: &[ScopeTable],
    ) -> Result<(String, Vec<ResultColumn>)> {
        let mut items = Vec::new();
        let mut cols = Vec::new();
        // An unexpanded * makes the result shape unknown: report no columns rather than misaligned ones.
        let mut unknown_shape = false;
        for item in &s.items {
            match item {
                SelectItem::Expr {
                    expr: Expr::Wildcard(qual),
                    alias: None,
                } => {
                    // Expand * when every table's columns are known, so result columns carry T-SQL types.
                    let tables: Vec<&ScopeTable> = scope
                        .iter()
                        .filter(|t| {
                            qual.as_ref().is_none_or(|qn| {
                                t.qualifier.eq_ignore_ascii_case(qn.name())
                                    || t.key.eq_ignore_ascii_case(qn.name())
                            })
                        })
                        .collect();
                    if !tables.is_empty() && tables.iter().all(|t| t.columns.is_some()) {
                        for t in tables {
                            for (n, ty) in t.columns.as_ref().into_iter().flatten() {
                                items.push(format!("{}.{} AS {}", q(&t.qualifier), q(n), q(n)));
                                cols.push(ResultColumn {
                                    name: n.clone(),
                                    ty: *ty,
                                });
                            }
                        }
                    } else {
                        let (x, _) = self.expr(&Expr::Wildcard(qual.clone()))?;
                        unknown_shape = true;
                        items.push(x);
                    }
                }
                SelectItem::Expr { expr, alias } => {
                    let (x, ty) = self.expr(expr)?;
                    let name = match (alias, expr) {
                        (Some(a), _) => a.value.clone(),
                        (None, Expr::Column(p)) => {
                            p.last().map(|i| i.value.clone()).unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    if name.is_empty() {
                        items.push(x);
                    } else {
                        items.push(format!("{} AS {}", x, q(&name)));
                    }
                    cols.push(ResultColumn { name, ty });
                }
                SelectItem::Assign { var, op, expr } => {
                    let e = match op.binop() {
                        Some(b) => Expr::Binary {
                            op: b,
                            left: Box::new(Expr::Variable(var.clone())),
                            right: Box::new(expr.clone()),
                        },
                        None => expr.clone(),
                    };
                    let (x, ty) = self.expr(&e)?;
                    items.push(x);
                    cols.push(ResultColumn {
                        name: var.clone(),
                        ty,
                    });
                }
            }
        }
        let mut sql = format!(
            "SELECT {}{}",
            if s.distinct { "DISTINCT " } else { "" },
            items.join(", ")
        );
        if !from.is_empty() {
            sql.push_str(&format!(" FROM {}", from));
        }
        if let Some(w) = &s.selection {
            sql.push_str(&format!(" WHERE {}", self.expr(w)?.0));
        }
        if !s.group_by.is_empty() {
            let mut g = Vec::new();
            for e in &s.group_by {
                g.push(self.expr(e)?.0);
            }
            sql.push_str(&format!(" GROUP BY {}", g.join(", ")));
        }
        if let Some(h) = &s.having {
            sql.push_str(&format!(" HAVING {}", self.expr(h)?.0));
        }
        if unknown_shape {
            cols.clear();
        }
        Ok((sql, cols))
    }

    // ---- DML ---------------------------------------------------------------------------------------------------

    fn coerce(&self, value: String, ty: Option<&DataType>, table: &str, column: &str) -> String {
        match ty {
            Some(t) if value != "NULL" => format!(
                "tsql_coerce({}, {}, {}, {})",
                value,
                lit_str(&t.to_string()),
                lit_str(table),
                lit_str(column)
            ),
            _ => value,
        }
    }

    /// OUTPUT inserted.x / deleted.x → RETURNING x. `allow` names the pseudo-table that RETURNING can show.
    fn returning(
        &mut self,
        out: &Output,
        allow: &str,
        table_cols: &Option<Vec<(String, Option<DataType>)>>,
    ) -> Result<(String, Vec<ResultColumn>)> {
        if out.into.is_some() {
            return Err(unsupported("OUTPUT … INTO"));
        }
        let mut items = Vec::new();
        let mut cols = Vec::new();
        let col_ty = |n: &str| {
            table_cols.as_ref().and_then(|c| {
                c.iter()
                    .find(|(x, _)| x.eq_ignore_ascii_case(n))
                    .and_then(|(_, t)| *t)
            })
        };
        for it in &out.items {
            let (expr, alias) = match it {
                SelectItem::Expr { expr, alias } => (expr, alias),
                SelectItem::Assign { .. } => return Err(SqlError::syntax_near("=", 0)),
            };
            match expr {
                Expr::Wildcard(Some(n)) if n.name().eq_ignore_ascii_case(allow) => match table_cols
                {
                    Some(tc) => {
                        for (n, t) in tc {
                            items.push(q(n));
                            cols.push(ResultColumn {
                                name: n.clone(),
                                ty: *t,
                            });
                        }
                    }
                    None => items.push("*".into()),
                },
                Expr::Column(p) if p.len() == 2 => {
                    let pseudo = &p[0].value;
                    if !pseudo.eq_ignore_ascii_case(allow) {
                        return Err(unsupported(&format!(
                            "OUTPUT {}.* in this statement",
                            pseudo
                        )));
                    }
                    let name = alias
                        .as_ref()
                        .map(|a| a.value.clone())
                        .unwrap_or_else(|| p[1].value.clone());
                    items.push(format!("{} AS {}", q(&p[1].value), q(&name)));
                    cols.push(ResultColumn {
                        name,
                        ty: col_ty(&p[1].value),
                    });
                }
                other => {
                    let (x, ty) = self.expr(other)?;
                    let name = alias.as_ref().map(|a| a.value.clone()).unwrap_or_default();
                    items.push(if name.is_empty() {
                        x
                    } else {
                        format!("{} AS {}", x, q(&name))
                    });
                    cols.push(ResultColumn { name, ty });
                }
            }
        }
        Ok((format!(" RETURNING {}", items.join(", ")), cols))
    }

    fn insert(&mut self, i: &Insert) -> Result<Translation> {
        if i.top.is_some() {
            return Err(unsupported("INSERT TOP"));
        }
        let key = table_key(&i.table);
        let table_cols = self.lookup_table(&key);
        let identity = self.catalog.identity_column(&key);
        let mut columns: Vec<String> = i.columns.iter().map(|c| c.value.clone()).collect();
        if columns.is_empty() {
            if let Some(tc) = &table_cols {
                columns = tc
                    .iter()
                    .map(|(n, _)| n.clone())
                    .filter(|n| {
                        identity
                            .as_ref()
                            .is_none_or(|id| !id.eq_ignore_ascii_case(n))
                    })
                    .collect();
            }
        }
        let col_ty = |n: &str| {
            table_cols.as_ref().and_then(|c| {
                c.iter()
                    .find(|(x, _)| x.eq_ignore_ascii_case(n))
                    .and_then(|(_, t)| *t)
            })
        };
        let tname = i.table.name().to_string();
        let mut sql = format!("INSERT INTO {}", table_sql(&i.table));
        let body = match &i.source {
            InsertSource::DefaultValues => " DEFAULT VALUES".to_string(),
            InsertSource::Values(rows) => {
                let width = rows.first().map(|r| r.len()).unwrap_or(0);
                if rows.iter().any(|r| r.len() != width) {
                    return Err(SqlError::new(10709, 16, "The number of columns for each row in a table value constructor must be the same."));
                }
                if !columns.is_empty() && width != columns.len() {
                    return Err(SqlError::new(
                        if width > columns.len() { 110 } else { 109 },
                        15,
                        "There are fewer columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.",
                    ));
                }
                // DEFAULT in VALUES: allowed when the same positions are DEFAULT in every row (drop them).
                let default_at: Vec<bool> = (0..width)
                    .map(|c| {
                        rows.iter()
                            .all(|r| matches!(r[c], Expr::Literal(Literal::Default)))
                    })
                    .collect();
                if rows.iter().any(|r| {
                    r.iter().enumerate().any(|(c, e)| {
                        matches!(e, Expr::Literal(Literal::Default)) && !default_at[c]
                    })
                }) {
                    return Err(unsupported(
                        "DEFAULT in only some rows of a multi-row VALUES",
                    ));
                }
                let kept: Vec<usize> = (0..width).filter(|c| !default_at[*c]).collect();
                if !columns.is_empty() {
                    columns = kept.iter().map(|c| columns[*c].clone()).collect();
                }
                if kept.is_empty() {
                    " DEFAULT VALUES".to_string()
                } else {
                    let mut out = Vec::new();
                    for r in rows {
                        let mut vals = Vec::new();
                        for c in &kept {
                            let (s, _) = self.expr(&r[*c])?;
                            let cname = columns.get(vals.len()).cloned().unwrap_or_default();
                            vals.push(self.coerce(s, col_ty(&cname).as_ref(), &tname, &cname));
                        }
                        out.push(format!("({})", vals.join(", ")));
                    }
                    format!(" VALUES {}", out.join(", "))
                }
            }
            InsertSource::Query(qy) => {
                // Coerce each selected value to its column type when the query is a plain SELECT: alias the
                // inner items c1..cN and wrap them in an outer SELECT.
                let plain = matches!(&qy.body, SetExpr::Select(sel) if !columns.is_empty()
                    && sel.items.len() == columns.len()
                    && sel.items.iter().all(|i| matches!(i, SelectItem::Expr { expr, .. } if !matches!(expr, Expr::Wildcard(_)))));
                if plain {
                    let inner_cols: Vec<String> =
                        (0..columns.len()).map(|i| format!("c{}", i + 1)).collect();
                    let mut qy3 = (**qy).clone();
                    if let SetExpr::Select(sel) = &mut qy3.body {
                        for (idx, it) in sel.items.iter_mut().enumerate() {
                            if let SelectItem::Expr { alias, .. } = it {
                                *alias = Some(Ident::new(inner_cols[idx].clone()));
                            }
                        }
                    }
                    let (inner, _) = self.query(&qy3)?;
                    let outer: Vec<String> = columns
                        .iter()
                        .zip(&inner_cols)
                        .map(|(c, ic)| self.coerce(q(ic), col_ty(c).as_ref(), &tname, c))
                        .collect();
                    format!(" SELECT {} FROM ({})", outer.join(", "), inner)
                } else {
                    format!(" {}", self.query(qy)?.0)
                }
            }
            InsertSource::Exec(_) => return Err(unsupported("INSERT … EXEC")),
        };
        if !columns.is_empty() && !body.starts_with(" DEFAULT") {
            sql.push_str(&format!(
                " ({})",
                columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
            ));
        }
        sql.push_str(&body);
        let mut cols = Vec::new();
        if let Some(o) = &i.output {
            let (r, c) = self.returning(o, "inserted", &table_cols)?;
            sql.push_str(&r);
            cols = c;
        }
        let mut t = self.base(TranslationKind::Insert, sql);
        t.params = self.params.clone();
        t.columns = cols;
        t.target = Some(key);
        Ok(t)
    }

    fn target_of(&self, tf: &TableFactor) -> Result<(ObjectName, Option<Ident>)> {
        match tf {
            TableFactor::Table { name, alias, .. } => Ok((name.clone(), alias.clone())),
            TableFactor::Variable { name, alias } => {
                Ok((ObjectName(vec![Ident::new(name.clone())]), alias.clone()))
            }
            _ => Err(unsupported(
                "UPDATE/DELETE of a derived table or table variable",
            )),
        }
    }

    /// Resolves the UPDATE/DELETE target against FROM: `UPDATE a SET … FROM t AS a JOIN u …`.
    /// Returns (real table, alias, FROM without the target, join conditions that move to WHERE).
    #[allow(clippy::type_complexity)]
    fn split_target(
        &self,
        target: &ObjectName,
        from: &[TableWithJoins],
    ) -> Result<(
        ObjectName,
        Option<Ident>,
        Vec<TableWithJoins>,
        Vec<Expr>,
        bool,
    )> {
        let tname = target.name();
        let matches_target = |tf: &TableFactor| match tf {
            TableFactor::Table { name, alias, .. } => {
                alias
                    .as_ref()
                    .is_some_and(|a| a.value.eq_ignore_ascii_case(tname))
                    || (alias.is_none()
                        && name.name().eq_ignore_ascii_case(tname)
                        && target.0.len() == 1)
                    || (name.name().eq_ignore_ascii_case(tname) && target.0.len() > 1)
            }
            _ => false,
        };
        for (idx, twj) in from.iter().enumerate() {
            if matches_target(&twj.table) {
                let (real, alias) = match &twj.table {
                    TableFactor::Table { name, alias, .. } => (name.clone(), alias.clone()),
                    _ => unreachable!(),
                };
                let mut rest: Vec<TableWithJoins> = from
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != idx)
                    .map(|(_, t)| t.clone())
                    .collect();
                let mut conds = Vec::new();
                for j in &twj.joins {
                    if !matches!(j.kind, JoinKind::Inner | JoinKind::Cross) {
                        return Err(unsupported(
                            "UPDATE/DELETE … FROM target LEFT/RIGHT/FULL JOIN",
                        ));
                    }
                    rest.push(TableWithJoins {
                        table: j.table.clone(),
                        joins: vec![],
                    });
                    if let Some(on) = &j.on {
                        conds.push(on.clone());
                    }
                }
                return Ok((real, alias, rest, conds, true));
            }
            if twj.joins.iter().any(|j| matches_target(&j.table)) {
                return Err(unsupported(
                    "UPDATE/DELETE target joined to an earlier table",
                ));
            }
        }
        Ok((target.clone(), None, from.to_vec(), vec![], false))
    }

    fn update(&mut self, u: &Update) -> Result<Translation> {
        let (tname, talias) = self.target_of(&u.table)?;
        let (real, alias, rest, conds, _) = self.split_target(&tname, &u.from)?;
        let alias = alias.or(talias);
        let key = table_key(&real);
        let table_cols = self.lookup_table(&key);
        let mut scope = vec![self.scope_table(&real, alias.as_ref())];
        let from_sql = self.translate_from(&rest, &mut scope)?;
        self.scopes.push(scope);
        let r = self.update_rest(
            u,
            &real,
            alias.as_ref(),
            &from_sql,
            &conds,
            &table_cols,
            &key,
        );
        self.scopes.pop();
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn update_rest(
        &mut self,
        u: &Update,
        real: &ObjectName,
        alias: Option<&Ident>,
        from_sql: &str,
        conds: &[Expr],
        table_cols: &Option<Vec<(String, Option<DataType>)>>,
        key: &str,
    ) -> Result<Translation> {
        let col_ty = |n: &str| {
            table_cols.as_ref().and_then(|c| {
                c.iter()
                    .find(|(x, _)| x.eq_ignore_ascii_case(n))
                    .and_then(|(_, t)| *t)
            })
        };
        let mut sets = Vec::new();
        for a in &u.assignments {
            let col = a.column.last().map(|i| i.value.clone()).unwrap_or_default();
            if col.starts_with('@') {
                return Err(unsupported("SET @variable inside UPDATE"));
            }
            let value = match a.op.binop() {
                Some(b) => Expr::Binary {
                    op: b,
                    left: Box::new(Expr::Column(a.column.clone())),
                    right: Box::new(a.value.clone()),
                },
                None => a.value.clone(),
            };
            // SQLite has no DEFAULT in UPDATE; NULL would be silently different.
            if matches!(value, Expr::Literal(Literal::Default)) {
                return Err(unsupported("UPDATE … SET column = DEFAULT"));
            }
            let (s, _) = self.expr(&value)?;
            sets.push(format!(
                "{} = {}",
                q(&col),
                self.coerce(s, col_ty(&col).as_ref(), real.name(), &col)
            ));
        }
        let mut sql = format!("UPDATE {}", table_sql(real));
        if let Some(a) = alias {
            sql.push_str(&format!(" AS {}", q(&a.value)));
        }
        sql.push_str(&format!(" SET {}", sets.join(", ")));
        if !from_sql.is_empty() {
            sql.push_str(&format!(" FROM {}", from_sql));
        }
        let mut wheres = Vec::new();
        for c in conds {
            wheres.push(self.expr(c)?.0);
        }
        if let Some(w) = &u.selection {
            wheres.push(self.expr(w)?.0);
        }
        if let Some(top) = &u.top {
            if !from_sql.is_empty() || top.percent {
                return Err(unsupported("UPDATE TOP with FROM or PERCENT"));
            }
            let (n, _) = self.expr(&top.count)?;
            let inner_where = if wheres.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", wheres.join(" AND "))
            };
            let qual = alias
                .map(|a| format!(" AS {}", q(&a.value)))
                .unwrap_or_default();
            wheres = vec![format!(
                "rowid IN (SELECT rowid FROM {}{}{} LIMIT {})",
                table_sql(real),
                qual,
                inner_where,
                n
            )];
        }
        if !wheres.is_empty() {
            sql.push_str(&format!(" WHERE {}", wheres.join(" AND ")));
        }
        let mut cols = Vec::new();
        if let Some(o) = &u.output {
            let (r, c) = self.returning(o, "inserted", table_cols)?;
            sql.push_str(&r);
            cols = c;
        }
        let mut t = self.base(TranslationKind::Update, sql);
        t.params = self.params.clone();
        t.columns = cols;
        t.target = Some(key.to_string());
        Ok(t)
    }

    fn delete(&mut self, d: &Delete) -> Result<Translation> {
        let (tname, talias) = self.target_of(&d.table)?;
        let key_initial = table_key(&tname);
        let (real, alias, _rest, _conds, in_from) = self.split_target(&tname, &d.from)?;
        let alias = alias.or(talias);
        let key = if in_from {
            table_key(&real)
        } else {
            key_initial
        };
        let table_cols = self.lookup_table(&key);
        let mut sql = format!("DELETE FROM {}", table_sql(&real));
        if d.from.is_empty() {
            let mut scope = vec![self.scope_table(&real, alias.as_ref())];
            if let Some(a) = &alias {
                sql.push_str(&format!(" AS {}", q(&a.value)));
                scope[0].qualifier = a.value.clone();
            }
            self.scopes.push(scope);
            let w = d.selection.as_ref().map(|w| self.expr(w));
            let top = d.top.as_ref().map(|t| self.expr(&t.count));
            self.scopes.pop();
            let w = w.transpose()?.map(|x| x.0);
            match top.transpose()? {
                Some((n, _)) => {
                    let inner_where = w.map(|w| format!(" WHERE {}", w)).unwrap_or_default();
                    let qual = alias
                        .as_ref()
                        .map(|a| format!(" AS {}", q(&a.value)))
                        .unwrap_or_default();
                    sql = format!(
                        "DELETE FROM {} WHERE rowid IN (SELECT rowid FROM {}{}{} LIMIT {})",
                        table_sql(&real),
                        table_sql(&real),
                        qual,
                        inner_where,
                        n
                    );
                }
                None => {
                    if let Some(w) = w {
                        sql.push_str(&format!(" WHERE {}", w));
                    }
                }
            }
        } else {
            // DELETE t FROM t JOIN u …: select the target's rowids through the join.
            let mut scope = Vec::new();
            let mut from = d.from.clone();
            if !in_from {
                from.insert(
                    0,
                    TableWithJoins {
                        table: TableFactor::Table {
                            name: real.clone(),
                            alias: alias.clone(),
                            hints: vec![],
                        },
                        joins: vec![],
                    },
                );
            }
            let from_sql = self.translate_from(&from, &mut scope)?;
            self.scopes.push(scope);
            let w = d.selection.as_ref().map(|w| self.expr(w));
            let top = d.top.as_ref().map(|t| self.expr(&t.count));
            self.scopes.pop();
            let qual = alias
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_else(|| real.name().to_string());
            let mut inner = format!("SELECT {}.rowid FROM {}", q(&qual), from_sql);
            if let Some((w, _)) = w.transpose()? {
                inner.push_str(&format!(" WHERE {}", w));
            }
            if let Some((n, _)) = top.transpose()? {
                inner.push_str(&format!(" LIMIT {}", n));
            }
            sql.push_str(&format!(" WHERE rowid IN ({})", inner));
        }
        let mut cols = Vec::new();
        if let Some(o) = &d.output {
            let (r, c) = self.returning(o, "deleted", &table_cols)?;
            sql.push_str(&r);
            cols = c;
        }
        let mut t = self.base(TranslationKind::Delete, sql);
        t.params = self.params.clone();
        t.columns = cols;
        t.target = Some(key);
        Ok(t)
    }

    // ---- DDL ---------------------------------------------------------------------------------------------------

    fn column_sql(
        &mut self,
        c: &ColumnDef,
        table: &str,
        rowid_pk: Option<&str>,
    ) -> Result<(String, ColumnMeta)> {
        let mut meta = ColumnMeta {
            name: c.name.value.clone(),
            ty: c.ty,
            nullable: true,
            identity: None,
            default: None,
            default_name: None,
            collation: c.collation.clone(),
            computed: None,
        };
        if let Some(e) = &c.computed {
            let (s, _) = self.expr(e)?;
            meta.computed = Some(s.clone());
            return Ok((format!("{} AS ({}) VIRTUAL", q(&c.name.value), s), meta));
        }
        let ty = c.ty.unwrap_or(DataType::NVarChar(Len::Max));
        let is_rowid = rowid_pk.is_some_and(|p| p.eq_ignore_ascii_case(&c.name.value));
        let mut sql = format!("{} {}", q(&c.name.value), ty.sqlite_affinity());
        if is_rowid {
            sql.push_str(" PRIMARY KEY AUTOINCREMENT");
        }
        let mut tail = Vec::new();
        for nc in &c.constraints {
            let cname = nc
                .name
                .as_ref()
                .map(|n| format!("CONSTRAINT {} ", q(&n.value)))
                .unwrap_or_default();
            match &nc.constraint {
                ColumnConstraint::Null => {}
                ColumnConstraint::NotNull => {
                    meta.nullable = false;
                    tail.push("NOT NULL".to_string());
                }
                ColumnConstraint::PrimaryKey { .. } => {
                    meta.nullable = false;
                    if !is_rowid {
                        // With an IDENTITY elsewhere, the declared key is enforced as UNIQUE (the identity is the rowid).
                        if rowid_pk.is_some() {
                            tail.push(format!("{}NOT NULL UNIQUE", cname));
                        } else {
                            tail.push(format!("{}PRIMARY KEY", cname));
                        }
                    }
                }
                ColumnConstraint::Unique { .. } => tail.push(format!("{}UNIQUE", cname)),
                ColumnConstraint::Default(e) => {
                    let (s, _) = self.expr(e)?;
                    meta.default = Some(s.clone());
                    meta.default_name = nc.name.as_ref().map(|n| n.value.clone());
                    tail.push(format!("DEFAULT ({})", s));
                }
                ColumnConstraint::Check(e) => {
                    let (s, _) = self.expr(e)?;
                    tail.push(format!("{}CHECK ({})", cname, s));
                }
                ColumnConstraint::References {
                    table: rt,
                    columns,
                    on_delete,
                    on_update,
                } => {
                    let mut s = format!("{}REFERENCES {}", cname, q(&table_key(rt)));
                    if !columns.is_empty() {
                        s.push_str(&format!(
                            " ({})",
                            columns
                                .iter()
                                .map(|c| q(&c.value))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if let Some(a) = on_delete {
                        s.push_str(&format!(" ON DELETE {}", a));
                    }
                    if let Some(a) = on_update {
                        s.push_str(&format!(" ON UPDATE {}", a));
                    }
                    tail.push(s);
                }
                ColumnConstraint::Identity(id) => {
                    meta.identity = Some((id.seed, id.increment));
                    meta.nullable = false;
                }
                ColumnConstraint::Other(_) => {}
            }
        }
        if ty.is_string() || ty == DataType::UniqueIdentifier {
            let coll = c
                .collation
                .as_deref()
                .map(collation_for)
                .unwrap_or(COLLATION_CI_AS);
            tail.push(format!("COLLATE {}", coll));
        } else if matches!(
            ty,
            DataType::Decimal { .. } | DataType::Money | DataType::SmallMoney
        ) {
            tail.push(format!("COLLATE {}", COLLATION_DECIMAL));
        }
        let _ = table;
        if !tail.is_empty() {
            sql.push(' ');
            sql.push_str(&tail.join(" "));
        }
        Ok((sql, meta))
    }

    fn create_table(&mut self, ct: &CreateTable) -> Result<Translation> {
        let key = table_key(&ct.name);
        let identities: Vec<&ColumnDef> = ct
            .columns
            .iter()
            .filter(|c| {
                c.constraints
                    .iter()
                    .any(|k| matches!(k.constraint, ColumnConstraint::Identity(_)))
            })
            .collect();
        if identities.len() > 1 {
            return Err(SqlError::new(2744, 16, format!("Multiple identity columns specified for table '{}'. Only one identity column per table is allowed.", ct.name.name())));
        }
        let mut extra = Vec::new();
        let rowid_pk = match identities.first() {
            Some(c) => {
                let ty = c.ty.unwrap_or(DataType::Int);
                let ok = ty.is_integer() || matches!(ty, DataType::Decimal { scale: 0, .. });
                if !ok || ty == DataType::Bit {
                    return Err(SqlError::new(2749, 16, format!("Identity column '{}' must be of data type int, bigint, smallint, tinyint, or decimal or numeric with a scale of 0, and constrained to be nonnullable.", c.name.value)));
                }
                for k in &c.constraints {
                    if let ColumnConstraint::Identity(id) = &k.constraint {
                        if id.increment != 1 {
                            return Err(unsupported("IDENTITY with an increment other than 1"));
                        }
                        if id.seed != 1 {
                            // AUTOINCREMENT continues from sqlite_sequence: start it at seed - 1.
                            extra.push(format!(
                                "INSERT INTO {}sqlite_sequence (name, seq) VALUES ({}, {})",
                                if ct.name.name().starts_with(['#', '@']) {
                                    "temp."
                                } else {
                                    ""
                                },
                                lit_str(&key),
                                id.seed - 1
                            ));
                        }
                    }
                }
                Some(c.name.value.clone())
            }
            None => None,
        };
        self.scopes.push(vec![ScopeTable {
            qualifier: ct.name.name().to_string(),
            key: key.clone(),
            columns: Some(
                ct.columns
                    .iter()
                    .map(|c| (c.name.value.clone(), c.ty))
                    .collect(),
            ),
        }]);
        let r = self.create_table_inner(ct, &key, rowid_pk.as_deref());
        self.scopes.pop();
        let (sql, meta) = r?;
        if !self.params.is_empty() {
            return Err(SqlError::new(
                128,
                15,
                "Variables are not allowed in a table definition.",
            ));
        }
        let mut t = self.base(TranslationKind::CreateTable, sql);
        t.extra = extra;
        t.table = Some(meta);
        t.target = Some(key);
        Ok(t)
    }

    fn create_table_inner(
        &mut self,
        ct: &CreateTable,
        key: &str,
        rowid_pk: Option<&str>,
    ) -> Result<(String, TableMeta)> {
        let mut defs = Vec::new();
        let mut metas = Vec::new();
        let mut constraints = Vec::new();
        for c in &ct.columns {
            let (s, m) = self.column_sql(c, key, rowid_pk)?;
            defs.push(s);
            for nc in &c.constraints {
                let kind: Option<&'static str> = match &nc.constraint {
                    ColumnConstraint::PrimaryKey { .. } => Some("PRIMARY KEY"),
                    ColumnConstraint::Unique { .. } => Some("UNIQUE"),
                    ColumnConstraint::References { .. } => Some("FOREIGN KEY"),
                    ColumnConstraint::Check(_) => Some("CHECK"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let clustered = match &nc.constraint {
                        ColumnConstraint::PrimaryKey { clustered }
                        | ColumnConstraint::Unique { clustered } => *clustered,
                        _ => None,
                    };
                    let references = match &nc.constraint {
                        ColumnConstraint::References { table, columns, .. } => Some((
                            table_key(table),
                            columns.iter().map(|c| c.value.clone()).collect(),
                        )),
                        _ => None,
                    };
                    constraints.push(ConstraintMeta {
                        name: nc.name.as_ref().map(|n| n.value.clone()),
                        kind,
                        columns: vec![c.name.value.clone()],
                        clustered,
                        references,
                    });
                }
            }
            metas.push(m);
        }
        for tc in &ct.constraints {
            let cname = tc
                .name
                .as_ref()
                .map(|n| format!("CONSTRAINT {} ", q(&n.value)))
                .unwrap_or_default();
            let (sql, meta) = match &tc.kind {
                TableConstraintKind::PrimaryKey { columns, clustered } => {
                    let cols: Vec<String> = columns.iter().map(|(c, _)| c.value.clone()).collect();
                    for m in metas.iter_mut() {
                        if cols.iter().any(|c| c.eq_ignore_ascii_case(&m.name)) {
                            m.nullable = false;
                        }
                    }
                    let same_as_rowid = rowid_pk
                        .is_some_and(|r| cols.len() == 1 && cols[0].eq_ignore_ascii_case(r));
                    let kw = if rowid_pk.is_some() {
                        "UNIQUE"
                    } else {
                        "PRIMARY KEY"
                    };
                    let sql = if same_as_rowid {
                        None
                    } else {
                        Some(format!(
                            "{}{} ({})",
                            cname,
                            kw,
                            cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
                        ))
                    };
                    (
                        sql,
                        ConstraintMeta {
                            name: tc.name.as_ref().map(|n| n.value.clone()),
                            kind: "PRIMARY KEY",
                            columns: cols,
                            clustered: *clustered,
                            references: None,
                        },
                    )
                }
                TableConstraintKind::Unique { columns, clustered } => {
                    let cols: Vec<String> = columns.iter().map(|(c, _)| c.value.clone()).collect();
                    (
                        Some(format!(
                            "{}UNIQUE ({})",
                            cname,
                            cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
                        )),
                        ConstraintMeta {
                            name: tc.name.as_ref().map(|n| n.value.clone()),
                            kind: "UNIQUE",
                            columns: cols,
                            clustered: *clustered,
                            references: None,
                        },
                    )
                }
                TableConstraintKind::ForeignKey {
                    columns,
                    table,
                    ref_columns,
                    on_delete,
                    on_update,
                } => {
                    let cols: Vec<String> = columns.iter().map(|c| c.value.clone()).collect();
                    let rcols: Vec<String> = ref_columns.iter().map(|c| c.value.clone()).collect();
                    let mut s = format!(
                        "{}FOREIGN KEY ({}) REFERENCES {}",
                        cname,
                        cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
                        q(&table_key(table))
                    );
                    if !rcols.is_empty() {
                        s.push_str(&format!(
                            " ({})",
                            rcols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
                        ));
                    }
                    if let Some(a) = on_delete {
                        s.push_str(&format!(" ON DELETE {}", a));
                    }
                    if let Some(a) = on_update {
                        s.push_str(&format!(" ON UPDATE {}", a));
                    }
                    (
                        Some(s),
                        ConstraintMeta {
                            name: tc.name.as_ref().map(|n| n.value.clone()),
                            kind: "FOREIGN KEY",
                            columns: cols,
                            clustered: None,
                            references: Some((table_key(table), rcols)),
                        },
                    )
                }
                TableConstraintKind::Check(e) => {
                    let (s, _) = self.expr(e)?;
                    (
                        Some(format!("{}CHECK ({})", cname, s)),
                        ConstraintMeta {
                            name: tc.name.as_ref().map(|n| n.value.clone()),
                            kind: "CHECK",
                            columns: vec![],
                            clustered: None,
                            references: None,
                        },
                    )
                }
                TableConstraintKind::Default { .. } => {
                    return Err(SqlError::syntax_near_keyword("DEFAULT", 0))
                }
            };
            if let Some(s) = sql {
                defs.push(s);
            }
            constraints.push(meta);
        }
        let sql = format!("CREATE TABLE {} ({})", table_sql(&ct.name), defs.join(", "));
        Ok((
            sql,
            TableMeta {
                name: key.to_string(),
                schema: ct
                    .name
                    .schema()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("dbo")
                    .to_string(),
                columns: metas,
                constraints,
            },
        ))
    }

    fn alter_table(&mut self, name: &ObjectName, action: &AlterTableAction) -> Result<Translation> {
        let key = table_key(name);
        match action {
            AlterTableAction::AddColumns(cols) => {
                let mut stmts = Vec::new();
                let mut metas = Vec::new();
                for c in cols {
                    if c.constraints.iter().any(|k| {
                        matches!(
                            k.constraint,
                            ColumnConstraint::Identity(_)
                                | ColumnConstraint::PrimaryKey { .. }
                                | ColumnConstraint::Unique { .. }
                        )
                    }) {
                        return Err(unsupported(
                            "ALTER TABLE ADD of an IDENTITY, PRIMARY KEY or UNIQUE column",
                        ));
                    }
                    let (s, m) = self.column_sql(c, &key, None)?;
                    if !m.nullable && m.default.is_none() {
                        return Err(SqlError::new(
                            4901,
                            16,
                            format!("ALTER TABLE only allows columns to be added that can contain nulls, or have a DEFAULT definition specified, or the column being added is an identity or timestamp column, or alternatively if none of the previous conditions are satisfied the table must be empty to allow addition of this column. Column '{}' cannot be added to non-empty table '{}' because it does not satisfy these conditions.", m.name, name.name()),
                        ));
                    }
                    stmts.push(format!("ALTER TABLE {} ADD COLUMN {}", table_sql(name), s));
                    metas.push(m);
                }
                let mut t = self.base(TranslationKind::AlterTable, stmts[0].clone());
                t.extra = stmts[1..].to_vec();
                t.table = Some(TableMeta {
                    name: key.clone(),
                    schema: name.schema().unwrap_or("dbo").to_string(),
                    columns: metas,
                    constraints: vec![],
                });
                t.target = Some(key);
                Ok(t)
            }
            AlterTableAction::DropColumns { names, .. } => {
                let stmts: Vec<String> = names
                    .iter()
                    .map(|c| {
                        format!(
                            "ALTER TABLE {} DROP COLUMN {}",
                            table_sql(name),
                            q(&c.value)
                        )
                    })
                    .collect();
                let mut t = self.base(TranslationKind::AlterTable, stmts[0].clone());
                t.extra = stmts[1..].to_vec();
                t.target = Some(key);
                Ok(t)
            }
            // SQLite cannot add constraints to a table, but a UNIQUE constraint is exactly a unique index.
            AlterTableAction::AddConstraint(TableConstraint {
                name: cname,
                kind: TableConstraintKind::Unique { columns, clustered },
            }) => {
                let cols: Vec<String> = columns.iter().map(|(c, _)| c.value.clone()).collect();
                let iname = cname
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_else(|| format!("UQ_{}_{}", name.name(), cols.join("_")));
                let prefix = if name.name().starts_with(['#', '@']) {
                    "temp."
                } else {
                    ""
                };
                let sql = format!(
                    "CREATE UNIQUE INDEX {}{} ON {} ({})",
                    prefix,
                    q(&iname),
                    q(&key),
                    columns
                        .iter()
                        .map(|(c, d)| format!("{}{}", q(&c.value), if *d { " DESC" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut t = self.base(TranslationKind::AlterTable, sql);
                t.table = Some(TableMeta {
                    name: key.clone(),
                    schema: name.schema().unwrap_or("dbo").to_string(),
                    columns: vec![],
                    constraints: vec![ConstraintMeta {
                        name: Some(iname),
                        kind: "UNIQUE",
                        columns: cols,
                        clustered: *clustered,
                        references: None,
                    }],
                });
                t.target = Some(key);
                Ok(t)
            }
            AlterTableAction::AddConstraint(_) => Err(unsupported(
                "ALTER TABLE ADD CONSTRAINT (other than UNIQUE)",
            )),
            AlterTableAction::DropConstraint { .. } => {
                Err(unsupported("ALTER TABLE DROP CONSTRAINT"))
            }
            AlterTableAction::AlterColumn(_) => Err(unsupported("ALTER TABLE ALTER COLUMN")),
        }
    }
}
