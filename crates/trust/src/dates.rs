//! START_DATE / EXPIRY_DATE literals: 'MM/DD/YYYY' (the seed's form), ISO 8601, 'YYYYMMDD'.

use crate::error::{codes, Result, TrustError};
use chrono::{NaiveDate, NaiveDateTime};

pub fn parse_sql_date(s: &str) -> Result<NaiveDateTime> {
    let t = s.trim();
    const DT: [&str; 8] = [
        "%m/%d/%Y %H:%M:%S%.f",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ];
    for f in DT {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(d);
        }
    }
    for f in ["%m/%d/%Y", "%Y-%m-%d", "%Y%m%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, f) {
            return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
        }
    }
    Err(TrustError::new(
        codes::BAD_DATE,
        format!(
            "Conversion failed when converting date and/or time from character string. ('{t}')"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let d = parse_sql_date("03/30/2025").unwrap();
        assert_eq!(d.to_string(), "2025-03-30 00:00:00");
        assert_eq!(parse_sql_date("2025-03-30").unwrap(), d);
        assert_eq!(parse_sql_date("20250330").unwrap(), d);
        assert_eq!(
            parse_sql_date("2025-03-30T12:00:01").unwrap().to_string(),
            "2025-03-30 12:00:01"
        );
        assert_eq!(parse_sql_date("13/40/2025").unwrap_err().number, 241);
        assert!(parse_sql_date("").is_err());
    }
}
