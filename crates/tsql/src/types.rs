//! The T-SQL type model: declared types, precedence, and the result types of operators.

use std::fmt;

/// A length of a character/binary type: a count or MAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Len {
    N(u32),
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    /// DECIMAL/NUMERIC(p, s); `numeric` keeps the spelling for metadata.
    Decimal {
        precision: u8,
        scale: u8,
        numeric: bool,
    },
    Money,
    SmallMoney,
    /// FLOAT(n): n <= 24 is REAL, otherwise 53.
    Float,
    Real,
    Char(u32),
    VarChar(Len),
    NChar(u32),
    NVarChar(Len),
    Binary(u32),
    VarBinary(Len),
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    UniqueIdentifier,
    /// SYSNAME is NVARCHAR(128) NOT NULL; kept distinct so metadata shows the alias.
    SysName,
    /// SQL_VARIANT / XML / TEXT etc. are accepted as opaque for metadata only.
    Text,
    NText,
    Image,
    Xml,
    SqlVariant,
}

impl DataType {
    /// Builds a type from its name and parenthesised arguments (None for MAX). Returns None for unknown names.
    pub fn from_name(name: &str, args: &[Option<u32>]) -> Option<DataType> {
        let n = name.to_ascii_uppercase();
        let a0 = args.first().copied();
        let a1 = args.get(1).copied().flatten();
        let len_or = |default: u32| -> Len {
            match a0 {
                None => Len::N(default),
                Some(None) => Len::Max,
                Some(Some(v)) => Len::N(v),
            }
        };
        let fixed = |default: u32| -> u32 { a0.flatten().unwrap_or(default) };
        Some(match n.as_str() {
            "BIT" => DataType::Bit,
            "TINYINT" => DataType::TinyInt,
            "SMALLINT" => DataType::SmallInt,
            "INT" | "INTEGER" => DataType::Int,
            "BIGINT" => DataType::BigInt,
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let p = a0.flatten().unwrap_or(18).clamp(1, 38) as u8;
                let s = a1.unwrap_or(0).min(p as u32) as u8;
                DataType::Decimal {
                    precision: p,
                    scale: s,
                    numeric: n == "NUMERIC",
                }
            }
            "MONEY" => DataType::Money,
            "SMALLMONEY" => DataType::SmallMoney,
            "FLOAT" => match a0.flatten() {
                Some(v) if v <= 24 => DataType::Real,
                _ => DataType::Float,
            },
            "REAL" => DataType::Real,
            "CHAR" | "CHARACTER" => DataType::Char(fixed(1)),
            "VARCHAR" => DataType::VarChar(len_or(1)),
            "NCHAR" => DataType::NChar(fixed(1)),
            "NVARCHAR" => DataType::NVarChar(len_or(1)),
            "BINARY" => DataType::Binary(fixed(1)),
            "VARBINARY" => DataType::VarBinary(len_or(1)),
            "DATE" => DataType::Date,
            "TIME" => DataType::Time(a0.flatten().unwrap_or(7).min(7) as u8),
            "DATETIME" => DataType::DateTime,
            "SMALLDATETIME" => DataType::SmallDateTime,
            "DATETIME2" => DataType::DateTime2(a0.flatten().unwrap_or(7).min(7) as u8),
            "DATETIMEOFFSET" => DataType::DateTimeOffset(a0.flatten().unwrap_or(7).min(7) as u8),
            "UNIQUEIDENTIFIER" => DataType::UniqueIdentifier,
            "SYSNAME" => DataType::SysName,
            "TEXT" => DataType::Text,
            "NTEXT" => DataType::NText,
            "IMAGE" => DataType::Image,
            "XML" => DataType::Xml,
            "SQL_VARIANT" => DataType::SqlVariant,
            "ROWVERSION" | "TIMESTAMP" => DataType::Binary(8),
            _ => return None,
        })
    }

    /// Data type precedence (higher wins in implicit conversion), per SQL Server's documented order.
    pub fn precedence(&self) -> u8 {
        use DataType::*;
        match self {
            SqlVariant => 26,
            Xml => 25,
            DateTimeOffset(_) => 24,
            DateTime2(_) => 23,
            DateTime => 22,
            SmallDateTime => 21,
            Date => 20,
            Time(_) => 19,
            Float => 18,
            Real => 17,
            Decimal { .. } => 16,
            Money => 15,
            SmallMoney => 14,
            BigInt => 13,
            Int => 12,
            SmallInt => 11,
            TinyInt => 10,
            Bit => 9,
            NText => 8,
            Text => 7,
            Image => 6,
            UniqueIdentifier => 4,
            NVarChar(_) | SysName => 3,
            NChar(_) => 2,
            VarChar(_) => 1,
            Char(_) => 0,
            VarBinary(_) | Binary(_) => 0,
        }
    }

    pub fn is_string(&self) -> bool {
        matches!(
            self,
            DataType::Char(_)
                | DataType::VarChar(_)
                | DataType::NChar(_)
                | DataType::NVarChar(_)
                | DataType::SysName
                | DataType::Text
                | DataType::NText
        )
    }
    pub fn is_unicode(&self) -> bool {
        matches!(
            self,
            DataType::NChar(_) | DataType::NVarChar(_) | DataType::SysName | DataType::NText
        )
    }
    pub fn is_binary(&self) -> bool {
        matches!(
            self,
            DataType::Binary(_) | DataType::VarBinary(_) | DataType::Image
        )
    }
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            DataType::Bit
                | DataType::TinyInt
                | DataType::SmallInt
                | DataType::Int
                | DataType::BigInt
                | DataType::Decimal { .. }
                | DataType::Money
                | DataType::SmallMoney
                | DataType::Float
                | DataType::Real
        )
    }
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            DataType::Bit
                | DataType::TinyInt
                | DataType::SmallInt
                | DataType::Int
                | DataType::BigInt
        )
    }
    pub fn is_temporal(&self) -> bool {
        matches!(
            self,
            DataType::Date
                | DataType::Time(_)
                | DataType::DateTime
                | DataType::SmallDateTime
                | DataType::DateTime2(_)
                | DataType::DateTimeOffset(_)
        )
    }

    /// Maximum character (or byte) length, None for MAX/unbounded.
    pub fn max_len(&self) -> Option<u32> {
        match self {
            DataType::Char(n) | DataType::NChar(n) | DataType::Binary(n) => Some(*n),
            DataType::VarChar(Len::N(n))
            | DataType::NVarChar(Len::N(n))
            | DataType::VarBinary(Len::N(n)) => Some(*n),
            DataType::SysName => Some(128),
            _ => None,
        }
    }

    /// (precision, scale) of an exact numeric view of this type, used for decimal result typing.
    pub fn numeric_ps(&self) -> (u8, u8) {
        match self {
            DataType::Bit => (1, 0),
            DataType::TinyInt => (3, 0),
            DataType::SmallInt => (5, 0),
            DataType::Int => (10, 0),
            DataType::BigInt => (19, 0),
            DataType::Decimal {
                precision, scale, ..
            } => (*precision, *scale),
            DataType::Money => (19, 4),
            DataType::SmallMoney => (10, 4),
            _ => (38, 0),
        }
    }

    /// The SQLite column affinity used when translating DDL. DECIMAL/NUMERIC/MONEY are TEXT (canonical decimal
    /// text, compared through the TSQL_DECIMAL collation) so SQLite never turns them into REAL.
    pub fn sqlite_affinity(&self) -> &'static str {
        use DataType::*;
        match self {
            Bit | TinyInt | SmallInt | Int | BigInt => "INTEGER",
            Float | Real => "REAL",
            Decimal { .. } | Money | SmallMoney => "TEXT",
            Binary(_) | VarBinary(_) | Image => "BLOB",
            _ => "TEXT",
        }
    }
}

