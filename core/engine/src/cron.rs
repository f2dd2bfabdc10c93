//! Crontab-style schedules: `minute hour day-of-month month day-of-week` (UTC), each field `*`,
//! `*/n`, `a`, `a-b`, `a-b/n` or a comma list of those. Sunday is 0 (7 also accepted).

use thiserror::Error;

/// A schedule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad cron spec {spec:?}: {problem}")]
pub struct CronError {
    /// The spec.
    pub spec: String,
    /// What is wrong.
    pub problem: String,
}

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronSpec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

fn field(s: &str, lo: u32, hi: u32, name: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (r, st.parse::<u32>().map_err(|_| format!("{name}: bad step {st:?}"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("{name}: step 0"));
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse::<u32>().map_err(|_| format!("{name}: bad value {a:?}"))?;
            let b = b.parse::<u32>().map_err(|_| format!("{name}: bad value {b:?}"))?;
            (a, b)
        } else {
            let a = range.parse::<u32>().map_err(|_| format!("{name}: bad value {range:?}"))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {a}-{b} outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl CronSpec {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(spec: &str) -> Result<CronSpec, CronError> {
        let err = |problem: String| CronError { spec: spec.to_owned(), problem };
        let f: Vec<&str> = spec.split_whitespace().collect();
        let [m, h, dom, mon, dow] = f[..] else {
            return Err(err(format!("expected 5 fields, got {}", f.len())));
        };
        let mut dow = field(dow, 0, 7, "day of week").map_err(err)?;
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Ok(CronSpec {
            minute: field(m, 0, 59, "minute").map_err(err)?,
            hour: field(h, 0, 23, "hour").map_err(err)?,
            dom: field(dom, 1, 31, "day of month").map_err(err)?,
            month: field(mon, 1, 12, "month").map_err(err)?,
            dow,
        })
    }

    /// True if the schedule fires in the UTC minute `unix_minute` (minutes since the epoch).
    pub fn matches(&self, unix_minute: u64) -> bool {
        let minute = unix_minute % 60;
        let hour = (unix_minute / 60) % 24;
        let days = unix_minute / 1440;
        let dow = (days + 4) % 7; // 1970-01-01 was a Thursday.
        let (_, month, day) = civil_from_days(days as i64);
        self.minute & (1 << minute) != 0
            && self.hour & (1 << hour) != 0
            && self.dom & (1 << day) != 0
            && self.month & (1 << month) != 0
            && self.dow & (1 << dow) != 0
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minutes since the epoch of a UTC date and time.
    fn at(days: u64, hour: u64, minute: u64) -> u64 {
        days * 1440 + hour * 60 + minute
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn fields_and_matching() {
        let every = CronSpec::parse("* * * * *").expect("valid");
        assert!(every.matches(0) && every.matches(123_456));
        let quarter = CronSpec::parse("*/15 * * * *").expect("valid");
        assert!(quarter.matches(at(1, 3, 30)) && !quarter.matches(at(1, 3, 31)));
        // 2024-01-01 (day 19723) was a Monday: 09:30 on weekdays.
        let weekday = CronSpec::parse("30 9 * * 1-5").expect("valid");
        assert!(weekday.matches(at(19_723, 9, 30)));
        assert!(!weekday.matches(at(19_723 + 5, 9, 30)), "Saturday");
        let sunday = CronSpec::parse("0 0 * * 7").expect("valid");
        assert!(sunday.matches(at(19_723 + 6, 0, 0)), "7 is Sunday too");
        let leap = CronSpec::parse("0 12 29 2 *").expect("valid");
        assert!(leap.matches(at(19_782, 12, 0)));
        let list = CronSpec::parse("5,10-12 * * * *").expect("valid");
        assert!(list.matches(5) && list.matches(11) && !list.matches(13));
    }

    #[test]
    fn bad_specs() {
        for bad in ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "*/0 * * * *", "a * * * *", "5-2 * * * *"] {
            assert!(CronSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
