//! Conversions to and from chrono (feature "chrono").
use chrono::{Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::types::{Date, DateTime2, DateTimeOffset, Time};

impl From<NaiveDate> for Date {
    fn from(d: NaiveDate) -> Self {
        // 0001-01-01 is day 1 of the common era in chrono.
        Date(d.num_days_from_ce() - 1)
    }
}

impl TryFrom<Date> for NaiveDate {
    type Error = ();
    fn try_from(d: Date) -> Result<Self, ()> {
        NaiveDate::from_num_days_from_ce_opt(d.0.checked_add(1).ok_or(())?).ok_or(())
    }
}

impl From<NaiveTime> for Time {
    fn from(t: NaiveTime) -> Self {
        // Leap-second nanoseconds (>= 1e9) are clamped into the last second.
        let nanos = t.nanosecond().min(999_999_999) as u64;
        Time(t.num_seconds_from_midnight() as u64 * 10_000_000 + nanos / 100)
    }
}

impl From<Time> for NaiveTime {
    fn from(t: Time) -> Self {
        let (h, m, s, n) = t.to_hms_nano();
        NaiveTime::from_hms_nano_opt(h, m, s, n).unwrap_or(NaiveTime::MIN)
    }
}

impl From<NaiveDateTime> for DateTime2 {
    fn from(d: NaiveDateTime) -> Self {
        DateTime2 {
            date: d.date().into(),
            time: d.time().into(),
        }
    }
}

impl TryFrom<DateTime2> for NaiveDateTime {
    type Error = ();
    fn try_from(d: DateTime2) -> Result<Self, ()> {
        Ok(NaiveDate::try_from(d.date)?.and_time(d.time.into()))
    }
}

impl From<chrono::DateTime<FixedOffset>> for DateTimeOffset {
    fn from(d: chrono::DateTime<FixedOffset>) -> Self {
        DateTimeOffset {
            local: d.naive_local().into(),
            offset_minutes: (d.offset().local_minus_utc() / 60) as i16,
        }
    }
}

impl TryFrom<DateTimeOffset> for chrono::DateTime<FixedOffset> {
    type Error = ();
    fn try_from(d: DateTimeOffset) -> Result<Self, ()> {
        let off = FixedOffset::east_opt(d.offset_minutes as i32 * 60).ok_or(())?;
        NaiveDateTime::try_from(d.local)?
            .and_local_timezone(off)
            .single()
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let nd = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let d: Date = nd.into();
        assert_eq!(d, Date::from_ymd(2024, 2, 29).unwrap());
        assert_eq!(NaiveDate::try_from(d).unwrap(), nd);
        assert_eq!(
            Date::from(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
            Date(0)
        );
        let ndt = nd.and_hms_nano_opt(13, 45, 7, 123_456_700).unwrap();
        let dt: DateTime2 = ndt.into();
        assert_eq!(NaiveDateTime::try_from(dt).unwrap(), ndt);
        let z = chrono::DateTime::parse_from_rfc3339("2024-02-29T13:45:07.5-05:30").unwrap();
        let o: DateTimeOffset = z.into();
        assert_eq!(o.offset_minutes, -330);
        assert_eq!(chrono::DateTime::<FixedOffset>::try_from(o).unwrap(), z);
    }
}
