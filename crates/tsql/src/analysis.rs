//! Questions the engine asks about a statement before running it: does it write (take the database's writer),
//! and which tables and views does it read (e.g. to materialise system views on demand).

use crate::ast::*;

impl StatementKind {
    /// True for statements that change data or schema (the engine's writer queue), false for reads and for
    /// procedural statements (their nested statements are asked separately).
    pub fn is_write(&self) -> bool {
        match self {
            StatementKind::Query(q) => matches!(&q.body, SetExpr::Select(s) if s.into.is_some()),
            StatementKind::Insert(_)
            | StatementKind::Update(_)
            | StatementKind::Delete(_)
            | StatementKind::CreateTable(_)
            | StatementKind::AlterTable { .. }
            | StatementKind::DropTable { .. }
            | StatementKind::TruncateTable(_)
            | StatementKind::CreateIndex(_)
            | StatementKind::DropIndex { .. }
            | StatementKind::CreateView { .. }
            | StatementKind::DropView { .. }
            | StatementKind::CreateProcedure { .. }
            | StatementKind::DropProcedure { .. }
            | StatementKind::CreateSchema { .. }
            | StatementKind::DropSchema { .. } => true,
            _ => false,
        }
    }
}

/// Every table or view a statement reads or writes (CTE names excluded), in order of appearance, without
/// duplicates (compared case-insensitively by their dotted name).
pub fn referenced_tables(stmt: &StatementKind) -> Vec<ObjectName> {
    let mut w = Walker {
        out: Vec::new(),
        ctes: Vec::new(),
    };
    match stmt {
        StatementKind::Query(q) => w.query(q),
        StatementKind::Insert(i) => {
            w.add(&i.table);
            match &i.source {
                InsertSource::Query(q) => w.query(q),
                InsertSource::Values(rows) => rows.iter().flatten().for_each(|e| w.expr(e)),
                _ => {}
            }
        }
        StatementKind::Update(u) => {
            // `UPDATE a … FROM t a`: the target is an alias, not a table.
            if !is_alias_in(&u.table, &u.from) {
                w.factor(&u.table);
            }
            u.from.iter().for_each(|t| w.twj(t));
            u.assignments.iter().for_each(|a| w.expr(&a.value));
            if let Some(e) = &u.selection {
                w.expr(e);
            }
        }
        StatementKind::Delete(d) => {
            if !is_alias_in(&d.table, &d.from) {
                w.factor(&d.table);
            }
            d.from.iter().for_each(|t| w.twj(t));
            if let Some(e) = &d.selection {
                w.expr(e);
            }
        }
        StatementKind::CreateView { query, .. } => w.query(query),
        StatementKind::TruncateTable(n) => w.add(n),
        StatementKind::DropTable { names, .. } => names.iter().for_each(|n| w.add(n)),
        StatementKind::AlterTable { name, .. } => w.add(name),
        StatementKind::CreateIndex(ci) => w.add(&ci.table),
        StatementKind::If { cond, .. } | StatementKind::While { cond, .. } => w.expr(cond),
        StatementKind::SetVariable { value, .. } | StatementKind::Print(value) => w.expr(value),
        StatementKind::Declare(ds) => {
            for d in ds {
                if let Declaration::Scalar { init: Some(e), .. } = d {
                    w.expr(e);
                }
            }
        }
        _ => {}
    }
    w.out
}

fn is_alias_in(target: &TableFactor, from: &[TableWithJoins]) -> bool {
    let name = match target {
        TableFactor::Table { name, .. } if name.0.len() == 1 => name.name(),
        _ => return false,
    };
    let alias_of = |f: &TableFactor| match f {
        TableFactor::Table { alias: Some(a), .. } => a.value.eq_ignore_ascii_case(name),
        _ => false,
    };
    from.iter()
        .any(|t| alias_of(&t.table) || t.joins.iter().any(|j| alias_of(&j.table)))
}

struct Walker {
    out: Vec<ObjectName>,
    ctes: Vec<String>,
}

impl Walker {
    fn add(&mut self, n: &ObjectName) {
        if n.0.len() == 1 && self.ctes.iter().any(|c| c.eq_ignore_ascii_case(n.name())) {
            return;
        }
        let d = n.dotted();
        if !self.out.iter().any(|o| o.dotted().eq_ignore_ascii_case(&d)) {
            self.out.push(n.clone());
        }
    }

