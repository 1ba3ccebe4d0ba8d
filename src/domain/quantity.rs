//! Kubernetes resource quantities ("500m", "2", "1.5", "256Mi", "16Gi", "1e3"), compared
//! as exact numbers of thousandths, for checking that a template's quota can hold the
//! pods a demo runs.

use std::cmp::Ordering;

/// A quantity in thousandths of its unit (millicores, millibytes): exact for every
/// quantity Kubernetes accepts at the sizes a quota deals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity(i128);

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(o.0))
    }
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let bad = || format!("{s:?} is not a quantity such as \"500m\", \"2\" or \"16Gi\"");
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        if num.is_empty() || num.starts_with('-') {
            return Err(bad());
        }
        let num = num.strip_prefix('+').unwrap_or(num);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty()
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 9
        {
            return Err(bad());
        }
        // value = digits / 10^frac_len, in units of 10^-9 to stay exact.
        let digits: i128 = format!("{int}{frac}").parse().map_err(|_| bad())?;
        let nanos = digits
            .checked_mul(10i128.pow(9 - frac.len() as u32))
            .ok_or_else(bad)?;
        let (mul, div): (i128, i128) = match suffix {
            "" => (1, 1),
            "n" => (1, 1_000_000_000),
            "u" => (1, 1_000_000),
            "m" => (1, 1_000),
            "k" => (1_000, 1),
            "M" => (1_000_000, 1),
            "G" => (1_000_000_000, 1),
            "T" => (1_000_000_000_000, 1),
            "P" => (1_000_000_000_000_000, 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            e if e.starts_with(['e', 'E']) => {
                let exp: u32 = e[1..].parse().map_err(|_| bad())?;
                (10i128.checked_pow(exp).ok_or_else(bad)?, 1)
            }
            _ => return Err(bad()),
        };
        // nanos * mul / div is in 10^-9 units; a thousandth is 10^6 of those (rounded up,
        // as Kubernetes rounds a quantity up to its smallest unit).
        let n = nanos.checked_mul(mul).ok_or_else(bad)?;
        let per_milli = 1_000_000 * div;
        Ok(Quantity((n + per_milli - 1) / per_milli))
    }

    pub fn millis(self) -> i128 {
        self.0
    }
}

/// Compares two quantity strings; None if either does not parse.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(Quantity::parse(a).ok()?.cmp(&Quantity::parse(b).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        Quantity::parse(s).unwrap().millis()
    }

    #[test]
    fn parses_what_kubernetes_accepts() {
        assert_eq!(q("500m"), 500);
        assert_eq!(q("2"), 2000);
        assert_eq!(q("0.5"), 500);
        assert_eq!(q(".5"), 500);
        assert_eq!(q("1Ki"), 1024 * 1000);
        assert_eq!(q("256Mi"), 256 * (1 << 20) * 1000);
        assert_eq!(q("16Gi"), 16 * (1i128 << 30) * 1000);
        assert_eq!(q("1k"), 1_000_000);
        assert_eq!(q("1e3"), 1_000_000);
        assert_eq!(q("1G"), 1_000_000_000_000);
        assert_eq!(q("1u"), 1, "rounded up to a thousandth");
        for bad in ["", "-1", "abc", "1Qi", "1.2.3", "m", "1e"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} must not parse");
        }
        assert_eq!(compare("1Gi", "1000Mi"), Some(Ordering::Greater));
        assert_eq!(compare("1", "1000m"), Some(Ordering::Equal));
    }
}
