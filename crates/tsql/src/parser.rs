//! Recursive-descent parser for T-SQL batches. Statements need no separator: each statement's grammar decides
//! where it ends, as in SQL Server (`set textsize 1 select @@spid use [db]` is three statements).

use crate::ast::*;
use crate::error::{Result, SqlError};
use crate::lexer::{is_reserved, tokenize, Tok, Token};
use crate::types::DataType;

pub struct Parser<'a> {
    pub(crate) src: &'a str,
    pub(crate) toks: Vec<Token>,
    pub(crate) pos: usize,
    /// Recursion depth guard: deeply nested input must give an error, not a stack overflow (fuzzing).
    depth: usize,
}

/// Budget for the depth of the syntax tree: nesting (parentheses, subqueries, blocks) costs NEST_COST, each
/// operator of a left-deep chain (a + b + c …) costs 1. It bounds every recursive walk of the tree (evaluation,
/// translation, drop) so they fit a 2 MiB thread stack.
const MAX_DEPTH: usize = 400;
const NEST_COST: usize = 8;

/// Parses a whole batch (one GO-separated unit) into statements.
pub fn parse_batch(src: &str) -> Result<Vec<Statement>> {
    let mut p = Parser::new(src)?;
    p.parse_statements_until(&[], true)
}

/// Parses one scalar expression (e.g. a DEFAULT stored in the catalog).
pub fn parse_expression(src: &str) -> Result<Expr> {
    let mut p = Parser::new(src)?;
    let e = p.parse_expr()?;
    p.expect_eof()?;
    Ok(e)
}

/// Parses a data type name such as `NVARCHAR(MAX)` or `decimal(10, 2)`.
pub fn parse_data_type(src: &str) -> Result<DataType> {
    let mut p = Parser::new(src)?;
    let t = p.parse_type()?;
    p.expect_eof()?;
    Ok(t)
}

/// Parses sp_executesql's @params text: `@a int, @b nvarchar(10) OUTPUT`.
pub fn parse_param_definitions(src: &str) -> Result<Vec<ProcParam>> {
    let mut p = Parser::new(src)?;
    let mut out = Vec::new();
    if p.at_eof() {
        return Ok(out);
    }
    loop {
        out.push(p.parse_proc_param()?);
        if !p.eat(&Tok::Comma) {
            break;
        }
    }
    p.expect_eof()?;
    Ok(out)
}

