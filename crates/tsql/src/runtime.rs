//! Helpers the session layer uses to execute procedural statements with SQL Server's semantics: RAISERROR
//! formatting, THROW, sp_executesql parameter binding, SET/SELECT compound assignment.

use crate::ast::{AssignOp, Exec, ProcParam, Raiserror, Statement, StatementKind, Throw};
use crate::error::{Result, SqlError};
use crate::eval::{binary_op, eval, Context};
use crate::parser::parse_param_definitions;
use crate::types::DataType;
use crate::value::{assign, Value};

/// `@v op= rhs`: the new value of the variable, converted to its declared type.
pub fn compound_assign(op: AssignOp, current: &Value, rhs: &Value, ty: &DataType) -> Result<Value> {
    let v = match op.binop() {
        Some(b) => binary_op(b, current, rhs)?,
        None => rhs.clone(),
    };
    assign(&v, ty)
}

/// printf-style substitution as RAISERROR does it: %d %i %u %s %x %X %o with flags, width and precision
/// (`%-10s`, `%5d`, `%.3s`, `%*d` is not supported), `%%` for a percent sign; NULL prints "(null)".
pub fn format_raiserror(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'%') {
            it.next();
            out.push('%');
            continue;
        }
        let mut left = false;
        let mut zero = false;
        let mut plus = false;
        while let Some(&f) = it.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = 0usize;
        while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
            width = (width * 10 + d as usize).min(400);
            it.next();
        }
        let mut precision: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = 0usize;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
                p = (p * 10 + d as usize).min(400);
                it.next();
            }
            precision = Some(p);
        }
        // Size prefixes (h, l, I64) are accepted and ignored.
        while matches!(
            it.peek(),
            Some('h') | Some('l') | Some('I') | Some('6') | Some('4')
        ) {
            it.next();
        }
        let conv = match it.next() {
            Some(x) => x,
            None => break,
        };
        let arg = args.get(next_arg);
        next_arg += 1;
        let text = match (conv, arg) {
            (_, None) | (_, Some(Value::Null)) => "(null)".to_string(),
            ('d' | 'i', Some(v)) => {
                let n = v.as_i64().unwrap_or(0);
                if plus && n >= 0 {
                    format!("+{}", n)
                } else {
                    n.to_string()
                }
            }
            ('u', Some(v)) => (v.as_i64().unwrap_or(0) as u32).to_string(),
            ('x', Some(v)) => format!("{:x}", v.as_i64().unwrap_or(0) as u32),
            ('X', Some(v)) => format!("{:X}", v.as_i64().unwrap_or(0) as u32),
            ('o', Some(v)) => format!("{:o}", v.as_i64().unwrap_or(0) as u32),
            (_, Some(v)) => {
                let s = v.to_text().unwrap_or_default();
                match precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
        };
        let len = text.chars().count();
        if len >= width {
            out.push_str(&text);
        } else if left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', width - len));
        } else {
            let pad = if zero && matches!(conv, 'd' | 'i' | 'u' | 'x' | 'X' | 'o') {
                '0'
            } else {
                ' '
            };
            out.extend(std::iter::repeat_n(pad, width - len));
            out.push_str(&text);
        }
    }
    out
}

/// Evaluates RAISERROR into the error (or, below severity 11, the informational message) to send.
/// A numeric message id is returned with an empty message: the caller looks it up in its sys.messages.
pub fn eval_raiserror(r: &Raiserror, ctx: &dyn Context) -> Result<SqlError> {
    let msg = eval(&r.message, ctx)?;
    let severity = eval(&r.severity, ctx)?.as_i64().unwrap_or(16);
    let state = eval(&r.state, ctx)?.as_i64().unwrap_or(1);
    let mut args = Vec::with_capacity(r.args.len());
    for a in &r.args {
        args.push(eval(a, ctx)?);
    }
    if !(0..=25).contains(&severity) {
        return Err(SqlError::new(2754, 16, "Error severity levels greater than 18 can only be specified by members of the sysadmin role, using the WITH LOG option."));
    }
    let (number, message) = match &msg {
        Value::VarChar(s) | Value::NVarChar(s) => (50000, format_raiserror(s, &args)),
        v => match v.as_i64() {
            Some(n) if n >= 13000 => (n as i32, String::new()),
            _ => return Err(SqlError::new(2732, 16, "Error number is invalid. The number must be from 13000 through 2147483647 and it cannot be 50000.")),
        },
    };
    let mut e = SqlError::new(number, severity as u8, message);
    e.state = state.clamp(0, 255) as u8;
    Ok(e)
}