/// Result type of `a + b` (or `a - b`, `*`, `/` when `concat` is false) under T-SQL rules.
pub fn arithmetic_result(a: &DataType, b: &DataType, op: char) -> DataType {
    use DataType::*;
    if op == '+' && a.is_string() && b.is_string() {
        return concat_result(a, b);
    }
    if op == '+' && a.is_binary() && b.is_binary() {
        let l = match (a.max_len(), b.max_len()) {
            (Some(x), Some(y)) if x + y <= 8000 => Len::N(x + y),
            _ => Len::Max,
        };
        return VarBinary(l);
    }
    let hi = if a.precedence() >= b.precedence() {
        *a
    } else {
        *b
    };
    if hi.is_string() {
        // Only reachable when one side is a string and the other lower than string? strings are lowest, so the
        // other side wins; keep for completeness.
        return hi;
    }
    match hi {
        Decimal { .. } => {
            let (p1, s1) = a.numeric_ps();
            let (p2, s2) = b.numeric_ps();
            decimal_result(p1, s1, p2, s2, op)
        }
        Bit => Int,
        TinyInt | SmallInt if op != '/' => Int,
        TinyInt | SmallInt => Int,
        other => other,
    }
}

/// Precision/scale of decimal arithmetic, per SQL Server's rules, capped at 38 keeping at least 6 scale digits.
pub fn decimal_result(p1: u8, s1: u8, p2: u8, s2: u8, op: char) -> DataType {
    let (p1, s1, p2, s2) = (p1 as i32, s1 as i32, p2 as i32, s2 as i32);
    let (p, s) = match op {
        '+' | '-' => {
            let s = s1.max(s2);
            (s + (p1 - s1).max(p2 - s2) + 1, s)
        }
        '*' => (p1 + p2 + 1, s1 + s2),
        '/' => {
            let s = 6.max(s1 + p2 + 1);
            (p1 - s1 + s2 + s, s)
        }
        _ => (p1.max(p2), s1.max(s2)),
    };
    let (p, s) = if p > 38 {
        let int_digits = p - s;
        let s = (38 - int_digits).max(s.min(6));
        (38, s.max(0))
    } else {
        (p, s)
    };
    DataType::Decimal {
        precision: p.clamp(1, 38) as u8,
        scale: s.clamp(0, p.min(38)) as u8,
        numeric: false,
    }
}