/// Splits a script into batches on lines that hold only `GO` (optionally `GO n`, which repeats the batch n times),
/// as sqlcmd does. GO inside strings or block comments is not a separator.
pub fn split_go(script: &str) -> Vec<String> {
    let mut batches = Vec::new();
    let mut cur = String::new();
    let mut in_block = 0usize;
    let mut in_str: Option<char> = None;
    for line in script.split_inclusive('\n') {
        let trimmed = line.trim();
        let upper = trimmed.to_ascii_uppercase();
        let is_go = in_block == 0
            && in_str.is_none()
            && (upper == "GO"
                || (upper.starts_with("GO")
                    && upper[2..].starts_with(char::is_whitespace)
                    && upper[2..].trim().chars().all(|c| c.is_ascii_digit()))
                || upper.starts_with("GO--")
                || (upper.starts_with("GO ") && upper[3..].trim_start().starts_with("--")));
        if is_go {
            let count: usize = upper[2..].trim().parse().unwrap_or(1).max(1);
            if !cur.trim().is_empty() {
                for _ in 0..count.min(1000) {
                    batches.push(cur.clone());
                }
            }
            cur.clear();
            continue;
        }
        // Track strings and block comments so a GO line inside them is not a separator.
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i] as char;
            match in_str {
                Some(q) => {
                    if c == q {
                        if b.get(i + 1) == Some(&(q as u8)) {
                            i += 1;
                        } else {
                            in_str = None;
                        }
                    }
                }
                None => {
                    if in_block > 0 {
                        if c == '*' && b.get(i + 1) == Some(&b'/') {
                            in_block -= 1;
                            i += 1;
                        } else if c == '/' && b.get(i + 1) == Some(&b'*') {
                            in_block += 1;
                            i += 1;
                        }
                    } else if c == '-' && b.get(i + 1) == Some(&b'-') {
                        break;
                    } else if c == '/' && b.get(i + 1) == Some(&b'*') {
                        in_block += 1;
                        i += 1;
                    } else if c == '\'' {
                        in_str = Some('\'');
                    } else if c == '[' {
                        in_str = Some(']');
                    }
                }
            }
            i += 1;
        }
        cur.push_str(line);
    }
    if !cur.trim().is_empty() {
        batches.push(cur);
    }
    batches
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Result<Self> {
        Ok(Parser {
            src,
            toks: tokenize(src)?,
            pos: 0,
            depth: 0,
        })
    }

    // ---- token helpers -----------------------------------------------------------------------------------------

    pub(crate) fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    pub(crate) fn peek_at(&self, n: usize) -> &Token {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }
    pub(crate) fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    pub(crate) fn at_eof(&self) -> bool {
        matches!(self.peek().tok, Tok::Eof)
    }
    pub(crate) fn line(&self) -> u32 {
        self.peek().line
    }
    pub(crate) fn is_kw(&self, kw: &str) -> bool {
        self.peek().is_word(kw)
    }
    pub(crate) fn is_kw_at(&self, n: usize, kw: &str) -> bool {
        self.peek_at(n).is_word(kw)
    }
    pub(crate) fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.next();
            true
        } else {
            false
        }
    }
    pub(crate) fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }
    pub(crate) fn eat(&mut self, t: &Tok) -> bool {
        if &self.peek().tok == t {
            self.next();
            true
        } else {
            false
        }
    }
    pub(crate) fn expect(&mut self, t: &Tok) -> Result<()> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }
    pub(crate) fn is_op(&self, op: &str) -> bool {
        matches!(self.peek().tok, Tok::Op(o) if o == op)
    }
    pub(crate) fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.next();
            true
        } else {
            false
        }
    }
    pub(crate) fn expect_op(&mut self, op: &str) -> Result<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }
    fn expect_eof(&mut self) -> Result<()> {
        if self.at_eof() {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    /// SQL Server's syntax error for the current token: 156 at a reserved keyword, else 102.
    pub(crate) fn error_here(&self) -> SqlError {
        let t = self.peek();
        match &t.tok {
            Tok::Word(w) if is_reserved(w) => {
                SqlError::syntax_near_keyword(&w.to_ascii_uppercase(), t.line)
            }
            Tok::Eof => {
                // At the end SQL Server points at the last token.
                let last = if self.pos > 0 {
                    &self.toks[self.pos - 1]
                } else {
                    t
                };
                SqlError::syntax_near(&last.display(self.src), last.line)
            }
            _ => SqlError::syntax_near(&t.display(self.src), t.line),
        }
    }

    pub(crate) fn enter_n(&mut self, n: usize) -> Result<()> {
        for _ in 0..n {
            self.enter()?;
        }
        Ok(())
    }
    pub(crate) fn leave_n(&mut self, n: usize) {
        self.depth = self.depth.saturating_sub(n);
    }

    pub(crate) fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SqlError::new(
                191,
                15,
                "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up into smaller queries.",
            )
            .at_line(self.line()));
        }
        Ok(())
    }
    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// An identifier: unquoted word that is not reserved, or a quoted one.
    pub(crate) fn parse_ident(&mut self) -> Result<Ident> {
        match &self.peek().tok {
            Tok::Word(w) if !is_reserved(w) => {
                let v = w.clone();
                self.next();
                Ok(Ident {
                    value: v,
                    quoted: false,
                })
            }
            Tok::QuotedId(s) => {
                let v = s.clone();
                self.next();
                Ok(Ident {
                    value: v,
                    quoted: true,
                })
            }
            _ => Err(self.error_here()),
        }
    }

    /// Any word including reserved ones (for option names, where SQL Server allows keywords).
    pub(crate) fn parse_any_word(&mut self) -> Result<String> {
        match &self.peek().tok {
            Tok::Word(w) => {
                let v = w.to_ascii_uppercase();
                self.next();
                Ok(v)
            }
            _ => Err(self.error_here()),
        }
    }

    pub(crate) fn parse_object_name(&mut self) -> Result<ObjectName> {
        let mut parts = vec![self.parse_ident()?];
        while self.peek().tok == Tok::Dot {
            self.next();
            // db..table leaves the schema empty.
            while self.peek().tok == Tok::Dot {
                self.next();
                parts.push(Ident::new(""));
            }
            parts.push(self.parse_ident()?);
        }
        if parts.len() > 4 {
            return Err(self.error_here());
        }
        Ok(ObjectName(parts))
    }

    // ---- statements --------------------------------------------------------------------------------------------

    /// Parses statements until one of `terminators` (keywords) or EOF.
    pub(crate) fn parse_statements_until(
        &mut self,
        terminators: &[&str],
        top: bool,
    ) -> Result<Vec<Statement>> {
        let mut out = Vec::new();
        loop {
            while self.eat(&Tok::Semi) {}
            if self.at_eof() {
                if !terminators.is_empty() {
                    return Err(self.error_here());
                }
                break;
            }
            if terminators.iter().any(|t| self.is_kw(t)) {
                break;
            }
            let first = top && out.is_empty();
            out.push(self.parse_statement(first)?);
        }
        Ok(out)
    }

    pub(crate) fn parse_statement(&mut self, first_in_batch: bool) -> Result<Statement> {
        let saved = self.depth;
        self.enter_n(NEST_COST)?;
        let start_tok = self.peek().clone();
        let r = self.parse_statement_kind(first_in_batch);
        self.depth = saved;
        let kind = r?;
        let end = if self.pos > 0 {
            self.toks[self.pos - 1].end
        } else {
            start_tok.end
        };
        Ok(Statement {
            line: start_tok.line,
            kind,
            span: (start_tok.start, end.max(start_tok.start)),
        })
    }

    fn parse_statement_kind(&mut self, first_in_batch: bool) -> Result<StatementKind> {
        let t = self.peek().clone();
        let word = match &t.tok {
            Tok::Word(w) => w.to_ascii_uppercase(),
            Tok::LParen => return Ok(StatementKind::Query(Box::new(self.parse_query()?))),
            _ => return Err(self.error_here()),
        };
        match word.as_str() {
            "SELECT" | "WITH" => Ok(StatementKind::Query(Box::new(self.parse_query()?))),
            "INSERT" => self.parse_insert(),
            "UPDATE" => self.parse_update(),
            "DELETE" => self.parse_delete(),
            "DECLARE" => self.parse_declare(),
            "SET" => self.parse_set(),
            "IF" => {
                self.next();
                let cond = self.parse_expr()?;
                let then = Box::new(self.parse_statement(false)?);
                // A semicolon may end the THEN statement before ELSE.
                if self.peek().tok == Tok::Semi && self.is_kw_at(1, "ELSE") {
                    self.next();
                }
                let else_ = if self.eat_kw("ELSE") {
                    Some(Box::new(self.parse_statement(false)?))
                } else {
                    None
                };
                Ok(StatementKind::If { cond, then, else_ })
            }
            "WHILE" => {
                self.next();
                let cond = self.parse_expr()?;
                let body = Box::new(self.parse_statement(false)?);
                Ok(StatementKind::While { cond, body })
            }
            "BEGIN" => self.parse_begin(),
            "BREAK" => {
                self.next();
                Ok(StatementKind::Break)
            }
            "CONTINUE" => {
                self.next();
                Ok(StatementKind::Continue)
            }
            "RETURN" => {
                self.next();
                let e = if self.starts_expression() {
                    Some(self.parse_expr()?)
                } else {
                    None
                };
                Ok(StatementKind::Return(e))
            }
            "PRINT" => {
                self.next();
                Ok(StatementKind::Print(self.parse_expr()?))
            }
            "RAISERROR" => self.parse_raiserror(),
            "THROW" => {
                self.next();
                if self.starts_expression() {
                    let number = self.parse_expr()?;
                    self.expect(&Tok::Comma)?;
                    let message = self.parse_expr()?;
                    self.expect(&Tok::Comma)?;
                    let state = self.parse_expr()?;
                    Ok(StatementKind::Throw(Some(Box::new(Throw {
                        number,
                        message,
                        state,
                    }))))
                } else {
                    Ok(StatementKind::Throw(None))
                }
            }
            "COMMIT" | "ROLLBACK" => {
                self.next();
                let _ = self.eat_kw("TRAN") || self.eat_kw("TRANSACTION") || self.eat_kw("WORK");
                let name = self.parse_tran_name();
                Ok(if word == "COMMIT" {
                    StatementKind::Commit { name }
                } else {
                    StatementKind::Rollback { name }
                })
            }
            "SAVE" => {
                self.next();
                if !(self.eat_kw("TRAN") || self.eat_kw("TRANSACTION")) {
                    return Err(self.error_here());
                }
                match self.parse_tran_name() {
                    Some(name) => Ok(StatementKind::SaveTran { name }),
                    None => Err(self.error_here()),
                }
            }
            "USE" => {
                self.next();
                Ok(StatementKind::Use(self.parse_ident()?))
            }
            "EXEC" | "EXECUTE" => self.parse_exec(),
            "WAITFOR" => {
                self.next();
                let delay = if self.eat_kw("DELAY") {
                    true
                } else if self.eat_kw("TIME") {
                    false
                } else {
                    return Err(self.error_here());
                };
                Ok(StatementKind::WaitFor {
                    delay,
                    time: self.parse_primary()?,
                })
            }
            "TRUNCATE" => {
                self.next();
                self.expect_kw("TABLE")?;
                Ok(StatementKind::TruncateTable(self.parse_object_name()?))
            }
            "GRANT" | "DENY" | "REVOKE" => {
                // Permissions are accepted and recorded as text: there is one principal model (sa) for now.
                let start = t.start;
                self.next();
                let mut depth = 0i32;
                // The statement ends after its principal list: TO|FROM p [, p] [WITH GRANT OPTION]
                // [CASCADE] [AS p].
                loop {
                    let tk = self.peek().clone();
                    match &tk.tok {
                        Tok::Eof | Tok::Semi if depth == 0 => break,
                        Tok::Eof => break,
                        Tok::LParen => depth += 1,
                        Tok::RParen => depth -= 1,
                        Tok::Word(w)
                            if depth == 0
                                && (w.eq_ignore_ascii_case("TO")
                                    || w.eq_ignore_ascii_case("FROM")) =>
                        {
                            self.next();
                            loop {
                                self.parse_grant_principal()?;
                                if !self.eat(&Tok::Comma) {
                                    break;
                                }
                            }
                            if self.is_kw("WITH") && self.is_kw_at(1, "GRANT") {
                                self.next();
                                self.next();
                                self.expect_kw("OPTION")?;
                            }
                            self.eat_kw("CASCADE");
                            if self.eat_kw("AS") {
                                self.parse_grant_principal()?;
                            }
                            break;
                        }
                        Tok::Word(w)
                            if depth == 0 && is_statement_start(w) && !self.is_grant_word(w) =>
                        {
                            break
                        }
                        _ => {}
                    }
                    self.next();
                }
                let end = self.toks[self.pos.saturating_sub(1)].end;
                Ok(StatementKind::Grant {
                    text: self.src[start..end.max(start)].to_string(),
                })
            }
            "CREATE" => self.parse_create(),
            "ALTER" => self.parse_alter(),
            "DROP" => self.parse_drop(),
            "BACKUP" | "RESTORE" | "DBCC" | "CHECKPOINT" | "KILL" | "OPEN" | "CLOSE"
            | "RECONFIGURE" | "SHUTDOWN" => Ok(StatementKind::Admin(Box::new(
                self.parse_admin_statement()?,
            ))),
            "MERGE" => Err(SqlError::unsupported("MERGE", t.line)),
            "GOTO" => Err(SqlError::unsupported("GOTO", t.line)),
            _ => {
                // A batch may start with a bare procedure name: `sp_who` is EXEC sp_who.
                if first_in_batch && !is_reserved(&word) {
                    let proc = ProcTarget::Name(self.parse_object_name()?);
                    let args = self.parse_exec_args()?;
                    return Ok(StatementKind::Exec(Box::new(Exec {
                        return_var: None,
                        proc,
                        args,
                    })));
                }
                Err(self.error_here())
            }
        }
    }

    fn parse_grant_principal(&mut self) -> Result<()> {
        match &self.peek().tok {
            Tok::Word(_) | Tok::QuotedId(_) => {
                self.next();
                Ok(())
            }
            _ => Err(self.error_here()),
        }
    }

    fn is_grant_word(&self, w: &str) -> bool {
        // Words inside GRANT that are also statement starters.
        [
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "EXECUTE",
            "EXEC",
            "ALTER",
            "CREATE",
            "BACKUP",
            "CHECKPOINT",
        ]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(w))
    }

    fn parse_tran_name(&mut self) -> Option<String> {
        match &self.peek().tok {
            Tok::Word(w) if !is_reserved(w) => {
                let v = w.clone();
                self.next();
                Some(v)
            }
            Tok::QuotedId(w) => {
                let v = w.clone();
                self.next();
                Some(v)
            }
            Tok::Var(v) => {
                let v = v.clone();
                self.next();
                Some(v)
            }
            _ => None,
        }
    }

    fn parse_begin(&mut self) -> Result<StatementKind> {
        self.next(); // BEGIN
        if self.is_kw("TRAN") || self.is_kw("TRANSACTION") {
            self.next();
            let name = self.parse_tran_name();
            if self.is_kw("WITH") && self.is_kw_at(1, "MARK") {
                self.next();
                self.next();
                if matches!(self.peek().tok, Tok::Str(_) | Tok::NStr(_)) {
                    self.next();
                }
            }
            return Ok(StatementKind::BeginTran {
                name,
                distributed: false,
            });
        }
        if self.is_kw("DISTRIBUTED") {
            self.next();
            if !(self.eat_kw("TRAN") || self.eat_kw("TRANSACTION")) {
                return Err(self.error_here());
            }
            let name = self.parse_tran_name();
            return Ok(StatementKind::BeginTran {
                name,
                distributed: true,
            });
        }
        if self.is_kw("TRY") {
            self.next();
            let try_block = self.parse_statements_until(&["END"], false)?;
            self.expect_kw("END")?;
            self.expect_kw("TRY")?;
            while self.eat(&Tok::Semi) {}
            self.expect_kw("BEGIN")?;
            self.expect_kw("CATCH")?;
            let catch_block = self.parse_statements_until(&["END"], false)?;
            self.expect_kw("END")?;
            self.expect_kw("CATCH")?;
            return Ok(StatementKind::TryCatch {
                try_block,
                catch_block,
            });
        }
        if self.is_kw("CONVERSATION") || self.is_kw("DIALOG") {
            return Err(SqlError::unsupported("Service Broker", self.line()));
        }
        let body = self.parse_statements_until(&["END"], false)?;
        self.expect_kw("END")?;
        Ok(StatementKind::Block(body))
    }

    fn parse_raiserror(&mut self) -> Result<StatementKind> {
        self.next();
        self.expect(&Tok::LParen)?;
        let message = self.parse_expr()?;
        self.expect(&Tok::Comma)?;
        let severity = self.parse_expr()?;
        self.expect(&Tok::Comma)?;
        let state = self.parse_expr()?;
        let mut args = Vec::new();
        while self.eat(&Tok::Comma) {
            args.push(self.parse_expr()?);
        }
        self.expect(&Tok::RParen)?;
        let mut options = Vec::new();
        if self.eat_kw("WITH") {
            loop {
                let w = self.parse_any_word()?;
                if !["NOWAIT", "LOG", "SETERROR"].contains(&w.as_str()) {
                    self.pos -= 1;
                    return Err(self.error_here());
                }
                options.push(w);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        Ok(StatementKind::Raiserror(Box::new(Raiserror {
            message,
            severity,
            state,
            args,
            options,
        })))
    }

    fn parse_declare(&mut self) -> Result<StatementKind> {
        self.next();
        let mut decls = Vec::new();
        loop {
            let name = match &self.peek().tok {
                Tok::Var(v) => v.clone(),
                Tok::Word(_) if self.is_kw_at(1, "CURSOR") => {
                    return Err(SqlError::unsupported("DECLARE CURSOR", self.line()))
                }
                _ => return Err(self.error_here()),
            };
            self.next();
            self.eat_kw("AS");
            if self.is_kw("TABLE") {
                self.next();
                let (columns, constraints) = self.parse_table_elements()?;
                decls.push(Declaration::Table {
                    name,
                    columns,
                    constraints,
                });
            } else if self.is_kw("CURSOR") {
                return Err(SqlError::unsupported("DECLARE CURSOR", self.line()));
            } else {
                let ty = self.parse_type()?;
                let init = if self.eat_op("=") {
                    Some(self.parse_expr()?)
                } else {
                    None
                };
                decls.push(Declaration::Scalar { name, ty, init });
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(StatementKind::Declare(decls))
    }

    fn parse_assign_op(&mut self) -> Option<AssignOp> {
        let op = match &self.peek().tok {
            Tok::Op("=") => AssignOp::Assign,
            Tok::Op("+=") => AssignOp::Add,
            Tok::Op("-=") => AssignOp::Sub,
            Tok::Op("*=") => AssignOp::Mul,
            Tok::Op("/=") => AssignOp::Div,
            Tok::Op("%=") => AssignOp::Mod,
            Tok::Op("&=") => AssignOp::BitAnd,
            Tok::Op("|=") => AssignOp::BitOr,
            Tok::Op("^=") => AssignOp::BitXor,
            _ => return None,
        };
        self.next();
        Some(op)
    }

    fn parse_set(&mut self) -> Result<StatementKind> {
        self.next(); // SET
        if let Tok::Var(v) = &self.peek().tok {
            let name = v.clone();
            self.next();
            let op = self.parse_assign_op().ok_or_else(|| self.error_here())?;
            let value = self.parse_expr()?;
            return Ok(StatementKind::SetVariable { name, op, value });
        }
        let first = self.parse_any_word()?;
        match first.as_str() {
            "TRANSACTION" => {
                self.expect_kw("ISOLATION")?;
                self.expect_kw("LEVEL")?;
                let level = if self.eat_kw("READ") {
                    if self.eat_kw("COMMITTED") {
                        "READ COMMITTED"
                    } else if self.eat_kw("UNCOMMITTED") {
                        "READ UNCOMMITTED"
                    } else {
                        return Err(self.error_here());
                    }
                } else if self.eat_kw("REPEATABLE") {
                    self.expect_kw("READ")?;
                    "REPEATABLE READ"
                } else if self.eat_kw("SNAPSHOT") {
                    "SNAPSHOT"
                } else if self.eat_kw("SERIALIZABLE") {
                    "SERIALIZABLE"
                } else {
                    return Err(self.error_here());
                };
                return Ok(StatementKind::SetOption(SetOption {
                    names: vec!["TRANSACTION ISOLATION LEVEL".into()],
                    value: OptionValue::Word(level.into()),
                }));
            }
            "IDENTITY_INSERT" => {
                let table = self.parse_object_name()?;
                let value = self.parse_on_off()?;
                return Ok(StatementKind::SetOption(SetOption {
                    names: vec!["IDENTITY_INSERT".into(), table.dotted()],
                    value,
                }));
            }
            _ => {}
        }
        let mut names = vec![first];
        // STATISTICS IO, TIME ON and friends: a two-word option.
        if names[0] == "STATISTICS" {
            let w = self.parse_any_word()?;
            names[0] = format!("STATISTICS {}", w);
        }
        while self.eat(&Tok::Comma) {
            let w = self.parse_any_word()?;
            if names[0].starts_with("STATISTICS ") && !w.starts_with("STATISTICS") {
                names.push(format!("STATISTICS {}", w));
            } else {
                names.push(w);
            }
        }
        let value = match &self.peek().tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("ON") => {
                self.next();
                OptionValue::On
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("OFF") => {
                self.next();
                OptionValue::Off
            }
            Tok::Word(w) if !is_reserved(w) && names.len() == 1 => {
                let v = w.to_ascii_uppercase();
                self.next();
                OptionValue::Word(v)
            }
            Tok::QuotedId(w) if names.len() == 1 => {
                let v = w.clone();
                self.next();
                OptionValue::Word(v)
            }
            Tok::Int(_)
            | Tok::Decimal(_)
            | Tok::Float(_)
            | Tok::Str(_)
            | Tok::NStr(_)
            | Tok::Var(_)
            | Tok::Binary(_)
            | Tok::Op("-")
                if names.len() == 1 =>
            {
                OptionValue::Expr(self.parse_unary()?)
            }
            _ => return Err(self.error_here()),
        };
        Ok(StatementKind::SetOption(SetOption { names, value }))
    }

    fn parse_on_off(&mut self) -> Result<OptionValue> {
        if self.eat_kw("ON") {
            Ok(OptionValue::On)
        } else if self.eat_kw("OFF") {
            Ok(OptionValue::Off)
        } else {
            Err(self.error_here())
        }
    }

    fn parse_exec(&mut self) -> Result<StatementKind> {
        self.next(); // EXEC
        if self.is_kw("AS") {
            return Err(SqlError::unsupported("EXECUTE AS", self.line()));
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let mut parts = vec![self.parse_primary_or_concat()?];
            while self.eat_op("+") {
                parts.push(self.parse_primary_or_concat()?);
            }
            self.expect(&Tok::RParen)?;
            if self.is_kw("AS") && (self.is_kw_at(1, "USER") || self.is_kw_at(1, "LOGIN")) {
                return Err(SqlError::unsupported("EXEC ... AS USER/LOGIN", self.line()));
            }
            if self.is_kw("AT") {
                return Err(SqlError::unsupported(
                    "EXEC ... AT linked server",
                    self.line(),
                ));
            }
            return Ok(StatementKind::ExecString(parts));
        }
        let mut return_var = None;
        if let Tok::Var(v) = &self.peek().tok {
            if matches!(self.peek_at(1).tok, Tok::Op("=")) {
                return_var = Some(v.clone());
                self.next();
                self.next();
            }
        }
        let proc = if let Tok::Var(v) = &self.peek().tok {
            let v = v.clone();
            self.next();
            ProcTarget::Variable(v)
        } else {
            ProcTarget::Name(self.parse_object_name()?)
        };
        let args = self.parse_exec_args()?;
        if self.is_kw("WITH") && (self.is_kw_at(1, "RECOMPILE") || self.is_kw_at(1, "RESULT")) {
            return Err(SqlError::unsupported("EXEC ... WITH options", self.line()));
        }
        Ok(StatementKind::Exec(Box::new(Exec {
            return_var,
            proc,
            args,
        })))
    }

    fn parse_primary_or_concat(&mut self) -> Result<Expr> {
        self.parse_primary()
    }

    fn parse_exec_args(&mut self) -> Result<Vec<ExecArg>> {
        let mut args = Vec::new();
        if !self.starts_exec_arg() {
            return Ok(args);
        }
        loop {
            let mut name = None;
            if let Tok::Var(v) = &self.peek().tok {
                if matches!(self.peek_at(1).tok, Tok::Op("=")) {
                    name = Some(v.clone());
                    self.next();
                    self.next();
                }
            }
            let value = self.parse_exec_arg_value()?;
            let output = if self.is_kw("OUTPUT") || self.is_kw("OUT") {
                self.next();
                true
            } else {
                false
            };
            args.push(ExecArg {
                name,
                value,
                output,
            });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(args)
    }

    fn starts_exec_arg(&self) -> bool {
        match &self.peek().tok {
            Tok::Var(_)
            | Tok::Int(_)
            | Tok::Decimal(_)
            | Tok::Float(_)
            | Tok::Money(_)
            | Tok::Str(_)
            | Tok::NStr(_)
            | Tok::Binary(_)
            | Tok::Global(_)
            | Tok::QuotedId(_)
            | Tok::Op("-")
            | Tok::Op("+") => true,
            Tok::Word(w) => {
                w.eq_ignore_ascii_case("DEFAULT")
                    || w.eq_ignore_ascii_case("NULL")
                    || !is_reserved(w)
            }
            _ => false,
        }
    }

    fn parse_exec_arg_value(&mut self) -> Result<Expr> {
        match &self.peek().tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("DEFAULT") => {
                self.next();
                Ok(Expr::Literal(Literal::Default))
            }
            // A bare word is a string: EXEC sp_help mytable.
            Tok::Word(w)
                if !is_reserved(w) && !matches!(self.peek_at(1).tok, Tok::LParen | Tok::Dot) =>
            {
                let v = w.clone();
                self.next();
                Ok(Expr::Literal(Literal::NString(v)))
            }
            Tok::QuotedId(w) => {
                let v = w.clone();
                self.next();
                Ok(Expr::Literal(Literal::NString(v)))
            }
            _ => self.parse_unary(),
        }
    }

    pub(crate) fn parse_proc_param(&mut self) -> Result<ProcParam> {
        let name = match &self.peek().tok {
            Tok::Var(v) => v.clone(),
            _ => return Err(self.error_here()),
        };
        self.next();
        self.eat_kw("AS");
        let ty = self.parse_type()?;
        let default = if self.eat_op("=") {
            Some(self.parse_unary()?)
        } else {
            None
        };
        let mut output = false;
        loop {
            if self.eat_kw("OUTPUT") || self.eat_kw("OUT") {
                output = true;
            } else if !self.eat_kw("READONLY") {
                break;
            }
        }
        Ok(ProcParam {
            name,
            ty,
            default,
            output,
        })
    }

    // ---- types -------------------------------------------------------------------------------------------------

    /// In CAST/CONVERT a character or binary type without a length means 30, not 1.
    fn parse_cast_type(&mut self) -> Result<DataType> {
        let no_len = !matches!(self.peek_at(1).tok, Tok::LParen | Tok::Dot);
        let ty = self.parse_type()?;
        Ok(match ty {
            DataType::Char(1) if no_len => DataType::Char(30),
            DataType::NChar(1) if no_len => DataType::NChar(30),
            DataType::Binary(1) if no_len => DataType::Binary(30),
            DataType::VarChar(crate::types::Len::N(1)) if no_len => {
                DataType::VarChar(crate::types::Len::N(30))
            }
            DataType::NVarChar(crate::types::Len::N(1)) if no_len => {
                DataType::NVarChar(crate::types::Len::N(30))
            }
            DataType::VarBinary(crate::types::Len::N(1)) if no_len => {
                DataType::VarBinary(crate::types::Len::N(30))
            }
            other => other,
        })
    }

    pub(crate) fn parse_type(&mut self) -> Result<DataType> {
        let line = self.line();
        let mut name = match &self.peek().tok {
            Tok::Word(w) => w.clone(),
            Tok::QuotedId(w) => w.clone(),
            _ => return Err(self.error_here()),
        };
        self.next();
        // sys.sysname, dbo.mytype: the last part names the type.
        while self.peek().tok == Tok::Dot {
            self.next();
            name = match &self.next().tok {
                Tok::Word(w) | Tok::QuotedId(w) => w.clone(),
                _ => return Err(self.error_here()),
            };
        }
        if name.eq_ignore_ascii_case("DOUBLE") {
            self.expect_kw("PRECISION")?;
            name = "FLOAT".into();
        }
        if (name.eq_ignore_ascii_case("CHARACTER") || name.eq_ignore_ascii_case("CHAR"))
            && self.eat_kw("VARYING")
        {
            name = "VARCHAR".into();
        }
        let mut args = Vec::new();
        if self.peek().tok == Tok::LParen {
            self.next();
            loop {
                match &self.peek().tok {
                    Tok::Int(n) => {
                        let v: u32 = n.parse().map_err(|_| self.error_here())?;
                        args.push(Some(v));
                        self.next();
                    }
                    Tok::Word(w) if w.eq_ignore_ascii_case("MAX") => {
                        args.push(None);
                        self.next();
                    }
                    _ => return Err(self.error_here()),
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        }
        validate_type_args(&name, &args, line)?;
        DataType::from_name(&name, &args).ok_or_else(|| {
            SqlError::new(
                2715,
                16,
                format!(
                    "Column, parameter, or variable #1: Cannot find data type {}.",
                    name
                ),
            )
            .at_line(line)
        })
    }

    // ---- expressions -------------------------------------------------------------------------------------------

    /// Whether the current token can begin an expression (used by RETURN and THROW, whose operand is optional).
    pub(crate) fn starts_expression(&self) -> bool {
        match &self.peek().tok {
            Tok::Word(w) => {
                let u = w.to_ascii_uppercase();
                !is_reserved(&u)
                    || matches!(
                        u.as_str(),
                        "NULL"
                            | "CASE"
                            | "NOT"
                            | "EXISTS"
                            | "CONVERT"
                            | "COALESCE"
                            | "NULLIF"
                            | "LEFT"
                            | "RIGHT"
                            | "CURRENT_TIMESTAMP"
                            | "TRY_CONVERT"
                    )
            }
            Tok::Semi | Tok::Eof | Tok::RParen | Tok::Comma | Tok::Dot => false,
            Tok::LParen => !(self.is_kw_at(1, "SELECT") || self.is_kw_at(1, "WITH")),
            Tok::Op(o) => matches!(*o, "-" | "+" | "~"),
            _ => true,
        }
    }

    pub fn parse_expr(&mut self) -> Result<Expr> {
        let saved = self.depth;
        self.enter_n(NEST_COST)?;
        let r = self.parse_or();
        // Chain operators below consumed budget too; give it all back now that the subtree is complete.
        self.depth = saved;
        r
    }

    fn parse_or(&mut self) -> Result<Expr> {
        let mut left = self.parse_and()?;
        while self.eat_kw("OR") {
            let right = self.parse_and()?;
            left = Expr::Binary {
                op: BinOp::Or,
                left: Box::new(left),
                right: Box::new(right),
            };
            self.enter()?;
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr> {
        let mut left = self.parse_not()?;
        while self.eat_kw("AND") {
            let right = self.parse_not()?;
            left = Expr::Binary {
                op: BinOp::And,
                left: Box::new(left),
                right: Box::new(right),
            };
            self.enter()?;
        }
        Ok(left)
    }

    fn parse_not(&mut self) -> Result<Expr> {
        if self.eat_kw("NOT") {
            self.enter()?;
            let e = self.parse_not();
            self.leave();
            return Ok(Expr::Unary {
                op: UnaryOp::Not,
                expr: Box::new(e?),
            });
        }
        self.parse_predicate()
    }

    fn parse_predicate(&mut self) -> Result<Expr> {
        let mut left = self.parse_additive()?;
        loop {
            let cmp = match &self.peek().tok {
                Tok::Op("=") => Some(BinOp::Eq),
                Tok::Op("<>") | Tok::Op("!=") => Some(BinOp::Ne),
                Tok::Op("<") => Some(BinOp::Lt),
                Tok::Op("<=") | Tok::Op("!>") => Some(BinOp::Le),
                Tok::Op(">") => Some(BinOp::Gt),
                Tok::Op(">=") | Tok::Op("!<") => Some(BinOp::Ge),
                _ => None,
            };
            if let Some(op) = cmp {
                self.next();
                if self.is_kw("ALL") || self.is_kw("ANY") || self.is_kw("SOME") {
                    return Err(SqlError::unsupported(
                        "ALL/ANY/SOME comparison",
                        self.line(),
                    ));
                }
                let right = self.parse_additive()?;
                left = Expr::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                };
                self.enter()?;
                continue;
            }
            if self.is_kw("IS") {
                self.next();
                let negated = self.eat_kw("NOT");
                self.expect_kw("NULL")?;
                left = Expr::IsNull {
                    expr: Box::new(left),
                    negated,
                };
                self.enter()?;
                continue;
            }
            let negated = self.is_kw("NOT")
                && (self.is_kw_at(1, "LIKE")
                    || self.is_kw_at(1, "IN")
                    || self.is_kw_at(1, "BETWEEN"));
            if negated {
                self.next();
            }
            if self.eat_kw("LIKE") {
                let pattern = self.parse_additive()?;
                let escape = if self.eat_kw("ESCAPE") {
                    Some(Box::new(self.parse_additive()?))
                } else {
                    None
                };
                left = Expr::Like {
                    expr: Box::new(left),
                    pattern: Box::new(pattern),
                    escape,
                    negated,
                };
                self.enter()?;
                continue;
            }
            if self.eat_kw("IN") {
                self.expect(&Tok::LParen)?;
                if self.is_kw("SELECT") || self.is_kw("WITH") {
                    let q = self.parse_query()?;
                    self.expect(&Tok::RParen)?;
                    left = Expr::InSubquery {
                        expr: Box::new(left),
                        query: Box::new(q),
                        negated,
                    };
                    self.enter()?;
                } else {
                    let mut list = vec![self.parse_expr()?];
                    while self.eat(&Tok::Comma) {
                        list.push(self.parse_expr()?);
                    }
                    self.expect(&Tok::RParen)?;
                    left = Expr::InList {
                        expr: Box::new(left),
                        list,
                        negated,
                    };
                    self.enter()?;
                }
                continue;
            }
            if self.eat_kw("BETWEEN") {
                let low = self.parse_additive()?;
                self.expect_kw("AND")?;
                let high = self.parse_additive()?;
                left = Expr::Between {
                    expr: Box::new(left),
                    low: Box::new(low),
                    high: Box::new(high),
                    negated,
                };
                self.enter()?;
                continue;
            }
            if negated {
                return Err(self.error_here());
            }
            return Ok(left);
        }
    }

    fn parse_additive(&mut self) -> Result<Expr> {
        let mut left = self.parse_multiplicative()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                Tok::Op("&") => BinOp::BitAnd,
                Tok::Op("|") => BinOp::BitOr,
                Tok::Op("^") => BinOp::BitXor,
                _ => return Ok(left),
            };
            self.next();
            let right = self.parse_multiplicative()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
            self.enter()?;
        }
    }

    fn parse_multiplicative(&mut self) -> Result<Expr> {
        let mut left = self.parse_unary()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Op("*") => BinOp::Mul,
                Tok::Op("/") => BinOp::Div,
                Tok::Op("%") => BinOp::Mod,
                _ => return Ok(left),
            };
            self.next();
            let right = self.parse_unary()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
            self.enter()?;
        }
    }

    pub(crate) fn parse_unary(&mut self) -> Result<Expr> {
        let op = match &self.peek().tok {
            Tok::Op("-") => Some(UnaryOp::Neg),
            Tok::Op("+") => Some(UnaryOp::Plus),
            Tok::Op("~") => Some(UnaryOp::BitNot),
            _ => None,
        };
        if let Some(op) = op {
            self.next();
            self.enter()?;
            let inner = self.parse_unary();
            self.leave();
            let inner = inner?;
            // Fold -literal so -2147483648 stays an INT and -9223372036854775808 a BIGINT.
            if op == UnaryOp::Neg {
                match &inner {
                    Expr::Literal(Literal::Int(n)) => return Ok(Expr::Literal(Literal::Int(-n))),
                    Expr::Literal(Literal::Decimal(d)) if d == "9223372036854775808" => {
                        return Ok(Expr::Literal(Literal::Int(i64::MIN)))
                    }
                    _ => {}
                }
            }
            return Ok(Expr::Unary {
                op,
                expr: Box::new(inner),
            });
        }
        let mut e = self.parse_primary()?;
        while self.is_kw("COLLATE") {
            self.next();
            let c = self.parse_any_word()?;
            e = Expr::Collate {
                expr: Box::new(e),
                collation: c,
            };
            self.enter()?;
        }
        Ok(e)
    }

    pub(crate) fn parse_primary(&mut self) -> Result<Expr> {
        let t = self.peek().clone();
        let lit = |l| Ok(Expr::Literal(l));
        match t.tok {
            Tok::Int(s) => {
                self.next();
                match s.parse::<i64>() {
                    Ok(n) => lit(Literal::Int(n)),
                    Err(_) => lit(Literal::Decimal(s)),
                }
            }
            Tok::Decimal(s) => {
                self.next();
                lit(Literal::Decimal(s))
            }
            Tok::Float(s) => {
                self.next();
                let v: f64 = s
                    .parse()
                    .or_else(|_| format!("{}0", s).parse())
                    .map_err(|_| SqlError::syntax_near(&s, t.line))?;
                lit(Literal::Float(v))
            }
            Tok::Money(s) => {
                self.next();
                lit(Literal::Money(s))
            }
            Tok::Str(s) => {
                self.next();
                lit(Literal::String(s))
            }
            Tok::NStr(s) => {
                self.next();
                lit(Literal::NString(s))
            }
            Tok::Binary(b) => {
                self.next();
                lit(Literal::Binary(b))
            }
            Tok::Var(v) => {
                self.next();
                Ok(Expr::Variable(v))
            }
            Tok::Global(g) => {
                self.next();
                Ok(Expr::Global(g))
            }
            Tok::LParen => {
                self.next();
                if self.is_kw("SELECT") || self.is_kw("WITH") {
                    let q = self.parse_query()?;
                    self.expect(&Tok::RParen)?;
                    return Ok(Expr::Subquery(Box::new(q)));
                }
                let e = self.parse_expr()?;
                self.expect(&Tok::RParen)?;
                Ok(Expr::Nested(Box::new(e)))
            }
            Tok::Op("*") => {
                self.next();
                Ok(Expr::Wildcard(None))
            }
            Tok::Word(w) => {
                let u = w.to_ascii_uppercase();
                match u.as_str() {
                    "NULL" => {
                        self.next();
                        lit(Literal::Null)
                    }
                    "DEFAULT" => {
                        self.next();
                        lit(Literal::Default)
                    }
                    "CASE" => self.parse_case(),
                    "CAST" | "TRY_CAST" if matches!(self.peek_at(1).tok, Tok::LParen) => {
                        self.next();
                        self.next();
                        let e = self.parse_expr()?;
                        self.expect_kw("AS")?;
                        let ty = self.parse_cast_type()?;
                        self.expect(&Tok::RParen)?;
                        Ok(Expr::Cast {
                            expr: Box::new(e),
                            ty,
                            try_: u == "TRY_CAST",
                        })
                    }
                    "CONVERT" | "TRY_CONVERT" => {
                        self.next();
                        self.expect(&Tok::LParen)?;
                        let ty = self.parse_cast_type()?;
                        self.expect(&Tok::Comma)?;
                        let e = self.parse_expr()?;
                        let style = if self.eat(&Tok::Comma) {
                            Some(Box::new(self.parse_expr()?))
                        } else {
                            None
                        };
                        self.expect(&Tok::RParen)?;
                        Ok(Expr::Convert {
                            ty,
                            expr: Box::new(e),
                            style,
                            try_: u == "TRY_CONVERT",
                        })
                    }
                    "EXISTS" => {
                        self.next();
                        self.expect(&Tok::LParen)?;
                        let q = self.parse_query()?;
                        self.expect(&Tok::RParen)?;
                        Ok(Expr::Exists {
                            query: Box::new(q),
                            negated: false,
                        })
                    }
                    "CURRENT_TIMESTAMP" | "CURRENT_USER" | "SESSION_USER" | "SYSTEM_USER"
                    | "USER"
                        if !matches!(self.peek_at(1).tok, Tok::LParen) =>
                    {
                        self.next();
                        Ok(Expr::Function(Box::new(FunctionCall {
                            name: ObjectName(vec![Ident::new(u)]),
                            args: vec![],
                            distinct: false,
                            over: None,
                        })))
                    }
                    _ => {
                        let callable_reserved = matches!(
                            u.as_str(),
                            "LEFT"
                                | "RIGHT"
                                | "COALESCE"
                                | "NULLIF"
                                | "USER"
                                | "IDENTITY"
                                | "UPDATE"
                        );
                        if is_reserved(&u)
                            && !(callable_reserved && matches!(self.peek_at(1).tok, Tok::LParen))
                        {
                            return Err(self.error_here());
                        }
                        self.parse_name_expr()
                    }
                }
            }
            Tok::QuotedId(_) => self.parse_name_expr(),
            _ => Err(self.error_here()),
        }
    }

    /// A column reference, t.*, or a function call starting at an identifier.
    fn parse_name_expr(&mut self) -> Result<Expr> {
        let mut parts = vec![self.parse_ident_or_callable()?];
        loop {
            if self.peek().tok == Tok::Dot {
                if matches!(self.peek_at(1).tok, Tok::Op("*")) {
                    self.next();
                    self.next();
                    return Ok(Expr::Wildcard(Some(ObjectName(parts))));
                }
                self.next();
                // After a period any word names a column: c.precision, o.type.
                parts.push(self.parse_ident_or_callable()?);
            } else {
                break;
            }
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let mut args = Vec::new();
            let mut distinct = false;
            if self.peek().tok != Tok::RParen {
                if self.eat_kw("DISTINCT") {
                    distinct = true;
                } else {
                    self.eat_kw("ALL");
                }
                loop {
                    args.push(self.parse_expr()?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
            }
            self.expect(&Tok::RParen)?;
            let mut over = None;
            if self.is_kw("WITHIN") {
                return Err(SqlError::unsupported("WITHIN GROUP", self.line()));
            }
            if self.eat_kw("OVER") {
                self.expect(&Tok::LParen)?;
                let mut partition_by = Vec::new();
                if self.eat_kw("PARTITION") {
                    self.expect_kw("BY")?;
                    loop {
                        partition_by.push(self.parse_expr()?);
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                }
                let order_by = if self.is_kw("ORDER") {
                    self.parse_order_by()?
                } else {
                    vec![]
                };
                if self.is_kw("ROWS") || self.is_kw("RANGE") {
                    return Err(SqlError::unsupported("window frame", self.line()));
                }
                self.expect(&Tok::RParen)?;
                over = Some(WindowSpec {
                    partition_by,
                    order_by,
                });
            }
            return Ok(Expr::Function(Box::new(FunctionCall {
                name: ObjectName(parts),
                args,
                distinct,
                over,
            })));
        }
        Ok(Expr::Column(parts))
    }

    fn parse_ident_or_callable(&mut self) -> Result<Ident> {
        match &self.peek().tok {
            Tok::Word(w) => {
                let v = w.clone();
                self.next();
                Ok(Ident {
                    value: v,
                    quoted: false,
                })
            }
            _ => self.parse_ident(),
        }
    }

    fn parse_case(&mut self) -> Result<Expr> {
        self.next(); // CASE
        let operand = if self.is_kw("WHEN") {
            None
        } else {
            Some(Box::new(self.parse_expr()?))
        };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let w = self.parse_expr()?;
            self.expect_kw("THEN")?;
            let t = self.parse_expr()?;
            whens.push((w, t));
        }
        if whens.is_empty() {
            return Err(self.error_here());
        }
        let else_ = if self.eat_kw("ELSE") {
            Some(Box::new(self.parse_expr()?))
        } else {
            None
        };
        self.expect_kw("END")?;
        Ok(Expr::Case {
            operand,
            whens,
            else_,
        })
    }

    // ---- queries -----------------------------------------------------------------------------------------------

    pub(crate) fn parse_query(&mut self) -> Result<Query> {
        let saved = self.depth;
        self.enter_n(NEST_COST / 2)?;
        let r = self.parse_query_inner();
        self.depth = saved;
        r
    }

    fn parse_query_inner(&mut self) -> Result<Query> {
        let mut ctes = Vec::new();
        if self.eat_kw("WITH") {
            loop {
                let name = self.parse_ident()?;
                let mut columns = Vec::new();
                if self.eat(&Tok::LParen) {
                    loop {
                        columns.push(self.parse_ident()?);
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::RParen)?;
                }
                self.expect_kw("AS")?;
                self.expect(&Tok::LParen)?;
                let query = self.parse_query()?;
                self.expect(&Tok::RParen)?;
                ctes.push(Cte {
                    name,
                    columns,
                    query,
                });
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            // A CTE may precede INSERT/UPDATE/DELETE too; only SELECT is supported after it.
            if !(self.is_kw("SELECT") || self.peek().tok == Tok::LParen) {
                return Err(SqlError::unsupported(
                    "WITH before INSERT/UPDATE/DELETE",
                    self.line(),
                ));
            }
        }
        let mut body = self.parse_set_term()?;
        loop {
            let op = if self.is_kw("UNION") {
                self.next();
                if self.eat_kw("ALL") {
                    SetOp::UnionAll
                } else {
                    SetOp::Union
                }
            } else if self.eat_kw("EXCEPT") {
                SetOp::Except
            } else if self.eat_kw("INTERSECT") {
                SetOp::Intersect
            } else {
                break;
            };
            let right = self.parse_set_term()?;
            body = SetExpr::SetOp {
                op,
                left: Box::new(body),
                right: Box::new(right),
            };
        }
        let order_by = if self.is_kw("ORDER") {
            self.parse_order_by()?
        } else {
            vec![]
        };
        let mut offset = None;
        let mut fetch = None;
        if self.is_kw("OFFSET") && !order_by.is_empty() {
            self.next();
            offset = Some(self.parse_expr()?);
            if !(self.eat_kw("ROWS") || self.eat_kw("ROW")) {
                return Err(self.error_here());
            }
            if self.eat_kw("FETCH") {
                if !(self.eat_kw("NEXT") || self.eat_kw("FIRST")) {
                    return Err(self.error_here());
                }
                fetch = Some(self.parse_expr()?);
                if !(self.eat_kw("ROWS") || self.eat_kw("ROW")) {
                    return Err(self.error_here());
                }
                self.expect_kw("ONLY")?;
            }
        }
        if self.is_kw("FOR")
            && (self.is_kw_at(1, "XML") || self.is_kw_at(1, "JSON") || self.is_kw_at(1, "BROWSE"))
        {
            return Err(SqlError::unsupported(
                &format!(
                    "FOR {}",
                    self.peek_at(1).display(self.src).to_ascii_uppercase()
                ),
                self.line(),
            ));
        }
        let mut option = None;
        if self.is_kw("OPTION") && matches!(self.peek_at(1).tok, Tok::LParen) {
            self.next();
            let start = self.peek().end;
            self.skip_parens()?;
            let end = self.toks[self.pos - 1].start;
            option = Some(self.src[start..end.max(start)].trim().to_string());
        }
        Ok(Query {
            ctes,
            body,
            order_by,
            offset,
            fetch,
            option,
        })
    }

    /// Skips a balanced parenthesised group starting at '('.
    pub(crate) fn skip_parens(&mut self) -> Result<()> {
        self.expect(&Tok::LParen)?;
        let mut depth = 1;
        while depth > 0 {
            match self.next().tok {
                Tok::LParen => depth += 1,
                Tok::RParen => depth -= 1,
                Tok::Eof => return Err(self.error_here()),
                _ => {}
            }
        }
        Ok(())
    }

    fn parse_set_term(&mut self) -> Result<SetExpr> {
        if self.peek().tok == Tok::LParen {
            self.next();
            let q = self.parse_query()?;
            self.expect(&Tok::RParen)?;
            return Ok(SetExpr::Query(Box::new(q)));
        }
        if self.is_kw("VALUES") {
            return Ok(SetExpr::Values(self.parse_values_rows()?));
        }
        Ok(SetExpr::Select(Box::new(self.parse_select()?)))
    }

    fn parse_values_rows(&mut self) -> Result<Vec<Vec<Expr>>> {
        self.expect_kw("VALUES")?;
        let mut rows = Vec::new();
        loop {
            self.expect(&Tok::LParen)?;
            let mut row = Vec::new();
            loop {
                row.push(self.parse_expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
            rows.push(row);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(rows)
    }

    pub(crate) fn parse_order_by(&mut self) -> Result<Vec<OrderBy>> {
        self.expect_kw("ORDER")?;
        self.expect_kw("BY")?;
        let mut out = Vec::new();
        loop {
            let expr = self.parse_expr()?;
            let desc = if self.eat_kw("DESC") {
                true
            } else {
                self.eat_kw("ASC");
                false
            };
            out.push(OrderBy { expr, desc });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(out)
    }

    fn parse_top(&mut self) -> Result<Option<Top>> {
        if !self.eat_kw("TOP") {
            return Ok(None);
        }
        let count = if self.peek().tok == Tok::LParen {
            self.next();
            let e = self.parse_expr()?;
            self.expect(&Tok::RParen)?;
            e
        } else {
            self.parse_primary()?
        };
        let percent = self.eat_kw("PERCENT");
        let with_ties = if self.is_kw("WITH") && self.is_kw_at(1, "TIES") {
            self.next();
            self.next();
            true
        } else {
            false
        };
        Ok(Some(Top {
            count,
            percent,
            with_ties,
        }))
    }

    fn parse_select(&mut self) -> Result<Select> {
        self.expect_kw("SELECT")?;
        let distinct = if self.eat_kw("DISTINCT") {
            true
        } else {
            self.eat_kw("ALL");
            false
        };
        let top = self.parse_top()?;
        let items = self.parse_select_items()?;
        let into = if self.eat_kw("INTO") {
            Some(self.parse_object_name()?)
        } else {
            None
        };
        let from = if self.eat_kw("FROM") {
            self.parse_from()?
        } else {
            vec![]
        };
        let selection = if self.eat_kw("WHERE") {
            Some(self.parse_expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.is_kw("GROUP") {
            self.next();
            self.expect_kw("BY")?;
            loop {
                group_by.push(self.parse_expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        let having = if self.eat_kw("HAVING") {
            Some(self.parse_expr()?)
        } else {
            None
        };
        Ok(Select {
            distinct,
            top,
            items,
            into,
            from,
            selection,
            group_by,
            having,
        })
    }

    pub(crate) fn parse_select_items(&mut self) -> Result<Vec<SelectItem>> {
        let mut items = Vec::new();
        loop {
            items.push(self.parse_select_item()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(items)
    }

    fn parse_select_item(&mut self) -> Result<SelectItem> {
        // @v = expr
        if let Tok::Var(v) = &self.peek().tok {
            let v = v.clone();
            if let Tok::Op(o) = self.peek_at(1).tok {
                if o.ends_with('=') && !matches!(o, "<=" | ">=" | "!=") {
                    self.next();
                    let op = self.parse_assign_op().ok_or_else(|| self.error_here())?;
                    let expr = self.parse_expr()?;
                    return Ok(SelectItem::Assign { var: v, op, expr });
                }
            }
        }
        // alias = expr
        let alias_eq = match &self.peek().tok {
            Tok::Word(w) => !is_reserved(w),
            Tok::QuotedId(_) | Tok::Str(_) => true,
            _ => false,
        } && matches!(self.peek_at(1).tok, Tok::Op("="));
        if alias_eq {
            let alias = match self.next().tok {
                Tok::Word(w) => Ident {
                    value: w,
                    quoted: false,
                },
                Tok::QuotedId(w) | Tok::Str(w) => Ident {
                    value: w,
                    quoted: true,
                },
                _ => unreachable!(),
            };
            self.next();
            let expr = self.parse_expr()?;
            return Ok(SelectItem::Expr {
                expr,
                alias: Some(alias),
            });
        }
        let expr = self.parse_expr()?;
        let alias = self.parse_alias(false)?;
        Ok(SelectItem::Expr { expr, alias })
    }

    /// [AS] alias. Without AS only a non-reserved word (minus context words) or a quoted name counts.
    fn parse_alias(&mut self, table: bool) -> Result<Option<Ident>> {
        if self.eat_kw("AS") {
            return match &self.peek().tok {
                Tok::Str(s) | Tok::NStr(s) if !table => {
                    let v = s.clone();
                    self.next();
                    Ok(Some(Ident {
                        value: v,
                        quoted: true,
                    }))
                }
                _ => Ok(Some(self.parse_ident()?)),
            };
        }
        match &self.peek().tok {
            Tok::Word(w) if !is_reserved(w) && !is_context_word(w) => {
                let v = w.clone();
                self.next();
                Ok(Some(Ident {
                    value: v,
                    quoted: false,
                }))
            }
            Tok::QuotedId(w) => {
                let v = w.clone();
                self.next();
                Ok(Some(Ident {
                    value: v,
                    quoted: true,
                }))
            }
            Tok::Str(s) if !table => {
                let v = s.clone();
                self.next();
                Ok(Some(Ident {
                    value: v,
                    quoted: true,
                }))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn parse_from(&mut self) -> Result<Vec<TableWithJoins>> {
        let mut out = Vec::new();
        loop {
            out.push(self.parse_table_with_joins()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(out)
    }

    fn parse_table_with_joins(&mut self) -> Result<TableWithJoins> {
        let table = self.parse_table_factor()?;
        let mut joins = Vec::new();
        loop {
            let kind = if self.is_kw("JOIN") {
                self.next();
                JoinKind::Inner
            } else if self.is_kw("INNER") {
                self.next();
                self.expect_kw("JOIN")?;
                JoinKind::Inner
            } else if self.is_kw("LEFT") || self.is_kw("RIGHT") || self.is_kw("FULL") {
                let w = self.parse_any_word()?;
                self.eat_kw("OUTER");
                self.expect_kw("JOIN")?;
                match w.as_str() {
                    "LEFT" => JoinKind::Left,
                    "RIGHT" => JoinKind::Right,
                    _ => JoinKind::Full,
                }
            } else if self.is_kw("CROSS") {
                self.next();
                if self.eat_kw("APPLY") {
                    JoinKind::CrossApply
                } else {
                    self.expect_kw("JOIN")?;
                    JoinKind::Cross
                }
            } else if self.is_kw("OUTER") && self.is_kw_at(1, "APPLY") {
                self.next();
                self.next();
                JoinKind::OuterApply
            } else {
                break;
            };
            let table = self.parse_table_factor()?;
            let on = if matches!(
                kind,
                JoinKind::Inner | JoinKind::Left | JoinKind::Right | JoinKind::Full
            ) {
                self.expect_kw("ON")?;
                Some(self.parse_expr()?)
            } else {
                None
            };
            joins.push(Join { kind, table, on });
        }
        Ok(TableWithJoins { table, joins })
    }

    pub(crate) fn parse_table_factor(&mut self) -> Result<TableFactor> {
        match &self.peek().tok {
            Tok::LParen => {
                self.next();
                if self.is_kw("VALUES") {
                    let rows = self.parse_values_rows()?;
                    self.expect(&Tok::RParen)?;
                    let alias = self.parse_alias(true)?;
                    let columns = self.parse_column_alias_list()?;
                    return Ok(TableFactor::Values {
                        rows,
                        alias,
                        columns,
                    });
                }
                let q = self.parse_query()?;
                self.expect(&Tok::RParen)?;
                let alias = self.parse_alias(true)?;
                let columns = self.parse_column_alias_list()?;
                Ok(TableFactor::Derived {
                    query: Box::new(q),
                    alias,
                    columns,
                })
            }
            Tok::Var(v) => {
                let name = v.clone();
                self.next();
                let alias = self.parse_alias(true)?;
                Ok(TableFactor::Variable { name, alias })
            }
            _ => {
                let name = self.parse_object_name()?;
                // Legacy hint syntax `FROM t (NOLOCK)` is not a table-valued function call.
                let legacy_hint = self.peek().tok == Tok::LParen
                    && matches!(&self.peek_at(1).tok, Tok::Word(w) if is_table_hint(w));
                if self.peek().tok == Tok::LParen && !legacy_hint {
                    self.next();
                    let mut args = Vec::new();
                    if self.peek().tok != Tok::RParen {
                        loop {
                            args.push(self.parse_expr()?);
                            if !self.eat(&Tok::Comma) {
                                break;
                            }
                        }
                    }
                    self.expect(&Tok::RParen)?;
                    let alias = self.parse_alias(true)?;
                    return Ok(TableFactor::Function {
                        call: FunctionCall {
                            name,
                            args,
                            distinct: false,
                            over: None,
                        },
                        alias,
                    });
                }
                let mut hints = Vec::new();
                if legacy_hint {
                    self.parse_legacy_hints(&mut hints)?;
                }
                let alias = self.parse_alias(true)?;
                if alias.is_some()
                    && self.peek().tok == Tok::LParen
                    && matches!(&self.peek_at(1).tok, Tok::Word(w) if is_table_hint(w))
                {
                    self.parse_legacy_hints(&mut hints)?;
                }
                if self.is_kw("WITH") && matches!(self.peek_at(1).tok, Tok::LParen) {
                    self.next();
                    self.next();
                    loop {
                        let h = self.parse_any_word()?;
                        if self.peek().tok == Tok::LParen {
                            self.skip_parens()?;
                        }
                        hints.push(h);
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::RParen)?;
                }
                Ok(TableFactor::Table { name, alias, hints })
            }
        }
    }

    /// `(NOLOCK, INDEX(ix))` after a table name or alias.
    fn parse_legacy_hints(&mut self, hints: &mut Vec<String>) -> Result<()> {
        self.expect(&Tok::LParen)?;
        loop {
            hints.push(self.parse_any_word()?);
            if self.peek().tok == Tok::LParen {
                self.skip_parens()?;
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)
    }

    fn parse_column_alias_list(&mut self) -> Result<Vec<Ident>> {
        let mut cols = Vec::new();
        if self.peek().tok == Tok::LParen
            && matches!(self.peek_at(1).tok, Tok::Word(_) | Tok::QuotedId(_))
        {
            self.next();
            loop {
                cols.push(self.parse_ident()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        }
        Ok(cols)
    }

    // ---- DML ---------------------------------------------------------------------------------------------------

    fn parse_output(&mut self) -> Result<Option<Output>> {
        if !self.eat_kw("OUTPUT") {
            return Ok(None);
        }
        let items = self.parse_select_items()?;
        let into = if self.eat_kw("INTO") {
            let n = if let Tok::Var(v) = &self.peek().tok {
                let v = v.clone();
                self.next();
                ObjectName(vec![Ident::new(v)])
            } else {
                self.parse_object_name()?
            };
            if self.peek().tok == Tok::LParen {
                self.skip_parens()?;
            }
            Some(n)
        } else {
            None
        };
        Ok(Some(Output { items, into }))
    }

    fn parse_insert(&mut self) -> Result<StatementKind> {
        self.next();
        let top = self.parse_top()?;
        self.eat_kw("INTO");
        // INSERT INTO @table_variable: the variable names the table.
        let table = if let Tok::Var(v) = &self.peek().tok {
            let v = v.clone();
            self.next();
            ObjectName(vec![Ident::new(v)])
        } else {
            self.parse_object_name()?
        };
        if self.is_kw("WITH") && matches!(self.peek_at(1).tok, Tok::LParen) {
            self.next();
            self.skip_parens()?;
        }
        let mut columns = Vec::new();
        if self.peek().tok == Tok::LParen {
            self.next();
            loop {
                // Columns may be qualified (t.c); keep the last part.
                let n = self.parse_object_name()?;
                columns.push(n.0.last().cloned().unwrap_or_else(|| Ident::new("")));
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        }
        let output = self.parse_output()?;
        let source = if self.is_kw("VALUES") {
            InsertSource::Values(self.parse_values_rows()?)
        } else if self.is_kw("DEFAULT") {
            self.next();
            self.expect_kw("VALUES")?;
            InsertSource::DefaultValues
        } else if self.is_kw("EXEC") || self.is_kw("EXECUTE") {
            match self.parse_exec()? {
                StatementKind::Exec(e) => InsertSource::Exec(e),
                _ => {
                    return Err(SqlError::unsupported(
                        "INSERT ... EXEC (string)",
                        self.line(),
                    ))
                }
            }
        } else if self.is_kw("SELECT") || self.is_kw("WITH") || self.peek().tok == Tok::LParen {
            InsertSource::Query(Box::new(self.parse_query()?))
        } else {
            return Err(self.error_here());
        };
        Ok(StatementKind::Insert(Box::new(Insert {
            top,
            table,
            columns,
            output,
            source,
        })))
    }

    fn parse_update(&mut self) -> Result<StatementKind> {
        self.next();
        let top = self.parse_top()?;
        let table = self.parse_table_factor()?;
        self.expect_kw("SET")?;
        let mut assignments = Vec::new();
        loop {
            let column = match &self.peek().tok {
                Tok::Var(v) => {
                    let v = v.clone();
                    self.next();
                    vec![Ident::new(v)]
                }
                _ => self.parse_object_name()?.0,
            };
            let op = self.parse_assign_op().ok_or_else(|| self.error_here())?;
            let value = self.parse_expr()?;
            assignments.push(Assignment { column, op, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        let output = self.parse_output()?;
        let from = if self.eat_kw("FROM") {
            self.parse_from()?
        } else {
            vec![]
        };
        let selection = if self.eat_kw("WHERE") {
            Some(self.parse_where_or_current()?)
        } else {
            None
        };
        Ok(StatementKind::Update(Box::new(Update {
            top,
            table,
            assignments,
            output,
            from,
            selection,
        })))
    }

    fn parse_where_or_current(&mut self) -> Result<Expr> {
        if self.is_kw("CURRENT") && self.is_kw_at(1, "OF") {
            return Err(SqlError::unsupported("WHERE CURRENT OF", self.line()));
        }
        self.parse_expr()
    }

    fn parse_delete(&mut self) -> Result<StatementKind> {
        self.next();
        let top = self.parse_top()?;
        self.eat_kw("FROM");
        let table = self.parse_table_factor()?;
        let output = self.parse_output()?;
        let from = if self.eat_kw("FROM") {
            self.parse_from()?
        } else {
            vec![]
        };
        let selection = if self.eat_kw("WHERE") {
            Some(self.parse_where_or_current()?)
        } else {
            None
        };
        Ok(StatementKind::Delete(Box::new(Delete {
            top,
            table,
            output,
            from,
            selection,
        })))
    }

    // ---- DDL ---------------------------------------------------------------------------------------------------

    fn parse_if_exists(&mut self) -> bool {
        if self.is_kw("IF") && self.is_kw_at(1, "EXISTS") {
            self.next();
            self.next();
            true
        } else {
            false
        }
    }

    fn parse_name_list(&mut self) -> Result<Vec<ObjectName>> {
        let mut names = vec![self.parse_object_name()?];
        while self.eat(&Tok::Comma) {
            names.push(self.parse_object_name()?);
        }
        Ok(names)
    }

    fn parse_create(&mut self) -> Result<StatementKind> {
        let save = self.pos;
        self.next(); // CREATE
        let mut or_alter = false;
        if self.is_kw("OR") && self.is_kw_at(1, "ALTER") {
            self.next();
            self.next();
            or_alter = true;
        }
        if self.eat_kw("TABLE") {
            let name = self.parse_object_name()?;
            let (columns, constraints) = self.parse_table_elements()?;
            self.skip_storage_clauses()?;
            return Ok(StatementKind::CreateTable(Box::new(CreateTable {
                name,
                columns,
                constraints,
            })));
        }
        if self.is_kw("UNIQUE")
            || self.is_kw("CLUSTERED")
            || self.is_kw("NONCLUSTERED")
            || self.is_kw("INDEX")
        {
            let unique = self.eat_kw("UNIQUE");
            let clustered = if self.eat_kw("CLUSTERED") {
                Some(true)
            } else if self.eat_kw("NONCLUSTERED") {
                Some(false)
            } else {
                None
            };
            if self.is_kw("COLUMNSTORE") {
                return Err(SqlError::unsupported("COLUMNSTORE index", self.line()));
            }
            self.expect_kw("INDEX")?;
            let name = self.parse_ident()?;
            self.expect_kw("ON")?;
            let table = self.parse_object_name()?;
            let columns = self.parse_index_columns()?;
            let mut include = Vec::new();
            if self.eat_kw("INCLUDE") {
                self.expect(&Tok::LParen)?;
                loop {
                    include.push(self.parse_ident()?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(&Tok::RParen)?;
            }
            let filter = if self.eat_kw("WHERE") {
                Some(self.parse_expr()?)
            } else {
                None
            };
            self.skip_storage_clauses()?;
            return Ok(StatementKind::CreateIndex(Box::new(CreateIndex {
                unique,
                clustered,
                name,
                table,
                columns,
                include,
                filter,
            })));
        }
        if self.eat_kw("VIEW") {
            let name = self.parse_object_name()?;
            if self.peek().tok == Tok::LParen {
                return Err(SqlError::unsupported(
                    "CREATE VIEW with a column list",
                    self.line(),
                ));
            }
            if self.is_kw("WITH") {
                self.next();
                self.parse_any_word()?;
            }
            self.expect_kw("AS")?;
            let query = self.parse_query()?;
            return Ok(StatementKind::CreateView {
                name,
                query: Box::new(query),
                or_alter,
            });
        }
        if self.is_kw("PROC") || self.is_kw("PROCEDURE") {
            self.next();
            return self.parse_create_procedure(or_alter);
        }
        if self.eat_kw("SCHEMA") {
            let name = self.parse_ident()?;
            let authorization = if self.eat_kw("AUTHORIZATION") {
                Some(self.parse_ident()?)
            } else {
                None
            };
            return Ok(StatementKind::CreateSchema {
                name,
                authorization,
            });
        }
        if self.is_kw("FUNCTION")
            || self.is_kw("TRIGGER")
            || self.is_kw("TYPE")
            || self.is_kw("SEQUENCE")
        {
            let w = self.parse_any_word()?;
            return Err(SqlError::unsupported(&format!("CREATE {}", w), self.line()));
        }
        self.pos = save;
        Ok(StatementKind::Admin(Box::new(
            self.parse_admin_statement()?,
        )))
    }

    fn parse_create_procedure(&mut self, or_alter: bool) -> Result<StatementKind> {
        let name = self.parse_object_name()?;
        let mut params = Vec::new();
        let paren = self.eat(&Tok::LParen);
        if matches!(self.peek().tok, Tok::Var(_)) {
            loop {
                params.push(self.parse_proc_param()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        if paren {
            self.expect(&Tok::RParen)?;
        }
        if self.eat_kw("WITH") {
            loop {
                self.parse_any_word()?;
                if self.is_kw("AS")
                    && !self.is_kw_at(1, "BEGIN")
                    && matches!(self.peek_at(1).tok, Tok::Word(_))
                {
                    // EXECUTE AS OWNER / CALLER
                    self.next();
                    self.parse_any_word()?;
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        self.expect_kw("AS")?;
        let start = self.peek().start;
        let body = self.parse_statements_until(&[], false)?;
        let text = self.src[start.min(self.src.len())..].to_string();
        Ok(StatementKind::CreateProcedure {
            name,
            params,
            body,
            text,
            or_alter,
        })
    }

    /// ON [PRIMARY], WITH (...), TEXTIMAGE_ON: storage clauses that mean nothing on SQLite.
    fn skip_storage_clauses(&mut self) -> Result<()> {
        loop {
            if self.is_kw("ON") && matches!(self.peek_at(1).tok, Tok::QuotedId(_) | Tok::Word(_)) {
                self.next();
                self.next();
                if self.peek().tok == Tok::LParen {
                    self.skip_parens()?;
                }
            } else if self.is_kw("TEXTIMAGE_ON") {
                self.next();
                self.next();
            } else if self.is_kw("WITH") && matches!(self.peek_at(1).tok, Tok::LParen) {
                self.next();
                self.skip_parens()?;
            } else {
                return Ok(());
            }
        }
    }

    fn parse_index_columns(&mut self) -> Result<Vec<(Ident, bool)>> {
        self.expect(&Tok::LParen)?;
        let mut cols = Vec::new();
        loop {
            let c = self.parse_ident()?;
            let desc = if self.eat_kw("DESC") {
                true
            } else {
                self.eat_kw("ASC");
                false
            };
            cols.push((c, desc));
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        Ok(cols)
    }

    pub(crate) fn parse_table_elements(
        &mut self,
    ) -> Result<(Vec<ColumnDef>, Vec<TableConstraint>)> {
        self.expect(&Tok::LParen)?;
        let mut columns = Vec::new();
        let mut constraints = Vec::new();
        loop {
            if self.is_kw("CONSTRAINT")
                || self.is_kw("PRIMARY")
                || self.is_kw("UNIQUE")
                || self.is_kw("FOREIGN")
                || self.is_kw("CHECK")
            {
                constraints.push(self.parse_table_constraint()?);
            } else if self.is_kw("INDEX") {
                // Inline index definitions: accepted, no effect beyond the table.
                self.next();
                self.parse_ident()?;
                self.eat_kw("CLUSTERED");
                self.eat_kw("NONCLUSTERED");
                self.parse_index_columns()?;
            } else {
                columns.push(self.parse_column_def()?);
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
            // A trailing comma before ')' is allowed by SQL Server.
            if self.peek().tok == Tok::RParen {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        Ok((columns, constraints))
    }

    fn parse_clustered(&mut self) -> Option<bool> {
        if self.eat_kw("CLUSTERED") {
            Some(true)
        } else if self.eat_kw("NONCLUSTERED") {
            Some(false)
        } else {
            None
        }
    }

    fn parse_ref_actions(&mut self) -> Result<(Option<String>, Option<String>)> {
        let mut on_delete = None;
        let mut on_update = None;
        while self.is_kw("ON") && (self.is_kw_at(1, "DELETE") || self.is_kw_at(1, "UPDATE")) {
            self.next();
            let which = self.parse_any_word()?;
            let action = if self.eat_kw("NO") {
                self.expect_kw("ACTION")?;
                "NO ACTION".to_string()
            } else if self.eat_kw("CASCADE") {
                "CASCADE".into()
            } else if self.eat_kw("SET") {
                let w = self.parse_any_word()?;
                if w != "NULL" && w != "DEFAULT" {
                    self.pos -= 1;
                    return Err(self.error_here());
                }
                format!("SET {}", w)
            } else {
                return Err(self.error_here());
            };
            if which == "DELETE" {
                on_delete = Some(action);
            } else {
                on_update = Some(action);
            }
        }
        if self.is_kw("NOT") && self.is_kw_at(1, "FOR") {
            self.next();
            self.next();
            self.expect_kw("REPLICATION")?;
        }
        Ok((on_delete, on_update))
    }

    fn parse_table_constraint(&mut self) -> Result<TableConstraint> {
        let name = if self.eat_kw("CONSTRAINT") {
            Some(self.parse_ident()?)
        } else {
            None
        };
        let kind = if self.eat_kw("PRIMARY") {
            self.expect_kw("KEY")?;
            let clustered = self.parse_clustered();
            TableConstraintKind::PrimaryKey {
                columns: self.parse_index_columns()?,
                clustered,
            }
        } else if self.eat_kw("UNIQUE") {
            let clustered = self.parse_clustered();
            TableConstraintKind::Unique {
                columns: self.parse_index_columns()?,
                clustered,
            }
        } else if self.eat_kw("FOREIGN") {
            self.expect_kw("KEY")?;
            let columns = self
                .parse_index_columns()?
                .into_iter()
                .map(|c| c.0)
                .collect();
            self.expect_kw("REFERENCES")?;
            let table = self.parse_object_name()?;
            let ref_columns = if self.peek().tok == Tok::LParen {
                self.parse_index_columns()?
                    .into_iter()
                    .map(|c| c.0)
                    .collect()
            } else {
                vec![]
            };
            let (on_delete, on_update) = self.parse_ref_actions()?;
            TableConstraintKind::ForeignKey {
                columns,
                table,
                ref_columns,
                on_delete,
                on_update,
            }
        } else if self.eat_kw("CHECK") {
            if self.is_kw("NOT") {
                self.next();
                self.expect_kw("FOR")?;
                self.expect_kw("REPLICATION")?;
            }
            self.expect(&Tok::LParen)?;
            let e = self.parse_expr()?;
            self.expect(&Tok::RParen)?;
            TableConstraintKind::Check(e)
        } else if self.eat_kw("DEFAULT") {
            let expr = self.parse_expr()?;
            self.expect_kw("FOR")?;
            TableConstraintKind::Default {
                expr,
                column: self.parse_ident()?,
            }
        } else {
            return Err(self.error_here());
        };
        if self.is_kw("WITH") && matches!(self.peek_at(1).tok, Tok::LParen) {
            self.next();
            self.skip_parens()?;
        }
        if self.is_kw("ON") && matches!(self.peek_at(1).tok, Tok::QuotedId(_)) {
            self.next();
            self.next();
        }
        Ok(TableConstraint { name, kind })
    }

    pub(crate) fn parse_column_def(&mut self) -> Result<ColumnDef> {
        let name = self.parse_ident()?;
        if self.eat_kw("AS") {
            let e = self.parse_expr()?;
            self.eat_kw("PERSISTED");
            return Ok(ColumnDef {
                name,
                ty: None,
                collation: None,
                computed: Some(e),
                constraints: vec![],
            });
        }
        let ty = self.parse_type()?;
        let mut collation = None;
        let mut constraints = Vec::new();
        loop {
            if self.eat_kw("COLLATE") {
                collation = Some(self.parse_any_word()?);
                continue;
            }
            let cname = if self.eat_kw("CONSTRAINT") {
                Some(self.parse_ident()?)
            } else {
                None
            };
            let c = if self.is_kw("NOT") && self.is_kw_at(1, "NULL") {
                self.next();
                self.next();
                ColumnConstraint::NotNull
            } else if self.eat_kw("NULL") {
                ColumnConstraint::Null
            } else if self.eat_kw("PRIMARY") {
                self.expect_kw("KEY")?;
                let clustered = self.parse_clustered();
                ColumnConstraint::PrimaryKey { clustered }
            } else if self.eat_kw("UNIQUE") {
                let clustered = self.parse_clustered();
                ColumnConstraint::Unique { clustered }
            } else if self.eat_kw("DEFAULT") {
                ColumnConstraint::Default(self.parse_expr()?)
            } else if self.eat_kw("CHECK") {
                self.expect(&Tok::LParen)?;
                let e = self.parse_expr()?;
                self.expect(&Tok::RParen)?;
                ColumnConstraint::Check(e)
            } else if self.is_kw("FOREIGN") || self.is_kw("REFERENCES") {
                if self.eat_kw("FOREIGN") {
                    self.expect_kw("KEY")?;
                }
                self.expect_kw("REFERENCES")?;
                let table = self.parse_object_name()?;
                let columns = if self.peek().tok == Tok::LParen {
                    self.parse_index_columns()?
                        .into_iter()
                        .map(|c| c.0)
                        .collect()
                } else {
                    vec![]
                };
                let (on_delete, on_update) = self.parse_ref_actions()?;
                ColumnConstraint::References {
                    table,
                    columns,
                    on_delete,
                    on_update,
                }
            } else if self.eat_kw("IDENTITY") {
                let (mut seed, mut increment) = (1i64, 1i64);
                if self.eat(&Tok::LParen) {
                    seed = self.parse_signed_int()?;
                    self.expect(&Tok::Comma)?;
                    increment = self.parse_signed_int()?;
                    self.expect(&Tok::RParen)?;
                }
                if self.is_kw("NOT") && self.is_kw_at(1, "FOR") {
                    self.next();
                    self.next();
                    self.expect_kw("REPLICATION")?;
                }
                ColumnConstraint::Identity(Identity { seed, increment })
            } else if self.is_kw("ROWGUIDCOL") || self.is_kw("SPARSE") || self.is_kw("FILESTREAM") {
                ColumnConstraint::Other(self.parse_any_word()?)
            } else {
                if cname.is_some() {
                    return Err(self.error_here());
                }
                break;
            };
            constraints.push(NamedColumnConstraint {
                name: cname,
                constraint: c,
            });
        }
        Ok(ColumnDef {
            name,
            ty: Some(ty),
            collation,
            computed: None,
            constraints,
        })
    }

    pub(crate) fn parse_signed_int(&mut self) -> Result<i64> {
        let neg = self.eat_op("-");
        if !neg {
            self.eat_op("+");
        }
        match &self.peek().tok {
            Tok::Int(s) => {
                let v: i64 = s.parse().map_err(|_| self.error_here())?;
                self.next();
                Ok(if neg { -v } else { v })
            }
            _ => Err(self.error_here()),
        }
    }

    fn parse_alter(&mut self) -> Result<StatementKind> {
        let save = self.pos;
        self.next();
        if self.eat_kw("TABLE") {
            let name = self.parse_object_name()?;
            let action = if self.eat_kw("ADD") {
                if self.is_kw("CONSTRAINT")
                    || self.is_kw("PRIMARY")
                    || self.is_kw("UNIQUE")
                    || self.is_kw("FOREIGN")
                    || self.is_kw("CHECK")
                    || self.is_kw("DEFAULT")
                {
                    AlterTableAction::AddConstraint(self.parse_table_constraint()?)
                } else {
                    let mut cols = vec![self.parse_column_def()?];
                    while self.eat(&Tok::Comma) {
                        cols.push(self.parse_column_def()?);
                    }
                    AlterTableAction::AddColumns(cols)
                }
            } else if self.eat_kw("DROP") {
                if self.eat_kw("CONSTRAINT") {
                    let if_exists = self.parse_if_exists();
                    AlterTableAction::DropConstraint {
                        if_exists,
                        name: self.parse_ident()?,
                    }
                } else {
                    self.eat_kw("COLUMN");
                    let if_exists = self.parse_if_exists();
                    let mut names = vec![self.parse_ident()?];
                    while self.eat(&Tok::Comma) {
                        self.eat_kw("COLUMN");
                        names.push(self.parse_ident()?);
                    }
                    AlterTableAction::DropColumns { if_exists, names }
                }
            } else if self.eat_kw("ALTER") {
                self.expect_kw("COLUMN")?;
                AlterTableAction::AlterColumn(self.parse_column_def()?)
            } else {
                return Err(self.error_here());
            };
            return Ok(StatementKind::AlterTable { name, action });
        }
        if self.is_kw("VIEW") {
            self.next();
            let name = self.parse_object_name()?;
            self.expect_kw("AS")?;
            let query = self.parse_query()?;
            return Ok(StatementKind::CreateView {
                name,
                query: Box::new(query),
                or_alter: true,
            });
        }
        if self.is_kw("PROC") || self.is_kw("PROCEDURE") {
            self.next();
            return self.parse_create_procedure(true);
        }
        self.pos = save;
        Ok(StatementKind::Admin(Box::new(
            self.parse_admin_statement()?,
        )))
    }

    fn parse_drop(&mut self) -> Result<StatementKind> {
        let save = self.pos;
        self.next();
        if self.eat_kw("TABLE") {
            let if_exists = self.parse_if_exists();
            return Ok(StatementKind::DropTable {
                if_exists,
                names: self.parse_name_list()?,
            });
        }
        if self.eat_kw("VIEW") {
            let if_exists = self.parse_if_exists();
            return Ok(StatementKind::DropView {
                if_exists,
                names: self.parse_name_list()?,
            });
        }
        if self.is_kw("PROC") || self.is_kw("PROCEDURE") {
            self.next();
            let if_exists = self.parse_if_exists();
            return Ok(StatementKind::DropProcedure {
                if_exists,
                names: self.parse_name_list()?,
            });
        }
        if self.eat_kw("SCHEMA") {
            let if_exists = self.parse_if_exists();
            return Ok(StatementKind::DropSchema {
                if_exists,
                name: self.parse_ident()?,
            });
        }
        if self.eat_kw("INDEX") {
            let if_exists = self.parse_if_exists();
            let mut indexes = Vec::new();
            loop {
                // DROP INDEX ix ON t, or the old form DROP INDEX t.ix
                let n = self.parse_object_name()?;
                if self.eat_kw("ON") {
                    let t = self.parse_object_name()?;
                    indexes.push((
                        n.0.last().cloned().unwrap_or_else(|| Ident::new("")),
                        Some(t),
                    ));
                } else if n.0.len() >= 2 {
                    let mut parts = n.0.clone();
                    let ix = parts.pop().unwrap_or_else(|| Ident::new(""));
                    indexes.push((ix, Some(ObjectName(parts))));
                } else {
                    indexes.push((n.0[0].clone(), None));
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            return Ok(StatementKind::DropIndex { if_exists, indexes });
        }
        self.pos = save;
        Ok(StatementKind::Admin(Box::new(
            self.parse_admin_statement()?,
        )))
    }
}

fn validate_type_args(name: &str, args: &[Option<u32>], line: u32) -> Result<()> {
    let u = name.to_ascii_uppercase();
    let max_ok = matches!(u.as_str(), "VARCHAR" | "NVARCHAR" | "VARBINARY");
    if args.iter().any(|a| a.is_none()) && !max_ok {
        return Err(SqlError::syntax_near("max", line));
    }
    let first = args.first().copied().flatten();
    let limit = match u.as_str() {
        "CHAR" | "VARCHAR" | "BINARY" | "VARBINARY" => Some(8000),
        "NCHAR" | "NVARCHAR" => Some(4000),
        _ => None,
    };
    if let (Some(l), Some(v)) = (limit, first) {
        if v == 0 || v > l {
            return Err(SqlError::new(
                131,
                15,
                format!(
                    "The size ({}) given to the type '{}' exceeds the maximum allowed for any data type ({}).",
                    v,
                    name.to_ascii_lowercase(),
                    l
                ),
            )
            .at_line(line));
        }
    }
    if matches!(u.as_str(), "DECIMAL" | "NUMERIC" | "DEC") {
        let p = first.unwrap_or(18);
        let s = args.get(1).copied().flatten().unwrap_or(0);
        if p == 0 || p > 38 {
            return Err(SqlError::new(
                1002,
                16,
                format!("Column or parameter #1: Specified column precision {} is greater than the maximum precision of 38.", p),
            )
            .at_line(line));
        }
        if s > p {
            return Err(SqlError::new(
                183,
                15,
                "The scale (".to_string()
                    + &s.to_string()
                    + ") for column or parameter #1 must be within the range 0 to "
                    + &p.to_string()
                    + ".",
            )
            .at_line(line));
        }
    }
    Ok(())
}

/// Table hints accepted in the legacy `FROM t (NOLOCK)` form.
fn is_table_hint(w: &str) -> bool {
    [
        "NOLOCK",
        "NOWAIT",
        "READPAST",
        "ROWLOCK",
        "TABLOCK",
        "TABLOCKX",
        "UPDLOCK",
        "XLOCK",
        "HOLDLOCK",
        "READUNCOMMITTED",
        "READCOMMITTED",
        "READCOMMITTEDLOCK",
        "REPEATABLEREAD",
        "SERIALIZABLE",
        "PAGLOCK",
        "NOEXPAND",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}

/// Non-reserved words that still cannot be implicit aliases because they continue the enclosing statement.
fn is_context_word(w: &str) -> bool {
    ["OUTPUT", "OFFSET", "APPLY", "WINDOW", "THROW", "GO"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(w))
}

/// Keywords that begin a statement (used to find the end of statements we keep as text).
fn is_statement_start(w: &str) -> bool {
    [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "DECLARE",
        "SET",
        "IF",
        "WHILE",
        "BEGIN",
        "END",
        "PRINT",
        "RAISERROR",
        "COMMIT",
        "ROLLBACK",
        "SAVE",
        "USE",
        "EXEC",
        "EXECUTE",
        "CREATE",
        "ALTER",
        "DROP",
        "GRANT",
        "DENY",
        "REVOKE",
        "BACKUP",
        "RESTORE",
        "DBCC",
        "CHECKPOINT",
        "KILL",
        "RETURN",
        "WITH",
        "TRUNCATE",
        "ELSE",
        "SHUTDOWN",
        "RECONFIGURE",
        "WAITFOR",
        "THROW",
        "OPEN",
        "CLOSE",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}
