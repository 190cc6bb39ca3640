//! T-SQL lexer. Keeps byte offsets and line numbers so errors carry SQL Server's "Line n" and statements can be
//! sliced back out of the source (dynamic SQL, stored definitions).

use crate::error::{Result, SqlError};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Unquoted identifier or keyword (also #temp, ##global); compare keywords case-insensitively.
    Word(String),
    /// `[bracketed]` or "double-quoted" identifier (QUOTED_IDENTIFIER ON, the client default).
    QuotedId(String),
    Str(String),
    NStr(String),
    Binary(Vec<u8>),
    Int(String),
    Decimal(String),
    Float(String),
    Money(String),
    /// @name, kept with the '@'.
    Var(String),
    /// @@name, kept with the '@@'.
    Global(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    Dot,
    Semi,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub line: u32,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// Text SQL Server would quote in "Incorrect syntax near '…'".
    pub fn display(&self, src: &str) -> String {
        match &self.tok {
            Tok::Eof => String::new(),
            Tok::Str(s) | Tok::NStr(s) => s.clone(),
            Tok::QuotedId(s) => s.clone(),
            _ => src.get(self.start..self.end).unwrap_or("").to_string(),
        }
    }
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

const OPS: &[&str] = &[
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<>", "!=", "<=", ">=", "!<", "!>", "::", "+",
    "-", "*", "/", "%", "=", "<", ">", "&", "|", "^", "~", ":",
];

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '#'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '@' || c == '#' || c == '$'
}

pub fn tokenize(src: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0usize;
    let mut line = 1u32;
    let peek_char = |i: usize| -> Option<char> { src.get(i..).and_then(|s| s.chars().next()) };
    while i < bytes.len() {
        let c = match peek_char(i) {
            Some(c) => c,
            None => break,
        };
        let start = i;
        let start_line = line;
        // A byte-order mark (files saved by Windows editors) counts as whitespace.
        if c.is_whitespace() || c == '\u{feff}' {
            if c == '\n' {
                line += 1;
            }
            i += c.len_utf8();
            continue;
        }
        // Comments
        if c == '-' && bytes.get(i + 1) == Some(&b'-') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && bytes.get(i + 1) == Some(&b'*') {
            // T-SQL block comments nest.
            let mut depth = 0usize;
            loop {
                if i >= bytes.len() {
                    return Err(SqlError::new(113, 15, "Missing end comment mark '*/'.")
                        .at_line(start_line));
                }
                if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            continue;
        }
        let push = |out: &mut Vec<Token>, tok: Tok, end: usize| {
            out.push(Token {
                tok,
                line: start_line,
                start,
                end,
            });
        };
        // N'...'
        if (c == 'N' || c == 'n') && bytes.get(i + 1) == Some(&b'\'') {
            let (s, end) = lex_delimited(src, i + 1, '\'', &mut line)?;
            push(&mut out, Tok::NStr(s), end);
            i = end;
            continue;
        }
        if c == '\'' {
            let (s, end) = lex_delimited(src, i, '\'', &mut line)?;
            push(&mut out, Tok::Str(s), end);
            i = end;
            continue;
        }
        if c == '[' || c == '"' {
            // A doubled closer (]] or "") escapes it inside the name.
            let close = if c == '[' { ']' } else { '"' };
            let (s, end) = lex_delimited(src, i, close, &mut line)?;
            push(&mut out, Tok::QuotedId(s), end);
            i = end;
            continue;
        }
        // 0x binary literal
        if c == '0' && matches!(bytes.get(i + 1), Some(b'x') | Some(b'X')) {
            let mut j = i + 2;
            while j < bytes.len() && bytes[j].is_ascii_hexdigit() {
                j += 1;
            }
            let hex = &src[i + 2..j];
            push(&mut out, Tok::Binary(decode_hex(hex)), j);
            i = j;
            continue;
        }
        // Numbers (and money with a leading $)
        if c.is_ascii_digit()
            || (c == '.' && bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()))
            || (c == '$'
                && bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'.' || *b == b'-'))
        {
            let money = c == '$';
            let mut j = if money { i + 1 } else { i };
            let num_start = j;
            if money && bytes.get(j) == Some(&b'-') {
                j += 1;
            }
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let mut kind = 0; // 0 int, 1 decimal, 2 float
            if bytes.get(j) == Some(&b'.') {
                kind = 1;
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if !money && matches!(bytes.get(j), Some(b'e') | Some(b'E')) {
                let mut k = j + 1;
                if matches!(bytes.get(k), Some(b'+') | Some(b'-')) {
                    k += 1;
                }
                // SQL Server accepts "1e" as 1e0; keep it simple and require nothing after.
                while k < bytes.len() && bytes[k].is_ascii_digit() {
                    k += 1;
                }
                kind = 2;
                j = k;
            }
            let text = src[num_start..j].to_string();
            let tok = if money {
                Tok::Money(text)
            } else {
                match kind {
                    0 => Tok::Int(text),
                    1 => Tok::Decimal(text),
                    _ => Tok::Float(text),
                }
            };
            push(&mut out, tok, j);
            i = j;
            continue;
        }
        if c == '@' {
            let global = bytes.get(i + 1) == Some(&b'@');
            let mut j = if global { i + 2 } else { i + 1 };
            while let Some(ch) = peek_char(j) {
                if is_ident_continue(ch) {
                    j += ch.len_utf8();
                } else {
                    break;
                }
            }
            let text = src[i..j].to_string();
            push(
                &mut out,
                if global {
                    Tok::Global(text)
                } else {
                    Tok::Var(text)
                },
                j,
            );
            i = j;
            continue;
        }
        if is_ident_start(c) {
            let mut j = i;
            while let Some(ch) = peek_char(j) {
                if is_ident_continue(ch) || (j == i && ch == '#') {
                    j += ch.len_utf8();
                } else {
                    break;
                }
            }
            push(&mut out, Tok::Word(src[i..j].to_string()), j);
            i = j;
            continue;
        }
        match c {
            '(' => push(&mut out, Tok::LParen, i + 1),
            ')' => push(&mut out, Tok::RParen, i + 1),
            ',' => push(&mut out, Tok::Comma, i + 1),
            '.' => push(&mut out, Tok::Dot, i + 1),
            ';' => push(&mut out, Tok::Semi, i + 1),
            _ => {
                if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
                    push(&mut out, Tok::Op(op), i + op.len());
                    i += op.len();
                    continue;
                }
                let ch: String = c.to_string();
                return Err(SqlError::syntax_near(&ch, start_line));
            }
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        start: src.len(),
        end: src.len(),
    });
    Ok(out)
}