/// The type of a value that may come from either `a` or `b` (CASE/IIF/COALESCE branches, UNION columns,
/// VALUES rows): the higher-precedence type, widened so both fit (decimal digits, string lengths).
pub fn union_result(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    if a.is_string() && b.is_string() {
        let unicode = a.is_unicode() || b.is_unicode();
        let len = match (a.max_len(), b.max_len()) {
            (Some(x), Some(y)) => Len::N(x.max(y)),
            _ => Len::Max,
        };
        return if unicode { NVarChar(len) } else { VarChar(len) };
    }
    if a.is_binary() && b.is_binary() {
        return match (a.max_len(), b.max_len()) {
            (Some(x), Some(y)) => VarBinary(Len::N(x.max(y))),
            _ => VarBinary(Len::Max),
        };
    }
    let hi = if a.precedence() >= b.precedence() {
        *a
    } else {
        *b
    };
    match hi {
        Decimal { numeric, .. } if a.is_numeric() && b.is_numeric() => {
            let (p1, s1) = a.numeric_ps();
            let (p2, s2) = b.numeric_ps();
            let s = s1.max(s2) as u32;
            let p = (s + ((p1 - s1).max(p2 - s2)) as u32).min(38);
            Decimal {
                precision: p.max(1) as u8,
                scale: s.min(p) as u8,
                numeric,
            }
        }
        DateTime2(_) | Time(_) | DateTimeOffset(_) => {
            let f = |t: &DataType| match t {
                DateTime2(n) | Time(n) | DateTimeOffset(n) => *n,
                DateTime => 3,
                _ => 0,
            };
            let n = f(a).max(f(b));
            match hi {
                DateTime2(_) => DateTime2(n),
                Time(_) => Time(n),
                _ => DateTimeOffset(n),
            }
        }
        other => other,
    }
}

/// String + string: unicode if either is; lengths add up to 8000 bytes (4000 chars unicode), else MAX.
pub fn concat_result(a: &DataType, b: &DataType) -> DataType {
    let unicode = a.is_unicode() || b.is_unicode();
    let limit = if unicode { 4000 } else { 8000 };
    let len = match (a.max_len(), b.max_len()) {
        (Some(x), Some(y)) if x + y <= limit => Len::N(x + y),
        (Some(_), Some(_)) => Len::N(limit),
        _ => Len::Max,
    };
    if unicode {
        DataType::NVarChar(len)
    } else {
        DataType::VarChar(len)
    }
}

impl fmt::Display for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Len::N(n) => write!(f, "{}", n),
            Len::Max => write!(f, "max"),
        }
    }
}