/// Evaluates THROW n, msg, state (severity is always 16).
pub fn eval_throw(t: &Throw, ctx: &dyn Context) -> Result<SqlError> {
    let n = eval(&t.number, ctx)?.as_i64().unwrap_or(0);
    if n < 50000 || n > i32::MAX as i64 {
        return Err(SqlError::new(35100, 16, format!("Error number {} in the THROW statement is outside the valid range. Specify an error number in the valid range of 50000 to 2147483647.", n)));
    }
    let msg = eval(&t.message, ctx)?.to_text().unwrap_or_default();
    let state = eval(&t.state, ctx)?.as_i64().unwrap_or(1);
    let mut e = SqlError::new(n as i32, 16, msg);
    e.state = state.clamp(0, 255) as u8;
    Ok(e)
}

/// A dynamic SQL call, bound: run `sql` as a batch in a new variable scope holding `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicSql {
    pub sql: String,
    /// Declared parameters with their values (converted to the declared types).
    pub params: Vec<(ProcParam, Value)>,
    /// OUTPUT parameters: (inner @param, outer @variable) to copy back after the batch.
    pub outputs: Vec<(String, String)>,
}

/// One argument of sp_executesql after evaluation: optional @name, value, OUTPUT flag, and the outer variable
/// name when the argument was a variable (needed for OUTPUT).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundArg {
    pub name: Option<String>,
    pub value: Value,
    pub output: bool,
    pub variable: Option<String>,
}

/// Binds sp_executesql arguments (statement, parameter declarations, then values by position or name).
/// Used for both `EXEC sp_executesql …` in a batch and the RPC request clients send.
pub fn bind_dynamic_sql(args: &[BoundArg]) -> Result<DynamicSql> {
    let pick = |pos: usize, name: &str| -> Option<&BoundArg> {
        args.iter()
            .find(|a| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .or_else(|| args.get(pos).filter(|a| a.name.is_none()))
    };
    let sql = match pick(0, "@stmt") {
        Some(a) => match &a.value {
            Value::NVarChar(s) | Value::VarChar(s) => s.clone(),
            Value::Null => String::new(),
            _ => {
                return Err(SqlError::new(214, 16, "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'."))
            }
        },
        None => return Err(SqlError::new(201, 16, "Procedure or function 'sp_executesql' expects parameter '@statement', which was not supplied.")),
    };
    let decl_text = match pick(1, "@params") {
        Some(a) => a.value.to_text().unwrap_or_default(),
        None => String::new(),
    };
    let decls = parse_param_definitions(&decl_text)?;
    // Values: positional after the first two, or named.
    let positional: Vec<&BoundArg> = args.iter().skip(2).filter(|a| a.name.is_none()).collect();
    let mut params = Vec::new();
    let mut outputs = Vec::new();
    for (i, p) in decls.iter().enumerate() {
        let arg = args
            .iter()
            .find(|a| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&p.name))
            })
            .or_else(|| positional.get(i).copied());
        let value = match arg {
            Some(a) => {
                if a.output {
                    if let Some(v) = &a.variable {
                        outputs.push((p.name.clone(), v.clone()));
                    }
                }
                assign(&a.value, &p.ty)?
            }
            None => match &p.default {
                Some(d) => assign(&eval(d, &crate::eval::EmptyContext)?, &p.ty)?,
                None => {
                    return Err(SqlError::new(
                        8178,
                        16,
                        format!(
                            "The parameterized query '({}){}' expects the parameter '{}', which was not supplied.",
                            decl_text,
                            sql.chars().take(60).collect::<String>(),
                            p.name
                        ),
                    ))
                }
            },
        };
        params.push((p.clone(), value));
    }
    Ok(DynamicSql {
        sql,
        params,
        outputs,
    })
}

