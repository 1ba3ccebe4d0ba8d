//! Everything that reads or writes Kubernetes: the Demo resource, provisioning,
//! sleep and wake, the controller and the sweep, warm pools and the slots that hold
//! the per-user and cluster-wide limits.

pub mod actions;
pub mod cache;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod lease;
pub mod meta;
pub mod notifier;
pub mod pool;
pub mod provisioner;
pub mod saving;
pub mod sleeper;
pub mod slots;
pub mod start;
pub mod sweeper;
pub mod time;
pub mod workloads;