    fn query(&mut self, q: &Query) {
        let depth = self.ctes.len();
        for c in &q.ctes {
            self.ctes.push(c.name.value.clone());
            self.query(&c.query);
        }
        self.set_expr(&q.body);
        q.order_by.iter().for_each(|o| self.expr(&o.expr));
        self.ctes.truncate(depth);
    }

    fn set_expr(&mut self, s: &SetExpr) {
        match s {
            SetExpr::Select(sel) => {
                sel.from.iter().for_each(|t| self.twj(t));
                for it in &sel.items {
                    match it {
                        SelectItem::Expr { expr, .. } | SelectItem::Assign { expr, .. } => {
                            self.expr(expr)
                        }
                    }
                }
                if let Some(e) = &sel.selection {
                    self.expr(e);
                }
                if let Some(e) = &sel.having {
                    self.expr(e);
                }
            }
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOp { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            SetExpr::Values(rows) => rows.iter().flatten().for_each(|e| self.expr(e)),
        }
    }

    fn twj(&mut self, t: &TableWithJoins) {
        self.factor(&t.table);
        for j in &t.joins {
            self.factor(&j.table);
            if let Some(on) = &j.on {
                self.expr(on);
            }
        }
    }

    fn factor(&mut self, f: &TableFactor) {
        match f {
            TableFactor::Table { name, .. } => self.add(name),
            TableFactor::Derived { query, .. } => self.query(query),
            TableFactor::Variable { name, .. } => {
                self.add(&ObjectName(vec![Ident::new(name.clone())]))
            }
            TableFactor::Values { rows, .. } => rows.iter().flatten().for_each(|e| self.expr(e)),
            TableFactor::Function { .. } => {}
        }
    }

    fn expr(&mut self, e: &Expr) {
        // Left-deep operator chains are walked iteratively (their length is not bounded by the parser's
        // nesting budget).
        let mut cur = e;
        loop {
            match cur {
                Expr::Binary { left, right, .. } => {
                    self.expr(right);
                    cur = left;
                    continue;
                }
                Expr::Subquery(q) | Expr::Exists { query: q, .. } => self.query(q),
                Expr::InSubquery { expr, query, .. } => {
                    self.expr(expr);
                    self.query(query);
                }
                Expr::Unary { expr, .. }
                | Expr::Nested(expr)
                | Expr::IsNull { expr, .. }
                | Expr::Cast { expr, .. }
                | Expr::Collate { expr, .. } => self.expr(expr),
                Expr::Convert { expr, style, .. } => {
                    self.expr(expr);
                    if let Some(s) = style {
                        self.expr(s);
                    }
                }
                Expr::Like {
                    expr,
                    pattern,
                    escape,
                    ..
                } => {
                    self.expr(expr);
                    self.expr(pattern);
                    if let Some(x) = escape {
                        self.expr(x);
                    }
                }
                Expr::InList { expr, list, .. } => {
                    self.expr(expr);
                    list.iter().for_each(|x| self.expr(x));
                }
                Expr::Between {
                    expr, low, high, ..
                } => {
                    self.expr(expr);
                    self.expr(low);
                    self.expr(high);
                }
                Expr::Case {
                    operand,
                    whens,
                    else_,
                } => {
                    if let Some(o) = operand {
                        self.expr(o);
                    }
                    for (w, t) in whens {
                        self.expr(w);
                        self.expr(t);
                    }
                    if let Some(x) = else_ {
                        self.expr(x);
                    }
                }
                Expr::Function(f) => f.args.iter().for_each(|a| self.expr(a)),
                _ => {}
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_batch;

    #[test]
    fn tables_and_writes() {
        let b = parse_batch(
            "WITH c AS (SELECT id FROM t) SELECT * FROM c JOIN sys.availability_replicas r ON 1 = 1 WHERE EXISTS (SELECT 1 FROM sys.dm_hadr_availability_replica_states)
IF EXISTS (SELECT * FROM sys.symmetric_keys WHERE symmetric_key_id = 101) PRINT 1
UPDATE a SET x = (SELECT MAX(y) FROM u) FROM t a
SELECT * INTO #n FROM t",
        )
        .unwrap();
        let names = |i: usize| {
            referenced_tables(&b[i].kind)
                .iter()
                .map(|n| n.dotted())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(0),
            vec![
                "t",
                "sys.availability_replicas",
                "sys.dm_hadr_availability_replica_states"
            ]
        );
        assert_eq!(names(1), vec!["sys.symmetric_keys"]);
        assert_eq!(names(2), vec!["t", "u"]);
        assert!(!b[0].kind.is_write());
        assert!(b[2].kind.is_write());
        assert!(b[3].kind.is_write());
    }
}