/// Binds EXEC arguments to a stored procedure's declared parameters (positional first, then @name = value;
/// defaults fill the rest). Returns the bound values and the OUTPUT (inner, outer variable) pairs.
#[allow(clippy::type_complexity)]
pub fn bind_procedure_args(
    proc_name: &str,
    params: &[ProcParam],
    args: &[BoundArg],
) -> Result<(Vec<(ProcParam, Value)>, Vec<(String, String)>)> {
    let positional: Vec<&BoundArg> = args.iter().take_while(|a| a.name.is_none()).collect();
    if positional.len() > params.len() {
        return Err(SqlError::new(
            8144,
            16,
            format!(
                "Procedure or function {} has too many arguments specified.",
                proc_name
            ),
        ));
    }
    // A positional argument after a named one.
    if args.iter().skip(positional.len()).any(|a| a.name.is_none()) {
        return Err(SqlError::new(119, 15, "Must pass parameter number 2 and subsequent parameters as '@name = value'. After the form '@name = value' has been used, all subsequent parameters must be passed in the form '@name = value'."));
    }
    for a in args.iter().filter_map(|a| a.name.as_ref()) {
        if !params.iter().any(|p| p.name.eq_ignore_ascii_case(a)) {
            return Err(SqlError::new(
                8145,
                16,
                format!("{} is not a parameter for procedure {}.", a, proc_name),
            ));
        }
    }
    let mut bound = Vec::new();
    let mut outputs = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let arg = positional.get(i).copied().or_else(|| {
            args.iter().find(|a| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&p.name))
            })
        });
        let value = match arg {
            Some(a) => {
                if a.output && p.output {
                    if let Some(v) = &a.variable {
                        outputs.push((p.name.clone(), v.clone()));
                    }
                }
                assign(&a.value, &p.ty)?
            }
            _ => match &p.default {
                Some(d) => assign(&eval(d, &crate::eval::EmptyContext)?, &p.ty)?,
                None => {
                    return Err(SqlError::new(
                        201,
                        16,
                        format!(
                            "Procedure or function '{}' expects parameter '{}', which was not supplied.",
                            proc_name, p.name
                        ),
                    ))
                }
            },
        };
        bound.push((p.clone(), value));
    }
    Ok((bound, outputs))
}

