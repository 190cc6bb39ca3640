//! T-SQL for milink: lexing, batch parsing (procedural, DML/DDL and admin statements), the T-SQL type model,
//! an evaluator for variable-only expressions, and translation of DML/DDL to SQLite.
//!
//! The crate is pure (no I/O, no SQLite) so every entry point can be fuzzed; see [`fuzz`].

pub mod admin;
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
