//! Everything that reads or writes Kubernetes: the Demo resource, provisioning,
//! sleep and wake, the controller and the sweep.

pub mod actions;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod lease;
pub mod notifier;
pub mod provisioner;
pub mod sleeper;
pub mod sweeper;
pub mod time;
