//! The domain: what a demo is and how long it lives. No kube, no axum.

pub mod brand;
pub mod duration;
pub mod lifecycle;
pub mod pool;
pub mod quantity;
pub mod resources;
pub mod saved;
pub mod share;
pub mod template;
pub mod users;
pub mod waits;