impl fmt::Display for DataType {
    /// SQL Server's spelling, as in error messages and sys.types (lower case).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DataType::*;
        match self {
            Bit => write!(f, "bit"),
            TinyInt => write!(f, "tinyint"),
            SmallInt => write!(f, "smallint"),
            Int => write!(f, "int"),
            BigInt => write!(f, "bigint"),
            Decimal {
                precision,
                scale,
                numeric,
            } => {
                write!(
                    f,
                    "{}({},{})",
                    if *numeric { "numeric" } else { "decimal" },
                    precision,
                    scale
                )
            }
            Money => write!(f, "money"),
            SmallMoney => write!(f, "smallmoney"),
            Float => write!(f, "float"),
            Real => write!(f, "real"),
            Char(n) => write!(f, "char({})", n),
            VarChar(l) => write!(f, "varchar({})", l),
            NChar(n) => write!(f, "nchar({})", n),
            NVarChar(l) => write!(f, "nvarchar({})", l),
            Binary(n) => write!(f, "binary({})", n),
            VarBinary(l) => write!(f, "varbinary({})", l),
            Date => write!(f, "date"),
            Time(p) => write!(f, "time({})", p),
            DateTime => write!(f, "datetime"),
            SmallDateTime => write!(f, "smalldatetime"),
            DateTime2(p) => write!(f, "datetime2({})", p),
            DateTimeOffset(p) => write!(f, "datetimeoffset({})", p),
            UniqueIdentifier => write!(f, "uniqueidentifier"),
            SysName => write!(f, "sysname"),
            Text => write!(f, "text"),
            NText => write!(f, "ntext"),
            Image => write!(f, "image"),
            Xml => write!(f, "xml"),
            SqlVariant => write!(f, "sql_variant"),
        }
    }
}

impl DataType {
    /// Name without length/precision, as in sys.types and error 245's "data type int".
    pub fn base_name(&self) -> String {
        let s = self.to_string();
        match s.find('(') {
            Some(i) => s[..i].to_string(),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            DataType::from_name("nvarchar", &[None]),
            Some(DataType::NVarChar(Len::Max))
        );
        assert_eq!(
            DataType::from_name("DECIMAL", &[Some(10), Some(2)]),
            Some(DataType::Decimal {
                precision: 10,
                scale: 2,
                numeric: false
            })
        );
        assert_eq!(
            DataType::from_name("float", &[Some(24)]),
            Some(DataType::Real)
        );
        assert_eq!(
            DataType::from_name("datetime2", &[]),
            Some(DataType::DateTime2(7))
        );
        assert_eq!(DataType::from_name("nope", &[]), None);
    }

    #[test]
    fn either_branch_types() {
        let dec = |p, s| DataType::Decimal {
            precision: p,
            scale: s,
            numeric: false,
        };
        // CASE WHEN … THEN 1 ELSE 2.5 END is numeric(11,1): the int's 10 digits and the decimal's scale.
        assert_eq!(union_result(&DataType::Int, &dec(2, 1)), dec(11, 1));
        assert_eq!(
            union_result(&DataType::VarChar(Len::N(3)), &DataType::VarChar(Len::N(5))),
            DataType::VarChar(Len::N(5))
        );
        assert_eq!(
            union_result(&DataType::VarChar(Len::N(3)), &DataType::NVarChar(Len::Max)),
            DataType::NVarChar(Len::Max)
        );
        assert_eq!(
            union_result(&DataType::Int, &DataType::Float),
            DataType::Float
        );
        assert_eq!(
            union_result(&DataType::DateTime, &DataType::DateTime2(7)),
            DataType::DateTime2(7)
        );
    }

    #[test]
    fn plus_types() {
        let a = DataType::VarChar(Len::N(10));
        let b = DataType::NVarChar(Len::N(5));
        assert_eq!(
            arithmetic_result(&a, &b, '+'),
            DataType::NVarChar(Len::N(15))
        );
        assert_eq!(arithmetic_result(&a, &DataType::Int, '+'), DataType::Int);
        assert_eq!(
            arithmetic_result(
                &DataType::Decimal {
                    precision: 10,
                    scale: 2,
                    numeric: false
                },
                &DataType::Int,
                '+'
            ),
            DataType::Decimal {
                precision: 13,
                scale: 2,
                numeric: false
            }
        );
    }
}
