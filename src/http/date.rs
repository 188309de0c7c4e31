//! The `Date` header value (IMF-fixdate), formatted at most once a second.
//!
//! RFC 9110 §5.6.7:
//!
//! ```text
//! IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
//! ; fixed length/zone/capitalization subset of RFC 5322
//! ```
//!
//! The calendar conversion is done here (days since the epoch to a
//! proleptic Gregorian date) rather than through a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// The length of an IMF-fixdate string.
pub const IMF_FIXDATE_LEN: usize = 29;

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A cached IMF-fixdate string (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub struct HttpDate {
    /// The second (since the Unix epoch) `text` shows.
    second: u64,
    text: [u8; IMF_FIXDATE_LEN],
}

impl HttpDate {
    /// A cache holding the current time.
    pub fn new() -> Self {
        let second = unix_seconds_now();
        HttpDate {
            second,
            text: format_imf_fixdate(second),
        }
    }

    /// The current date, re-formatted only when the second has changed.
    pub fn now(&mut self) -> &[u8] {
        let second = unix_seconds_now();
        if second != self.second {
            self.second = second;
            self.text = format_imf_fixdate(second);
        }
        &self.text
    }
}

impl Default for HttpDate {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_seconds_now() -> u64 {
    // A clock before 1970 is a broken clock; show the epoch rather than fail.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Formats seconds since the Unix epoch as an IMF-fixdate.
pub fn format_imf_fixdate(unix_seconds: u64) -> [u8; IMF_FIXDATE_LEN] {
    let days = unix_seconds / 86_400;
    let second_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = ((days + 4) % 7) as usize;

    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[0..3].copy_from_slice(DAY_NAMES[weekday]);
    put_two_digits(&mut text[5..7], day);
    text[8..11].copy_from_slice(MONTH_NAMES[(month - 1) as usize]);
    put_two_digits(&mut text[12..14], year / 100 % 100);
    put_two_digits(&mut text[14..16], year % 100);
    put_two_digits(&mut text[17..19], second_of_day / 3600);
    put_two_digits(&mut text[20..22], second_of_day / 60 % 60);
    put_two_digits(&mut text[23..25], second_of_day % 60);
    text
}

fn put_two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Converts days since 1970-01-01 to (year, month 1-12, day 1-31).
///
/// Counts in 400-year eras of 146097 days starting on a 1st of March, so
/// that the leap day falls at the end of each counted year.
fn civil_from_days(days_since_epoch: u64) -> (u64, u64, u64) {
    // 719468 days separate 0000-03-01 from 1970-01-01.
    let days = days_since_epoch + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March ... 11 = February.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let cases: &[(u64, &str)] = &[
            // The epoch
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            // RFC 9110's example
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            // Leap days and century rules
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            // End of a year
            (1_735_689_599, "Tue, 31 Dec 2024 23:59:59 GMT"),
            (1_735_689_600, "Wed, 01 Jan 2025 00:00:00 GMT"),
            // Past 2038
            (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
        ];
        for &(seconds, expected) in cases {
            assert_eq!(
                std::str::from_utf8(&format_imf_fixdate(seconds)).unwrap(),
                expected,
                "{seconds}"
            );
        }
    }

    #[test]
    fn every_day_for_a_long_span_advances_the_calendar_by_one() {
        let mut previous = civil_from_days(0);
        for days in 1..200_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1) && pd >= 28;
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {:?}",
                (y, m, d)
            );
            if next_month {
                let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
                let expected_len = match pm {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(pd, expected_len, "length of {py}-{pm}");
            }
            previous = (y, m, d);
        }
    }

    #[test]
    fn now_is_an_imf_fixdate_of_the_current_time() {
        let mut date = HttpDate::new();
        let text = date.now().to_vec();
        assert_eq!(text.len(), IMF_FIXDATE_LEN);
        assert!(text.ends_with(b" GMT"));
        assert_eq!(text[3], b',');
    }
}
