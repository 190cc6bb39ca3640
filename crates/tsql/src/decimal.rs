//! Exact DECIMAL/NUMERIC arithmetic on a 128-bit mantissa (38 digits fit), with a 256-bit intermediate for
//! multiplication and division so no f64 is ever involved. Rounding is half away from zero, as SQL Server does.

use crate::error::{Result, SqlError};
use crate::types::{decimal_result, DataType};
use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// value = mantissa / 10^scale
    pub mantissa: i128,
    pub precision: u8,
    pub scale: u8,
}

pub(crate) fn pow10(n: u32) -> u128 {
    10u128.pow(n.min(38))
}

/// Number of decimal digits of |m| (0 has one digit).
fn digits(m: u128) -> u32 {
    let mut d = 1;
    let mut v = m / 10;
    while v > 0 {
        d += 1;
        v /= 10;
    }
    d
}

/// Minimal unsigned 256-bit integer as four little-endian u64 limbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct U256([u64; 4]);

impl U256 {
    fn from_u128(v: u128) -> Self {
        U256([v as u64, (v >> 64) as u64, 0, 0])
    }
    fn mul_u128(a: u128, b: u128) -> Self {
        let a = [a as u64, (a >> 64) as u64];
        let b = [b as u64, (b >> 64) as u64];
        let mut r = [0u64; 4];
        for i in 0..2 {
            let mut carry: u128 = 0;
            for j in 0..2 {
                let cur = r[i + j] as u128 + (a[i] as u128) * (b[j] as u128) + carry;
                r[i + j] = cur as u64;
                carry = cur >> 64;
            }
            let mut k = i + 2;
            while carry > 0 && k < 4 {
                let cur = r[k] as u128 + carry;
                r[k] = cur as u64;
                carry = cur >> 64;
                k += 1;
            }
        }
        U256(r)
    }
    fn mul_u64(self, m: u64) -> Option<Self> {
        let mut r = [0u64; 4];
        let mut carry: u128 = 0;
        for (i, limb) in self.0.iter().enumerate() {
            let cur = (*limb as u128) * (m as u128) + carry;
            r[i] = cur as u64;
            carry = cur >> 64;
        }
        if carry > 0 {
            None
        } else {
            Some(U256(r))
        }
    }
    fn bit(&self, i: usize) -> bool {
        (self.0[i / 64] >> (i % 64)) & 1 == 1
    }
    /// Division by a nonzero u128 divisor below 2^127, shift-subtract (speed is irrelevant here).
    fn div_rem(self, d: u128) -> (U256, u128) {
        let mut q = [0u64; 4];
        let mut r: u128 = 0;
        for i in (0..256).rev() {
            r = (r << 1) | self.bit(i) as u128;
            if r >= d {
                r -= d;
                q[i / 64] |= 1 << (i % 64);
            }
        }
        (U256(q), r)
    }
    fn to_u128(self) -> Option<u128> {
        if self.0[2] != 0 || self.0[3] != 0 {
            None
        } else {
            Some(self.0[0] as u128 | (self.0[1] as u128) << 64)
        }
    }
}

/// Divides |n| by `d` rounding half away from zero.
fn div_round(n: U256, d: u128) -> U256 {
    let (q, r) = n.div_rem(d);
    if r >= d - r {
        // add one
        let mut limbs = q.0;
        for l in limbs.iter_mut() {
            let (v, o) = l.overflowing_add(1);
            *l = v;
            if !o {
                break;
            }
        }
        U256(limbs)
    } else {
        q
    }
}

impl Decimal {
    pub fn new(mantissa: i128, precision: u8, scale: u8) -> Self {
        Decimal {
            mantissa,
            precision,
            scale,
        }
    }

    pub fn from_i64(v: i64) -> Self {
        let p = digits(v.unsigned_abs() as u128).max(1) as u8;
        Decimal {
            mantissa: v as i128,
            precision: p.max(if v.unsigned_abs() > i32::MAX as u64 {
                19
            } else {
                10
            }),
            scale: 0,
        }
    }

