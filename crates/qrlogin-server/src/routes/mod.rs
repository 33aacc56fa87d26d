//! HTTP handlers, one module per audience.

pub mod admin;
pub mod browser;
pub mod extract;
pub mod guard;
pub mod ops;
pub mod pages;
pub mod phone;
pub mod place;
pub mod session;
pub mod sessions;
