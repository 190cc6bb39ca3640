//! T-SQL for milink: lexing, batch parsing (procedural, DML/DDL and admin statements), the T-SQL type model,
//! an evaluator for variable-only expressions, and translation of DML/DDL to SQLite.
//!
//! The crate is pure (no I/O, no SQLite) so every entry point can be fuzzed; see [`fuzz`].
//!
//! # How the session layer uses it
//!
//! 1. Client scripts: [`split_go`] splits on `GO` lines (sqlcmd semantics); servers never see `GO`.
//! 2. A batch: [`parse_batch`] gives `Vec<Statement>`; a syntax error is a [`SqlError`] (102/156, severity 15,
//!    with the line) and, as in SQL Server, nothing of the batch runs. Each [`Statement`] has its `line` (for
//!    runtime errors) and byte `span` (for stored definitions).
//! 3. Procedural statements ([`StatementKind`]: DECLARE, SET, IF, WHILE, BEGIN…END, TRY/CATCH, PRINT, RAISERROR,
//!    THROW, transactions, USE, EXEC, SET options) are the session's to run. Expressions evaluate with
//!    [`eval::eval`] / [`eval::eval_predicate`] against a [`Context`] the session implements (variables,
//!    @@globals, instance functions such as GETDATE, NEWID, DB_NAME, SERVERPROPERTY, CERT_ID, CERTENCODED, and
//!    subqueries). Assignment to a declared variable goes through [`value::assign`];
//!    [`runtime::run_statements`] drives the control flow (IF/WHILE/BREAK/CONTINUE/RETURN/TRY…CATCH/THROW) and
//!    hands every leaf statement to the session's [`runtime::Session::execute`], which also decides per error
//!    whether the batch goes on. [`runtime`] also has RAISERROR evaluation, stored procedure argument binding
//!    and sp_executesql binding ([`runtime::bind_sp_executesql`], the same for RPC via
//!    [`runtime::bind_dynamic_sql`]). [`eval::tableless_select`] recognises `SELECT @@SPID`-like
//!    queries that need no SQLite.
//! 4. Admin statements ([`admin::Admin`]: master key, certificates, endpoints, availability groups, BACKUP and
//!    RESTORE, databases, logins, DBCC, CHECKPOINT, KILL) come typed; option values are literals or @variables
//!    (evaluate them with [`eval::eval`]).
//! 5. DML/DDL: [`translate()`] turns a statement into a [`Translation`]: one SQLite statement (`sql`, plus `extra`
//!    ones to run after it), bound parameters `?1..` named in `params` (@variables, @@globals), the result
//!    columns with their T-SQL types, `assign_to` for `SELECT @v = …`, and, for CREATE TABLE / ALTER TABLE ADD /
//!    SELECT INTO, a [`translate::TableMeta`] with the declared T-SQL types, IDENTITY, defaults and constraint
//!    names to store inside the database file. Types of columns come from the engine's [`Catalog`].
//!    [`translate::translate_query`] serves subqueries of procedural statements (`IF EXISTS (SELECT …)`),
//!    [`translate::translate_table_variable`] turns `DECLARE @t TABLE` into a temp table.
//!
//! # What the engine registers on every SQLite connection
//!
//! * Collations [`storage::COLLATION_CI_AS`] (`TSQL_CI_AS`, use [`storage::collate_ci_as`]) and
//!   [`storage::COLLATION_DECIMAL`] (`TSQL_DECIMAL`, use [`storage::collate_decimal`]). Translated DDL declares
//!   them on character and exact-numeric columns, so readers, recovery and the secondary must all have them.
//! * Every pure function in [`storage::PURE_FUNCTIONS`], implemented by [`storage::call_function`] (exact decimal
//!   arithmetic `tsql_add/sub/mul/div/mod`, `tsql_convert`, `tsql_coerce` for INSERT/UPDATE type enforcement with
//!   245/2628/8115, `tsql_like`, date and string built-ins). Mark them deterministic and innocuous.
//! * Instance functions: `tsql_getdate`, `tsql_getutcdate`, `tsql_sysdatetime`, `tsql_sysutcdatetime`,
//!   `tsql_sysdatetimeoffset`, `tsql_newid`, `tsql_scope_identity`, and `tsql_<name>` for any other function a
//!   query calls (DB_NAME → `tsql_db_name`, OBJECT_ID → `tsql_object_id`, …).
//! * Aggregates `tsql_sum` and `tsql_avg` for DECIMAL/MONEY arguments: [`storage::ExactAggregate`].
//!
//! Values are stored in one canonical form per type ([`storage::to_stored`] / [`storage::from_stored`]); read
//! result columns with the `ty` the translation reports.
//!
//! # Limits worth knowing
//!
//! Nesting deeper than the parser's budget (about 45 levels of parentheses or blocks, 380 chained operators)
//! is error 191, so every recursive walk fits a 2 MiB thread stack. Unsupported syntax (MERGE, cursors, APPLY,
//! FOR XML/JSON, OUTPUT INTO, window frames, GOTO, …) is an error naming the construct, never a silently
//! different result.

pub mod admin;
pub mod analysis;
pub mod ast;
pub mod decimal;
pub mod error;
pub mod eval;
pub mod fuzz;
pub mod lexer;
pub mod parser;
pub mod runtime;
pub mod storage;
pub mod translate;
pub mod types;
pub mod value;

pub use admin::Admin;
pub use ast::{Expr, Statement, StatementKind};
pub use error::{Result, SqlError};
pub use eval::{eval, eval_predicate, Context};
pub use parser::{
    parse_batch, parse_data_type, parse_expression, parse_param_definitions, split_go,
};
pub use translate::{translate, Catalog, Translation};
pub use types::DataType;
pub use value::Value;

#[cfg(test)]
mod tests;