    /// Parses "123", "-1.50", ".5", "1." into a decimal typed with the literal's own precision and scale.
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (neg, body) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int = int.trim_start_matches('0');
        if int.len() + frac.len() > 38 {
            // Drop excess fraction digits with rounding; too many integer digits cannot be represented.
            if int.len() > 38 {
                return None;
            }
            let keep = 38 - int.len();
            let d = Decimal::parse(&format!(
                "{}{}.{}",
                if neg { "-" } else { "" },
                int,
                &frac[..keep]
            ))?;
            let next = frac.as_bytes()[keep];
            if next >= b'5' {
                let one = if neg { -1 } else { 1 };
                return Some(Decimal {
                    mantissa: d.mantissa + one,
                    ..d
                });
            }
            return Some(d);
        }
        let mut m: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            m = m * 10 + (b - b'0') as i128;
        }
        if neg {
            m = -m;
        }
        let scale = frac.len() as u8;
        let precision = (int.len() + frac.len()).max(1).max(scale as usize) as u8;
        Some(Decimal {
            mantissa: m,
            precision,
            scale,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn data_type(&self) -> DataType {
        DataType::Decimal {
            precision: self.precision,
            scale: self.scale,
            numeric: false,
        }
    }

    /// Re-scales with rounding half away from zero, then checks the precision (8115 on overflow).
    pub fn rescale(&self, precision: u8, scale: u8) -> Result<Decimal> {
        let m = rescale_mantissa(self.mantissa, self.scale, scale)
            .ok_or_else(|| overflow_numeric(precision, scale))?;
        if digits(m.unsigned_abs()) > precision as u32 && m != 0 {
            return Err(overflow_numeric(precision, scale));
        }
        Ok(Decimal {
            mantissa: m,
            precision,
            scale,
        })
    }

    /// Integer part truncated toward zero.
    pub fn trunc_i128(&self) -> i128 {
        self.mantissa / pow10(self.scale as u32) as i128
    }

    pub fn to_f64(&self) -> f64 {
        // Via text keeps the closest double.
        self.to_string().parse().unwrap_or(0.0)
    }

    pub fn from_f64(v: f64, precision: u8, scale: u8) -> Result<Decimal> {
        if !v.is_finite() {
            return Err(overflow_numeric(precision, scale));
        }
        let s = format!("{:.*}", scale as usize, v);
        let d = Decimal::parse(&s).ok_or_else(|| overflow_numeric(precision, scale))?;
        d.rescale(precision, scale)
    }

    pub fn neg(&self) -> Decimal {
        Decimal {
            mantissa: -self.mantissa,
            ..*self
        }
    }

    pub fn cmp_value(&self, other: &Decimal) -> Ordering {
        let s = self.scale.max(other.scale);
        match (
            rescale_mantissa(self.mantissa, self.scale, s),
            rescale_mantissa(other.mantissa, other.scale, s),
        ) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Rescaling up can only overflow for huge magnitudes; compare as floats then.
            _ => self
                .to_f64()
                .partial_cmp(&other.to_f64())
                .unwrap_or(Ordering::Equal),
        }
    }

    /// T-SQL decimal arithmetic: result precision/scale per SQL Server's rules, exact to that scale.
    pub fn arith(&self, other: &Decimal, op: char) -> Result<Decimal> {
        let rt = decimal_result(self.precision, self.scale, other.precision, other.scale, op);
        let (p, s) = match rt {
            DataType::Decimal {
                precision, scale, ..
            } => (precision, scale),
            _ => (38, 6),
        };
        let neg_res;
        let mag: U256 = match op {
            '+' | '-' => {
                let cs = self.scale.max(other.scale);
                let a = rescale_mantissa(self.mantissa, self.scale, cs)
                    .ok_or_else(|| overflow_numeric(p, s))?;
                let b = rescale_mantissa(other.mantissa, other.scale, cs)
                    .ok_or_else(|| overflow_numeric(p, s))?;
                let r = if op == '+' {
                    a.checked_add(b)
                } else {
                    a.checked_sub(b)
                }
                .ok_or_else(|| overflow_numeric(p, s))?;
                return Decimal {
                    mantissa: r,
                    precision: 38,
                    scale: cs,
                }
                .rescale(p, s);
            }
            '*' => {
                neg_res = (self.mantissa < 0) != (other.mantissa < 0);
                let prod =
                    U256::mul_u128(self.mantissa.unsigned_abs(), other.mantissa.unsigned_abs());
                // prod has scale s1+s2; bring it to s.
                let from = self.scale as u32 + other.scale as u32;
                let to = s as u32;
                if from >= to {
                    div_round(prod, pow10(from - to))
                } else {
                    let mut v = prod;
                    for _ in 0..(to - from) {
                        v = v.mul_u64(10).ok_or_else(|| overflow_numeric(p, s))?;
                    }
                    v
                }
            }
            '/' | '%' => {
                if other.is_zero() {
                    return Err(SqlError::divide_by_zero());
                }
                if op == '%' {
                    let cs = self.scale.max(other.scale);
                    let a = rescale_mantissa(self.mantissa, self.scale, cs)
                        .ok_or_else(|| overflow_numeric(p, s))?;
                    let b = rescale_mantissa(other.mantissa, other.scale, cs)
                        .ok_or_else(|| overflow_numeric(p, s))?;
                    let (mp, ms) = (p.max(cs), cs);
                    return Decimal {
                        mantissa: a % b,
                        precision: 38,
                        scale: cs,
                    }
                    .rescale(mp, ms);
                }
                neg_res = (self.mantissa < 0) != (other.mantissa < 0);
                // (a / 10^s1) / (b / 10^s2) = a * 10^(s + s2 - s1) / b at scale s
                let e = s as i32 + other.scale as i32 - self.scale as i32;
                let mut num = U256::from_u128(self.mantissa.unsigned_abs());
                let mut den = other.mantissa.unsigned_abs();
                if e >= 0 {
                    for _ in 0..e {
                        num = num.mul_u64(10).ok_or_else(|| overflow_numeric(p, s))?;
                    }
                } else {
                    let f = pow10((-e) as u32);
                    den = den.checked_mul(f).ok_or_else(|| overflow_numeric(p, s))?;
                }
                if den >= 1u128 << 127 {
                    return Err(overflow_numeric(p, s));
                }
                div_round(num, den)
            }
            _ => return Err(overflow_numeric(p, s)),
        };
        let m = mag
            .to_u128()
            .filter(|m| *m < (1u128 << 127))
            .ok_or_else(|| overflow_numeric(p, s))?;
        let m = if neg_res { -(m as i128) } else { m as i128 };
        Decimal {
            mantissa: m,
            precision: 38,
            scale: s,
        }
        .rescale(p, s)
    }

    /// ROUND(x, n): keeps the type, zeroes digits after position n (n may be negative).
    pub fn round(&self, n: i32, truncate: bool) -> Result<Decimal> {
        let s = self.scale as i32;
        if n >= s {
            return Ok(*self);
        }
        let drop = (s - n) as u32;
        if drop > 38 {
            return Ok(Decimal {
                mantissa: 0,
                ..*self
            });
        }
        let f = pow10(drop) as i128;
        let q = self.mantissa / f;
        let r = self.mantissa % f;
        let mut q = q;
        if !truncate && r.unsigned_abs() * 2 >= f as u128 {
            q += if self.mantissa < 0 { -1 } else { 1 };
        }
        let m = q
            .checked_mul(f)
            .ok_or_else(|| overflow_numeric(self.precision, self.scale))?;
        if digits(m.unsigned_abs()) > self.precision as u32 && m != 0 {
            return Err(overflow_numeric(self.precision, self.scale));
        }
        Ok(Decimal {
            mantissa: m,
            ..*self
        })
    }

    pub fn floor_ceil(&self, ceil: bool) -> Decimal {
        let f = pow10(self.scale as u32) as i128;
        let mut q = self.mantissa / f;
        let r = self.mantissa % f;
        if r != 0 && ((ceil && self.mantissa > 0) || (!ceil && self.mantissa < 0)) {
            q += if ceil { 1 } else { -1 };
        }
        // FLOOR/CEILING return decimal(p, 0).
        Decimal {
            mantissa: q,
            precision: self.precision.max(1),
            scale: 0,
        }
    }
}

