//! The one place where Kubernetes' timestamps (jiff, in k8s-openapi) meet showroom's
//! (chrono, which the domain and the `cron` crate speak).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub fn to_chrono(t: &Time) -> DateTime<Utc> {
    let ts = t.0;
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

pub fn created_at(meta: &kube::core::ObjectMeta) -> Option<DateTime<Utc>> {
    meta.creation_timestamp.as_ref().map(to_chrono)
}

pub fn deleted_at(meta: &kube::core::ObjectMeta) -> Option<DateTime<Utc>> {
    meta.deletion_timestamp.as_ref().map(to_chrono)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly() {
        let j: jiff::Timestamp = "2026-11-26T12:34:56.5Z".parse().unwrap();
        let c = to_chrono(&Time(j));
        assert_eq!(c.to_rfc3339(), "2026-11-26T12:34:56.500+00:00");
    }
}
