//! Honest waits: how long a start or a wake will take, from what showroom measured for
//! the template, and what to say once it takes longer than that.

use super::duration::human;
use chrono::Duration;

/// A duration as a wait is told: "8s", never "0s" (a sub-second wake is "1s").
pub fn about(d: Duration) -> String {
    human(d.max(Duration::seconds(1)))
}

/// The median of measured times (None: nothing measured yet).
pub fn median(mut times: Vec<Duration>) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    times.sort();
    Some(times[times.len() / 2])
}

/// A wait in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// The median of the template's recent starts (or wakes); None if none measured.
    pub expected: Option<Duration>,
    /// How long it has been going on.
    pub elapsed: Duration,
    /// When it ends in Failed instead (the template's provisioning or wake timeout).
    pub gives_up_after: Duration,
}

impl Wait {
    /// Past the usual time.
    pub fn is_late(&self) -> bool {
        self.expected.is_some_and(|e| self.elapsed > e)
    }

    /// What the person waiting reads.
    pub fn describe(&self) -> String {
        let limit = human(self.gives_up_after);
        match self.expected {
            None => format!(
                "This usually takes a minute or two. If something goes wrong, it stops after {limit} and says why."
            ),
            Some(e) if self.elapsed <= e => {
                let left = (e - self.elapsed).max(Duration::seconds(1));
                format!(
                    "Usually ready in about {}: about {} left.",
                    about(e),
                    about(left)
                )
            }
            Some(e) => format!(
                "Taking longer than usual (usually about {}, {} so far). Still working on it; if something goes wrong, it stops after {limit} and says why.",
                about(e),
                human(self.elapsed)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_measured_times() {
        assert_eq!(median(vec![]), None);
        let s = Duration::seconds;
        assert_eq!(median(vec![s(40), s(10), s(300)]), Some(s(40)));
        assert_eq!(median(vec![s(8), s(6)]), Some(s(8)));
    }

    #[test]
    fn a_wait_says_how_long_and_admits_when_it_is_late() {
        let s = Duration::seconds;
        let w = |expected, elapsed| Wait {
            expected,
            elapsed: s(elapsed),
            gives_up_after: Duration::minutes(10),
        };
        assert_eq!(
            w(Some(s(40)), 15).describe(),
            "Usually ready in about 40s: about 25s left."
        );
        assert!(!w(Some(s(40)), 15).is_late());
        let late = w(Some(s(40)), 95);
        assert!(late.is_late());
        assert!(
            late.describe()
                .starts_with("Taking longer than usual (usually about 40s, 1m so far)"),
            "{}",
            late.describe()
        );
        assert!(late.describe().contains("stops after 10m"));
        assert!(w(None, 5).describe().contains("a minute or two"));
    }
}
