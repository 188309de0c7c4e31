//! The local wall-clock time, broken down, for log timestamps.

/// A broken-down local time with its offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Seconds east of UTC.
    pub offset_seconds: i64,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl LocalTime {
    /// The local time now (UTC if the time zone cannot be read).
    pub fn now() -> LocalTime {
        // SAFETY: `time` with a null pointer only returns the current time.
        let now = unsafe { libc::time(std::ptr::null_mut()) };
        // SAFETY: `tm` is plain data; all-zero is a valid value to overwrite.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; `localtime_r` is the
        // re-entrant variant and writes only into `tm`.
        if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
            // SAFETY: as above, with the UTC variant.
            unsafe { libc::gmtime_r(&now, &mut tm) };
            tm.tm_gmtoff = 0;
        }
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            offset_seconds: tm.tm_gmtoff,
        }
    }

    /// `+0100`, `-0430`, `+0000`.
    pub fn offset(&self) -> String {
        let sign = if self.offset_seconds < 0 { '-' } else { '+' };
        let minutes = self.offset_seconds.abs() / 60;
        format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
    }

    /// The error log's time, as gunicorn writes it:
    /// `2026-11-23 09:30:00 +0000`.
    pub fn error_log_format(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.offset()
        )
    }

    /// The Common Log Format time, as in access logs:
    /// `[23/Nov/2026:10:13:19 +0000]`.
    pub fn common_log_format(&self) -> String {
        format!(
            "[{:02}/{}/{:04}:{:02}:{:02}:{:02} {}]",
            self.day,
            MONTHS[(self.month as usize).clamp(1, 12) - 1],
            self.year,
            self.hour,
            self.minute,
            self.second,
            self.offset()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_log_format_matches_apache() {
        let time = LocalTime {
            year: 2000,
            month: 10,
            day: 10,
            hour: 13,
            minute: 55,
            second: 36,
            offset_seconds: -7 * 3600,
        };
        assert_eq!(time.common_log_format(), "[10/Oct/2000:13:55:36 -0700]");
    }

    #[test]
    fn error_log_format_matches_gunicorn() {
        let time = LocalTime {
            year: 2026,
            month: 11,
            day: 3,
            hour: 9,
            minute: 5,
            second: 7,
            offset_seconds: 19_800,
        };
        assert_eq!(time.error_log_format(), "2026-11-03 09:05:07 +0530");
    }

    #[test]
    fn offsets_keep_their_sign_and_minutes() {
        let mut time = LocalTime::now();
        for (seconds, text) in [
            (0, "+0000"),
            (3600, "+0100"),
            (-16200, "-0430"),
            (19800, "+0530"),
        ] {
            time.offset_seconds = seconds;
            assert_eq!(time.offset(), text);
        }
    }
}
