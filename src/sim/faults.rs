//! Fault injection for the simulated API server, set from tests.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct FaultSettings {
    /// Fraction of requests answered with 500 InternalError.
    pub error_rate: f64,
    /// Fraction of requests answered with 429 TooManyRequests and Retry-After: 1.
    pub throttle_rate: f64,
    /// Fraction of updates and patches answered with 409 Conflict.
    pub conflict_rate: f64,
    /// Added to every request before it is served.
    pub latency: Duration,
    /// Watch events are held this long before they are sent: a watch cache lagging
    /// behind the writes, as a busy API server's does.
    pub watch_delay: Duration,
}

#[derive(Debug, Default)]
pub struct Faults {
    settings: Mutex<FaultSettings>,
}

/// What the server should do with one request.
#[derive(Debug, PartialEq)]
pub enum Injected {
    None,
    Error,
    Throttle,
    Conflict,
}

impl Faults {
    pub fn set(&self, s: FaultSettings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn clear(&self) {
        self.set(FaultSettings::default());
    }

    pub fn get(&self) -> FaultSettings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn roll(&self, is_write: bool) -> Injected {
        let s = self.get();
        let r = fastrand::f64();
        if r < s.error_rate {
            Injected::Error
        } else if r < s.error_rate + s.throttle_rate {
            Injected::Throttle
        } else if is_write && fastrand::f64() < s.conflict_rate {
            Injected::Conflict
        } else {
            Injected::None
        }
    }
}
