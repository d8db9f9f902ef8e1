//! The shape of a csum-offload log line, below both the logger that
//! writes lines and the log file that must recognise a file of its own
//! by its first line (`is_log_line`): one place knows the format.

use log::LevelFilter;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

/// The level names every front end accepts (config `logLevel`, the
/// installer's `--log-level`), most quiet first.
pub const LEVELS: &[(&str, LevelFilter)] = &[
    ("off", LevelFilter::Off),
    ("error", LevelFilter::Error),
    ("warn", LevelFilter::Warn),
    ("info", LevelFilter::Info),
    ("debug", LevelFilter::Debug),
    ("trace", LevelFilter::Trace),
];

/// One log line: `<UTC time> <LEVEL> csum-offload[<pid>] <context>: <message>`.
pub fn format_line(level: log::Level, context: &str, message: &str) -> String {
    format!(
        "{} {:5} {PROGRAM}[{}] {}: {}\n",
        timestamp(),
        level,
        std::process::id(),
        escape(context),
        escape(message)
    )
}

const PROGRAM: &str = "csum-offload";

/// Whether `head` (the first bytes of a file) starts the way every line of
/// `format_line` does: `2026-12-02T07:53:53.098Z WARN  csum-offload[14392] `.
/// This is how the log file knows a file is one it wrote.
pub fn is_log_line(head: &[u8]) -> bool {
    // The timestamp: digits where `format_line` puts digits.
    const STAMP: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ ";
    let Some((stamp, rest)) = head.split_at_checked(STAMP.len()) else {
        return false;
    };
    let stamp_ok = STAMP.iter().zip(stamp).all(|(want, got)| match want {
        b'd' => got.is_ascii_digit(),
        _ => want == got,
    });
    let Some((level, rest)) = rest.split_at_checked(6) else {
        return false;
    };
    let level_ok = LEVELS[1..].iter().any(|(_, l)| {
        let name = format!("{:5} ", l.to_level().map_or("", |l| l.as_str()));
        level == name.as_bytes()
    });
    let Some(rest) = rest
        .strip_prefix(PROGRAM.as_bytes())
        .and_then(|r| r.strip_prefix(b"["))
    else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    stamp_ok && level_ok && (1..=10).contains(&digits) && rest[digits..].starts_with(b"] ")
}

/// `s` with every control character escaped (`\n`, `\t`, `\u{1b}`...).
fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
    )
}

/// RFC 3339 UTC with milliseconds, without a date-time crate.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(
            escape("txgbe\n2026-01-01 INFO forged\r\u{1b}[31m"),
            "txgbe\\n2026-01-01 INFO forged\\r\\u{1b}[31m"
        );
    }

    #[test]
    fn its_own_lines_are_recognised() {
        for level in [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Trace,
        ] {
            let line = format_line(level, "ADD 3f2a9c1b7d4e eth0", "a message");
            assert!(is_log_line(line.as_bytes()), "{line}");
            // Only the head is read: a first line cut short still counts.
            assert!(is_log_line(&line.as_bytes()[..60]), "{line}");
        }
        for foreign in [
            "Dec  2 07:53:53 node kernel: [    0.000000] Linux version 6.18",
            "2026-12-02T07:53:53.098Z WARN  other-daemon[14392] x: y",
            "2026-12-02T07:53:53.098Z NOTE  csum-offload[14392] x: y",
            "2026-12-02 07:53:53.098Z WARN  csum-offload[14392] x: y",
            "2026-12-02T07:53:53.098Z WARN  csum-offload[] x: y",
            "2026-12-02T07:53:53.098Z WARN  csum-offload[14392",
            "2026-12-02T07:53:53",
            "",
        ] {
            assert!(!is_log_line(foreign.as_bytes()), "{foreign}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
    }
}