/// Reads a string or quoted name opened at `open` up to `close`; a doubled `close` stands for one.
fn lex_delimited(src: &str, open: usize, close: char, line: &mut u32) -> Result<(String, usize)> {
    let start_line = *line;
    let mut s = String::new();
    let mut j = open + 1;
    loop {
        let ch = match src.get(j..).and_then(|t| t.chars().next()) {
            Some(c) => c,
            None => {
                return Err(SqlError::new(
                    105,
                    15,
                    format!(
                        "Unclosed quotation mark after the character string '{}'.",
                        s
                    ),
                )
                .at_line(start_line))
            }
        };
        if ch == close {
            if src[j + 1..].starts_with(close) {
                s.push(close);
                j += 2;
                continue;
            }
            return Ok((s, j + 1));
        }
        if ch == '\n' {
            *line += 1;
        }
        s.push(ch);
        j += ch.len_utf8();
    }
}

/// Decodes hex digits; an odd count gets a leading zero nibble, as SQL Server does (0x123 = 0x0123).
pub fn decode_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter_map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect();
    let mut out = Vec::with_capacity(digits.len() / 2 + 1);
    let mut idx = 0;
    if digits.len() % 2 == 1 {
        out.push(digits[0]);
        idx = 1;
    }
    while idx + 1 < digits.len() {
        out.push(digits[idx] << 4 | digits[idx + 1]);
        idx += 2;
    }
    out
}

