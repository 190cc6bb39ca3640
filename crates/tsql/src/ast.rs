//! Abstract syntax of T-SQL batches: procedural statements, DML/DDL, and (in `admin`) server administration.

use crate::admin::Admin;
use crate::types::DataType;

/// An identifier as written; `quoted` records `[x]` / `"x"` (quoted names keep their case and may be keywords).
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub value: String,
    pub quoted: bool,
}

impl Ident {
    pub fn new(v: impl Into<String>) -> Self {
        Ident {
            value: v.into(),
            quoted: false,
        }
    }
    pub fn eq_name(&self, s: &str) -> bool {
        self.value.eq_ignore_ascii_case(s)
    }
}

/// A multi-part name: `[server.][db.][schema.]object`. Empty parts (`db..t`) are kept as empty strings.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectName(pub Vec<Ident>);

impl ObjectName {
    /// The last part: the object's own name.
    pub fn name(&self) -> &str {
        self.0.last().map(|i| i.value.as_str()).unwrap_or("")
    }
    pub fn schema(&self) -> Option<&str> {
        if self.0.len() >= 2 {
            Some(self.0[self.0.len() - 2].value.as_str())
        } else {
            None
        }
    }
    pub fn database(&self) -> Option<&str> {
        if self.0.len() >= 3 {
            Some(self.0[self.0.len() - 3].value.as_str())
        } else {
            None
        }
    }
    pub fn dotted(&self) -> String {
        self.0
            .iter()
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    /// Integer literal that fits in i64 (its T-SQL type is INT when it fits in i32, else BIGINT).
    Int(i64),
    /// Exact numeric literal text like "1.50" or an integer too big for i64 (typed DECIMAL).
    Decimal(String),
    /// Literal with an exponent: FLOAT.
    Float(f64),
    /// $12.50: MONEY.
    Money(String),
    String(String),
    NString(String),
    Binary(Vec<u8>),
    /// DEFAULT in an INSERT VALUES list or EXEC argument.
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Plus,
    Not,
    BitNot,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// @name (with '@').
    Variable(String),
    /// @@NAME (with '@@').
    Global(String),
    /// Column reference, possibly qualified: t.c, s.t.c.
    Column(Vec<Ident>),
    /// `*` or `t.*` (in select lists and COUNT(*)).
    Wildcard(Option<ObjectName>),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        escape: Option<Box<Expr>>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    InSubquery {
        expr: Box<Expr>,
        query: Box<Query>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Exists {
        query: Box<Query>,
        negated: bool,
    },
    Subquery(Box<Query>),
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
    },
    /// CAST / TRY_CAST (expr AS type).
    Cast {
        expr: Box<Expr>,
        ty: DataType,
        try_: bool,
    },
    /// CONVERT / TRY_CONVERT (type, expr [, style]).
    Convert {
        ty: DataType,
        expr: Box<Expr>,
        style: Option<Box<Expr>>,
        try_: bool,
    },
    Function(Box<FunctionCall>),
    Nested(Box<Expr>),
    Collate {
        expr: Box<Expr>,
        collation: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    pub name: ObjectName,
    pub args: Vec<Expr>,
    pub distinct: bool,
    pub over: Option<WindowSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub partition_by: Vec<Expr>,
    pub order_by: Vec<OrderBy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub expr: Expr,
    pub desc: bool,
}

// ---------------------------------------------------------------------------------------------------------------
// Queries

#[derive(Debug, Clone, PartialEq)]
pub struct Cte {
    pub name: Ident,
    pub columns: Vec<Ident>,
    pub query: Query,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub ctes: Vec<Cte>,
    pub body: SetExpr,
    pub order_by: Vec<OrderBy>,
    pub offset: Option<Expr>,
    pub fetch: Option<Expr>,
    /// OPTION (…) hints, kept as raw text: they never change results.
    pub option: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetOp {
    Union,
    UnionAll,
    Except,
    Intersect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetExpr {
    Select(Box<Select>),
    Query(Box<Query>),
    SetOp {
        op: SetOp,
        left: Box<SetExpr>,
        right: Box<SetExpr>,
    },
    Values(Vec<Vec<Expr>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Top {
    pub count: Expr,
    pub percent: bool,
    pub with_ties: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    Expr {
        expr: Expr,
        alias: Option<Ident>,
    },
    /// SELECT @v = expr: assigns instead of returning a column.
    Assign {
        var: String,
        op: AssignOp,
        expr: Expr,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub distinct: bool,
    pub top: Option<Top>,
    pub items: Vec<SelectItem>,
    pub into: Option<ObjectName>,
    pub from: Vec<TableWithJoins>,
    pub selection: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TableFactor {
    Table {
        name: ObjectName,
        alias: Option<Ident>,
        hints: Vec<String>,
    },
    Derived {
        query: Box<Query>,
        alias: Option<Ident>,
        columns: Vec<Ident>,
    },
    /// A table-valued function, e.g. OPENJSON(...) or STRING_SPLIT(...).
    Function {
        call: FunctionCall,
        alias: Option<Ident>,
    },
    /// @table_variable
    Variable { name: String, alias: Option<Ident> },
    Values {
        rows: Vec<Vec<Expr>>,
        alias: Option<Ident>,
        columns: Vec<Ident>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    Cross,
    CrossApply,
    OuterApply,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub kind: JoinKind,
    pub table: TableFactor,
    pub on: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableWithJoins {
    pub table: TableFactor,
    pub joins: Vec<Join>,
}

// ---------------------------------------------------------------------------------------------------------------
// DML

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The select list of OUTPUT, using the pseudo-tables `inserted` / `deleted`.
    pub items: Vec<SelectItem>,
    /// OUTPUT … INTO @t / table: not translatable to RETURNING; kept so the engine can refuse clearly.
    pub into: Option<ObjectName>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InsertSource {
    Values(Vec<Vec<Expr>>),
    Query(Box<Query>),
    DefaultValues,
    Exec(Box<Exec>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub top: Option<Top>,
    pub table: ObjectName,
    pub columns: Vec<Ident>,
    pub output: Option<Output>,
    pub source: InsertSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub column: Vec<Ident>,
    pub op: AssignOp,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub top: Option<Top>,
    pub table: TableFactor,
    pub assignments: Vec<Assignment>,
    /// SET @v = expr inside UPDATE (variable assignments).
    pub output: Option<Output>,
    pub from: Vec<TableWithJoins>,
    pub selection: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub top: Option<Top>,
    pub table: TableFactor,
    pub output: Option<Output>,
    pub from: Vec<TableWithJoins>,
    pub selection: Option<Expr>,
}

// ---------------------------------------------------------------------------------------------------------------
// DDL

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub seed: i64,
    pub increment: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnConstraint {
    Null,
    NotNull,
    PrimaryKey {
        clustered: Option<bool>,
    },
    Unique {
        clustered: Option<bool>,
    },
    Default(Expr),
    Check(Expr),
    References {
        table: ObjectName,
        columns: Vec<Ident>,
        on_delete: Option<String>,
        on_update: Option<String>,
    },
    Identity(Identity),
    /// ROWGUIDCOL, SPARSE and the like: accepted, no effect.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamedColumnConstraint {
    pub name: Option<Ident>,
    pub constraint: ColumnConstraint,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: Ident,
    /// None for computed columns (`c AS expr`).
    pub ty: Option<DataType>,
    pub collation: Option<String>,
    pub computed: Option<Expr>,
    pub constraints: Vec<NamedColumnConstraint>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TableConstraintKind {
    PrimaryKey {
        columns: Vec<(Ident, bool)>,
        clustered: Option<bool>,
    },
    Unique {
        columns: Vec<(Ident, bool)>,
        clustered: Option<bool>,
    },
    ForeignKey {
        columns: Vec<Ident>,
        table: ObjectName,
        ref_columns: Vec<Ident>,
        on_delete: Option<String>,
        on_update: Option<String>,
    },
    Check(Expr),
    /// CONSTRAINT n DEFAULT expr FOR col (ALTER TABLE ADD only).
    Default {
        expr: Expr,
        column: Ident,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableConstraint {
    pub name: Option<Ident>,
    pub kind: TableConstraintKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: ObjectName,
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterTableAction {
    AddColumns(Vec<ColumnDef>),
    AddConstraint(TableConstraint),
    DropColumns { if_exists: bool, names: Vec<Ident> },
    DropConstraint { if_exists: bool, name: Ident },
    AlterColumn(ColumnDef),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateIndex {
    pub unique: bool,
    pub clustered: Option<bool>,
    pub name: Ident,
    pub table: ObjectName,
    pub columns: Vec<(Ident, bool)>,
    pub include: Vec<Ident>,
    pub filter: Option<Expr>,
}

// ---------------------------------------------------------------------------------------------------------------
// Procedural

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    Assign,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
}

impl AssignOp {
    /// The binary operator a compound assignment applies (`@v += x` is `@v = @v + x`).
    pub fn binop(&self) -> Option<BinOp> {
        Some(match self {
            AssignOp::Assign => return None,
            AssignOp::Add => BinOp::Add,
            AssignOp::Sub => BinOp::Sub,
            AssignOp::Mul => BinOp::Mul,
            AssignOp::Div => BinOp::Div,
            AssignOp::Mod => BinOp::Mod,
            AssignOp::BitAnd => BinOp::BitAnd,
            AssignOp::BitOr => BinOp::BitOr,
            AssignOp::BitXor => BinOp::BitXor,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    Scalar {
        name: String,
        ty: DataType,
        init: Option<Expr>,
    },
    Table {
        name: String,
        columns: Vec<ColumnDef>,
        constraints: Vec<TableConstraint>,
    },
}

/// A SET session option. `names` holds the option name(s) upper-cased, e.g. ["ANSI_NULLS", "QUOTED_IDENTIFIER"]
/// for a list, ["TEXTSIZE"], ["TRANSACTION ISOLATION LEVEL"], ["DATEFORMAT"].
#[derive(Debug, Clone, PartialEq)]
pub struct SetOption {
    pub names: Vec<String>,
    pub value: OptionValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    On,
    Off,
    /// A keyword value, upper-cased (isolation levels are joined by one space: "READ COMMITTED").
    Word(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProcTarget {
    Name(ObjectName),
    /// EXEC @proc_name_var
    Variable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecArg {
    /// @param = value when named.
    pub name: Option<String>,
    pub value: Expr,
    pub output: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    pub return_var: Option<String>,
    pub proc: ProcTarget,
    pub args: Vec<ExecArg>,
}

impl Exec {
    /// True when the procedure is (sys.)sp_executesql, case-insensitively.
    pub fn is_sp_executesql(&self) -> bool {
        matches!(&self.proc, ProcTarget::Name(n) if n.name().eq_ignore_ascii_case("sp_executesql"))
    }
    /// The argument at `pos` or named `name` (`@stmt`): sp_executesql's convention.
    pub fn arg(&self, pos: usize, name: &str) -> Option<&ExecArg> {
        self.args
            .iter()
            .find(|a| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .or_else(|| self.args.get(pos).filter(|a| a.name.is_none()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Raiserror {
    pub message: Expr,
    pub severity: Expr,
    pub state: Expr,
    pub args: Vec<Expr>,
    /// NOWAIT / LOG / SETERROR, upper-cased.
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Throw {
    pub number: Expr,
    pub message: Expr,
    pub state: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcParam {
    pub name: String,
    pub ty: DataType,
    pub default: Option<Expr>,
    pub output: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    Query(Box<Query>),
    Insert(Box<Insert>),
    Update(Box<Update>),
    Delete(Box<Delete>),
    CreateTable(Box<CreateTable>),
    AlterTable {
        name: ObjectName,
        action: AlterTableAction,
    },
    DropTable {
        if_exists: bool,
        names: Vec<ObjectName>,
    },
    TruncateTable(ObjectName),
    CreateIndex(Box<CreateIndex>),
    DropIndex {
        if_exists: bool,
        indexes: Vec<(Ident, Option<ObjectName>)>,
    },
    CreateView {
        name: ObjectName,
        query: Box<Query>,
        or_alter: bool,
    },
    DropView {
        if_exists: bool,
        names: Vec<ObjectName>,
    },
    /// CREATE PROCEDURE: the body is the rest of the batch, parsed, with its source text.
    CreateProcedure {
        name: ObjectName,
        params: Vec<ProcParam>,
        body: Vec<Statement>,
        text: String,
        or_alter: bool,
    },
    DropProcedure {
        if_exists: bool,
        names: Vec<ObjectName>,
    },
    CreateSchema {
        name: Ident,
        authorization: Option<Ident>,
    },
    DropSchema {
        if_exists: bool,
        name: Ident,
    },
    Declare(Vec<Declaration>),
    SetVariable {
        name: String,
        op: AssignOp,
        value: Expr,
    },
    SetOption(SetOption),
    If {
        cond: Expr,
        then: Box<Statement>,
        else_: Option<Box<Statement>>,
    },
    While {
        cond: Expr,
        body: Box<Statement>,
    },
    Block(Vec<Statement>),
    TryCatch {
        try_block: Vec<Statement>,
        catch_block: Vec<Statement>,
    },
    Break,
    Continue,
    Return(Option<Expr>),
    Print(Expr),
    Raiserror(Box<Raiserror>),
    /// THROW with no arguments rethrows inside CATCH.
    Throw(Option<Box<Throw>>),
    BeginTran {
        name: Option<String>,
        distributed: bool,
    },
    Commit {
        name: Option<String>,
    },
    Rollback {
        name: Option<String>,
    },
    SaveTran {
        name: String,
    },
    Use(Ident),
    Exec(Box<Exec>),
    /// EXEC (@sql + N'...'): the parts are concatenated.
    ExecString(Vec<Expr>),
    WaitFor {
        delay: bool,
        time: Expr,
    },
    Grant {
        text: String,
    },
    Admin(Box<Admin>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Line of the statement's first token within the batch.
    pub line: u32,
    pub kind: StatementKind,
    /// Byte range of the statement in the batch source (for error text and stored definitions).
    pub span: (usize, usize),
}
