//! showroom: live product demos on Kubernetes.
//!
//! - [`domain`]: lifecycle policy, templates, users: no kube, no axum.
//! - [`cluster`]: the Demo resource and every Kubernetes read and write.
//! - [`web`]: the JSON API.
//! - [`sim`]: the simulated host cluster for tests and `showroom dev`.

pub mod app;
pub mod cluster;
pub mod domain;
pub mod k8s;
pub mod metrics;
pub mod sim;
pub mod web;