/// `EXEC sp_executesql …` from a batch: evaluates the arguments with the session's variables, then binds.
pub fn bind_sp_executesql(exec: &Exec, ctx: &dyn Context) -> Result<DynamicSql> {
    let mut args = Vec::with_capacity(exec.args.len());
    for a in &exec.args {
        let variable = match &a.value {
            crate::ast::Expr::Variable(v) => Some(v.clone()),
            _ => None,
        };
        args.push(BoundArg {
            name: a.name.clone(),
            value: eval(&a.value, ctx)?,
            output: a.output,
            variable,
        });
    }
    bind_dynamic_sql(&args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::StatementKind;
    use crate::parser::parse_batch;
    use crate::types::Len;

    #[test]
    fn raiserror_format() {
        let args = [Value::Int(42), Value::NVarChar("abc".into())];
        assert_eq!(
            format_raiserror("n=%d s=%s 100%%", &args),
            "n=42 s=abc 100%"
        );
        assert_eq!(
            format_raiserror(
                "[%5d][%-5s][%.2s]",
                &[
                    Value::Int(7),
                    Value::VarChar("ab".into()),
                    Value::VarChar("xyz".into())
                ]
            ),
            "[    7][ab   ][xy]"
        );
        assert_eq!(format_raiserror("%d %s", &[Value::Null]), "(null) (null)");
        let st = parse_batch("RAISERROR(N'bad %s at %d', 16, 2, N'thing', 7)").unwrap();
        match &st[0].kind {
            StatementKind::Raiserror(r) => {
                let e = eval_raiserror(r, &crate::eval::EmptyContext).unwrap();
                assert_eq!((e.number, e.severity, e.state), (50000, 16, 2));
                assert_eq!(e.message, "bad thing at 7");
            }
            _ => unreachable!(),
        }
        let st = parse_batch(";THROW 50001, N'oops', 3").unwrap();
        match &st[0].kind {
            StatementKind::Throw(Some(t)) => {
                let e = eval_throw(t, &crate::eval::EmptyContext).unwrap();
                assert_eq!(
                    (e.number, e.severity, e.state, e.message.as_str()),
                    (50001, 16, 3, "oops")
                );
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn procedure_binding() {
        let params = crate::parser::parse_param_definitions(
            "@a int, @b nvarchar(10) = N'dflt', @c int OUTPUT",
        )
        .unwrap();
        let arg = |name: Option<&str>, v: Value, output: bool, var: Option<&str>| BoundArg {
            name: name.map(String::from),
            value: v,
            output,
            variable: var.map(String::from),
        };
        let (b, out) = bind_procedure_args(
            "p",
            &params,
            &[
                arg(None, Value::VarChar("5".into()), false, None),
                arg(Some("@c"), Value::Null, true, Some("@res")),
            ],
        )
        .unwrap();
        assert_eq!(b[0].1, Value::Int(5));
        assert_eq!(b[1].1, Value::NVarChar("dflt".into()));
        assert_eq!(out, vec![("@c".to_string(), "@res".to_string())]);
        assert_eq!(
            bind_procedure_args("p", &params, &[]).unwrap_err().number,
            201
        );
        assert_eq!(
            bind_procedure_args(
                "p",
                &params,
                &[arg(Some("@zz"), Value::Int(1), false, None)]
            )
            .unwrap_err()
            .number,
            8145
        );
        let four: Vec<BoundArg> = (0..4)
            .map(|i| arg(None, Value::Int(i), false, None))
            .collect();
        assert_eq!(
            bind_procedure_args("p", &params, &four).unwrap_err().number,
            8144
        );
    }

    #[test]
    fn sp_executesql_binding() {
        let st = parse_batch("EXEC sp_executesql N'SELECT @a + @b', N'@a int, @b nvarchar(5) OUTPUT', 1, @b = @out OUTPUT").unwrap();
        struct Ctx;
        impl Context for Ctx {
            fn variable(&self, name: &str) -> Option<Value> {
                (name == "@out").then(|| Value::VarChar("toolongvalue".into()))
            }
        }
        match &st[0].kind {
            StatementKind::Exec(e) => {
                let d = bind_sp_executesql(e, &Ctx).unwrap();
                assert_eq!(d.sql, "SELECT @a + @b");
                assert_eq!(d.params[0].1, Value::Int(1));
                assert_eq!(d.params[1].0.ty, DataType::NVarChar(Len::N(5)));
                assert_eq!(d.params[1].1, Value::NVarChar("toolo".into()));
                assert_eq!(d.outputs, vec![("@b".to_string(), "@out".to_string())]);
            }
            _ => unreachable!(),
        }
        let e = bind_dynamic_sql(&[
            BoundArg {
                name: None,
                value: Value::NVarChar("select @p".into()),
                output: false,
                variable: None,
            },
            BoundArg {
                name: None,
                value: Value::NVarChar("@p int".into()),
                output: false,
                variable: None,
            },
        ])
        .unwrap_err();
        assert_eq!(e.number, 8178);
        assert_eq!(
            compound_assign(
                AssignOp::Add,
                &Value::Int(1),
                &Value::Int(2),
                &DataType::SmallInt
            )
            .unwrap(),
            Value::SmallInt(3)
        );
    }
}

/// The session side of [`run_statements`]: leaf statements, error reporting and the CATCH context.
pub trait Session: Context {
    /// Executes one leaf statement: anything but IF, WHILE, BEGIN…END, TRY…CATCH, BREAK, CONTINUE, RETURN and
    /// THROW, which [`run_statements`] handles. RAISERROR below severity 11 is a message (return Ok); from 11 up
    /// return it as the error so TRY…CATCH sees it.
    fn execute(&mut self, stmt: &Statement) -> Result<()>;
    /// An error escaped a statement outside any TRY: send it to the client. Return true to go on with the next
    /// statement (a statement-level error), false to end the batch (XACT_ABORT, conversion errors, severity
    /// 20+: the session's policy).
    fn report_error(&mut self, err: &SqlError) -> bool;
    /// Entering a CATCH block with the error it caught (ERROR_MESSAGE() and friends answer from it), and None
    /// when the CATCH block ends.
    fn set_catch_error(&mut self, err: Option<SqlError>);
    /// Checked before every statement and loop iteration: true (ATTENTION from the client, a query timeout)
    /// ends the batch at once, even inside TRY, as SQL Server does.
    fn cancelled(&self) -> bool {
        false
    }
}

/// How a block ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Normal,
    Break,
    Continue,
    /// `RETURN [value]`: ends the batch or procedure.
    Return(Option<Value>),
    /// The batch was ended by an error the session chose not to continue after.
    Aborted,
}

/// Runs statements with T-SQL control flow: IF/ELSE, WHILE with BREAK/CONTINUE, BEGIN…END, TRY…CATCH (an error
/// of severity 11+ inside TRY goes to CATCH; `THROW;` rethrows it), THROW, RETURN. Every other statement goes to
/// [`Session::execute`]. Errors outside TRY are reported through [`Session::report_error`], which decides whether
/// the batch goes on.
pub fn run_statements(session: &mut dyn Session, stmts: &[Statement]) -> Flow {
    let mut catch_stack: Vec<SqlError> = Vec::new();
    match run_block(session, stmts, &mut catch_stack, 0) {
        Ok(flow) => flow,
        Err(e) => {
            // THROW outside TRY always ends the batch, whatever the session would do.
            let _ = session.report_error(&e);
            Flow::Aborted
        }
    }
}

/// Err means "an error inside a TRY block (try_depth > 0) or a THROW": the caller's TRY handles it.
fn run_block(
    session: &mut dyn Session,
    stmts: &[Statement],
    catch_stack: &mut Vec<SqlError>,
    try_depth: usize,
) -> Result<Flow> {
    for st in stmts {
        if session.cancelled() {
            return Ok(Flow::Aborted);
        }
        match run_one(session, st, catch_stack, try_depth) {
            Ok(Flow::Normal) => {}
            Ok(other) => return Ok(other),
            Err(e) => {
                let e = e.at_line(st.line);
                if try_depth > 0 || is_throw(st) {
                    return Err(e);
                }
                if !session.report_error(&e) {
                    return Ok(Flow::Aborted);
                }
            }
        }
    }
    Ok(Flow::Normal)
}

fn is_throw(st: &Statement) -> bool {
    matches!(st.kind, StatementKind::Throw(_))
}

fn run_one(
    session: &mut dyn Session,
    st: &Statement,
    catch_stack: &mut Vec<SqlError>,
    try_depth: usize,
) -> Result<Flow> {
    match &st.kind {
        StatementKind::Block(b) => run_block(session, b, catch_stack, try_depth),
        StatementKind::If { cond, then, else_ } => {
            let c = crate::eval::eval_predicate(cond, &*session)?;
            if c == Some(true) {
                run_block(
                    session,
                    std::slice::from_ref(&**then),
                    catch_stack,
                    try_depth,
                )
            } else if let Some(e) = else_ {
                run_block(session, std::slice::from_ref(&**e), catch_stack, try_depth)
            } else {
                Ok(Flow::Normal)
            }
        }
        StatementKind::While { cond, body } => loop {
            if session.cancelled() {
                return Ok(Flow::Aborted);
            }
            if crate::eval::eval_predicate(cond, &*session)? != Some(true) {
                return Ok(Flow::Normal);
            }
            match run_block(
                session,
                std::slice::from_ref(&**body),
                catch_stack,
                try_depth,
            )? {
                Flow::Break => return Ok(Flow::Normal),
                Flow::Normal | Flow::Continue => {}
                other => return Ok(other),
            }
        },
        StatementKind::Break => Ok(Flow::Break),
        StatementKind::Continue => Ok(Flow::Continue),
        StatementKind::Return(v) => {
            let value = match v {
                Some(e) => Some(eval(e, &*session)?),
                None => None,
            };
            Ok(Flow::Return(value))
        }
        StatementKind::TryCatch {
            try_block,
            catch_block,
        } => match run_block(session, try_block, catch_stack, try_depth + 1) {
            Ok(flow) => Ok(flow),
            Err(e) if e.severity >= 11 && e.severity < 20 => {
                catch_stack.push(e.clone());
                session.set_catch_error(Some(e));
                let r = run_block(session, catch_block, catch_stack, try_depth);
                catch_stack.pop();
                session.set_catch_error(catch_stack.last().cloned());
                r
            }
            Err(e) => Err(e),
        },
        StatementKind::Throw(None) => match catch_stack.last() {
            Some(e) => Err(e.clone()),
            None => Err(SqlError::new(
                10704,
                15,
                "To rethrow an error, a THROW statement must be used inside a CATCH block.",
            )),
        },
        StatementKind::Throw(Some(t)) => Err(eval_throw(t, &*session)?),
        _ => session.execute(st).map(|_| Flow::Normal),
    }
}