/// T-SQL reserved keywords: these end an expression (no implicit alias) and give error 156 instead of 102.
pub fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "ADD",
        "ALL",
        "ALTER",
        "AND",
        "ANY",
        "AS",
        "ASC",
        "AUTHORIZATION",
        "BACKUP",
        "BEGIN",
        "BETWEEN",
        "BREAK",
        "BROWSE",
        "BULK",
        "BY",
        "CASCADE",
        "CASE",
        "CHECK",
        "CHECKPOINT",
        "CLOSE",
        "CLUSTERED",
        "COALESCE",
        "COLLATE",
        "COLUMN",
        "COMMIT",
        "COMPUTE",
        "CONSTRAINT",
        "CONTAINS",
        "CONTAINSTABLE",
        "CONTINUE",
        "CONVERT",
        "CREATE",
        "CROSS",
        "CURRENT",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "CURRENT_TIMESTAMP",
        "CURRENT_USER",
        "CURSOR",
        "DATABASE",
        "DBCC",
        "DEALLOCATE",
        "DECLARE",
        "DEFAULT",
        "DELETE",
        "DENY",
        "DESC",
        "DISK",
        "DISTINCT",
        "DISTRIBUTED",
        "DOUBLE",
        "DROP",
        "DUMP",
        "ELSE",
        "END",
        "ERRLVL",
        "ESCAPE",
        "EXCEPT",
        "EXEC",
        "EXECUTE",
        "EXISTS",
        "EXIT",
        "EXTERNAL",
        "FETCH",
        "FILE",
        "FILLFACTOR",
        "FOR",
        "FOREIGN",
        "FREETEXT",
        "FREETEXTTABLE",
        "FROM",
        "FULL",
        "FUNCTION",
        "GOTO",
        "GRANT",
        "GROUP",
        "HAVING",
        "HOLDLOCK",
        "IDENTITY",
        "IDENTITY_INSERT",
        "IDENTITYCOL",
        "IF",
        "IN",
        "INDEX",
        "INNER",
        "INSERT",
        "INTERSECT",
        "INTO",
        "IS",
        "JOIN",
        "KEY",
        "KILL",
        "LEFT",
        "LIKE",
        "LINENO",
        "LOAD",
        "MERGE",
        "NATIONAL",
        "NOCHECK",
        "NONCLUSTERED",
        "NOT",
        "NULL",
        "NULLIF",
        "OF",
        "OFF",
        "OFFSETS",
        "ON",
        "OPEN",
        "OPENDATASOURCE",
        "OPENQUERY",
        "OPENROWSET",
        "OPENXML",
        "OPTION",
        "OR",
        "ORDER",
        "OUTER",
        "OVER",
        "PERCENT",
        "PIVOT",
        "PLAN",
        "PRECISION",
        "PRIMARY",
        "PRINT",
        "PROC",
        "PROCEDURE",
        "PUBLIC",
        "RAISERROR",
        "READ",
        "READTEXT",
        "RECONFIGURE",
        "REFERENCES",
        "REPLICATION",
        "RESTORE",
        "RESTRICT",
        "RETURN",
        "REVERT",
        "REVOKE",
        "RIGHT",
        "ROLLBACK",
        "ROWCOUNT",
        "ROWGUIDCOL",
        "RULE",
        "SAVE",
        "SCHEMA",
        "SECURITYAUDIT",
        "SELECT",
        "SESSION_USER",
        "SET",
        "SETUSER",
        "SHUTDOWN",
        "SOME",
        "STATISTICS",
        "SYSTEM_USER",
        "TABLE",
        "TABLESAMPLE",
        "TEXTSIZE",
        "THEN",
        "TO",
        "TOP",
        "TRAN",
        "TRANSACTION",
        "TRIGGER",
        "TRUNCATE",
        "TRY_CONVERT",
        "TSEQUAL",
        "UNION",
        "UNIQUE",
        "UNPIVOT",
        "UPDATE",
        "UPDATETEXT",
        "USE",
        "USER",
        "VALUES",
        "VARYING",
        "VIEW",
        "WAITFOR",
        "WHEN",
        "WHERE",
        "WHILE",
        "WITH",
        "WRITETEXT",
    ];
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn literals_and_names() {
        let t = kinds("N'it''s' 'a' 0x0A1 12 1.50 2e3 $4.25 @v @@SPID #tmp [a]]b] \"q\"");
        assert_eq!(
            t,
            vec![
                Tok::NStr("it's".into()),
                Tok::Str("a".into()),
                Tok::Binary(vec![0x00, 0xA1]),
                Tok::Int("12".into()),
                Tok::Decimal("1.50".into()),
                Tok::Float("2e3".into()),
                Tok::Money("4.25".into()),
                Tok::Var("@v".into()),
                Tok::Global("@@SPID".into()),
                Tok::Word("#tmp".into()),
                Tok::QuotedId("a]b".into()),
                Tok::QuotedId("q".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn comments_nest_and_lines_count() {
        let toks = tokenize("a -- x\n/* b /* c */ d */\nb").unwrap();
        assert_eq!(toks.len(), 3);
        assert_eq!(toks[1].line, 3);
        let e = tokenize("select /* open").unwrap_err();
        assert_eq!(e.number, 113);
        let e = tokenize("select\n'abc").unwrap_err();
        assert_eq!((e.number, e.line), (105, 2));
        for open in ["select [a\nb", "select \"a\nb"] {
            let e = tokenize(open).unwrap_err();
            assert_eq!((e.number, e.line), (105, 1), "{open}");
        }
        assert_eq!(kinds("\"a\"\"b\"")[0], Tok::QuotedId("a\"b".into()));
    }

    #[test]
    fn operators() {
        assert_eq!(
            kinds("a+=1<>2!=3<=4"),
            vec![
                Tok::Word("a".into()),
                Tok::Op("+="),
                Tok::Int("1".into()),
                Tok::Op("<>"),
                Tok::Int("2".into()),
                Tok::Op("!="),
                Tok::Int("3".into()),
                Tok::Op("<="),
                Tok::Int("4".into()),
                Tok::Eof
            ]
        );
    }
}

#[cfg(test)]
mod bom_tests {
    #[test]
    fn byte_order_mark_is_whitespace() {
        let t = super::tokenize("\u{feff}SELECT 1").unwrap();
        assert_eq!(t.len(), 3);
    }
}