fn rescale_mantissa(m: i128, from: u8, to: u8) -> Option<i128> {
    match to.cmp(&from) {
        Ordering::Equal => Some(m),
        Ordering::Greater => m.checked_mul(pow10((to - from) as u32) as i128),
        Ordering::Less => {
            let f = pow10((from - to) as u32) as i128;
            let q = m / f;
            let r = m % f;
            if r.unsigned_abs() * 2 >= f as u128 {
                Some(q + if m < 0 { -1 } else { 1 })
            } else {
                Some(q)
            }
        }
    }
}

fn overflow_numeric(_p: u8, _s: u8) -> SqlError {
    SqlError::new(
        8115,
        16,
        "Arithmetic overflow error converting numeric to data type numeric.",
    )
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.mantissa < 0;
        let abs = self.mantissa.unsigned_abs();
        let s = self.scale as u32;
        let p = pow10(s);
        let int = abs / p;
        let frac = abs % p;
        if neg {
            write!(f, "-")?;
        }
        if s == 0 {
            write!(f, "{}", int)
        } else {
            write!(f, "{}.{:0width$}", int, frac, width = s as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(d("1.50").to_string(), "1.50");
        assert_eq!(d("-0.5").to_string(), "-0.5");
        assert_eq!(d(".5").precision, 1);
        assert_eq!(d("123.45").precision, 5);
        assert!(Decimal::parse("1e5").is_none());
    }

    #[test]
    fn exact_arithmetic() {
        // 0.1 + 0.2 is exactly 0.3
        assert_eq!(d("0.1").arith(&d("0.2"), '+').unwrap().to_string(), "0.3");
        assert_eq!(
            d("1.10").arith(&d("2.205"), '*').unwrap().to_string(),
            "2.42550"
        );
        // decimal(1,0)/decimal(1,0): scale 6
        assert_eq!(d("1").arith(&d("3"), '/').unwrap().to_string(), "0.333333");
        assert_eq!(d("2").arith(&d("3"), '/').unwrap().to_string(), "0.666667");
        assert_eq!(
            d("-2").arith(&d("3"), '/').unwrap().to_string(),
            "-0.666667"
        );
        assert_eq!(d("1").arith(&d("0"), '/').unwrap_err().number, 8134);
        let big = d("99999999999999999999999999999999999999");
        assert_eq!(big.arith(&big, '+').unwrap_err().number, 8115);
        let x = d("1234567890.123456789");
        let y = d("9876543210.987654321");
        let prod = x.arith(&y, '*').unwrap();
        assert_eq!((prod.precision, prod.scale), (38, 17));
        assert_eq!(prod.to_string(), "12193263113702179522.37463801111263527");
        let big = d("12345678901234567890.123456789");
        assert_eq!(big.arith(&big, '*').unwrap_err().number, 8115);
    }

    #[test]
    fn rounding() {
        assert_eq!(d("2.5").rescale(5, 0).unwrap().to_string(), "3");
        assert_eq!(d("-2.5").rescale(5, 0).unwrap().to_string(), "-3");
        assert_eq!(d("123.456").round(1, false).unwrap().to_string(), "123.500");
        assert_eq!(
            d("123.456").round(-2, false).unwrap().to_string(),
            "100.000"
        );
        assert_eq!(d("999.9").rescale(3, 0).unwrap_err().number, 8115);
        assert_eq!(d("-1.5").floor_ceil(false).to_string(), "-2");
        assert_eq!(d("1.2").floor_ceil(true).to_string(), "2");
    }
}
