//! Durations as people write them in templates and API calls: `90s`, `30m`, `1h30m`, `7d`.

use chrono::Duration;
use serde::{Deserialize, Deserializer, Serializer};

pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (expected e.g. 30m, 1h30m, 7d)".into());
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {c:?} (use s, m, h, d)"
                ));
            }
        };
        let n: i64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: a number must precede {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: missing unit after {num} (use s, m, h, d)"
        ));
    }
    if total > 365 * 86400 {
        return Err(format!("invalid duration {text:?}: longer than a year"));
    }
    Ok(Duration::seconds(total))
}

/// The shortest exact spelling: `1h30m`, `7d`, `0s`.
pub fn format(d: Duration) -> String {
    let mut s = d.num_seconds().max(0);
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

/// A rounded, readable span for people: "45s", "12m", "2h 5m", "3d 4h".
pub fn human(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => match (s % 3600) / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h {m}m", s / 3600),
        },
        _ => match (s % 86400) / 3600 {
            0 => format!("{}d", s / 86400),
            h => format!("{}d {h}h", s / 86400),
        },
    }
}

/// serde helpers so templates and API bodies hold real durations.
pub mod serde_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

pub mod serde_duration_opt {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse("7d").unwrap(), Duration::days(7));
        assert_eq!(format(Duration::minutes(90)), "1h30m");
        assert_eq!(format(Duration::seconds(90061)), "1d1h1m1s");
        assert_eq!(format(Duration::zero()), "0s");
        assert_eq!(human(Duration::seconds(45)), "45s");
        assert_eq!(human(Duration::seconds(3 * 3600 + 300)), "3h 5m");
        assert_eq!(human(Duration::days(2)), "2d");
        for bad in ["", "5", "5x", "h", "1.5h", "-1h", "999d"] {
            assert!(parse(bad).is_err(), "{bad:?} is refused");
        }
    }
}
