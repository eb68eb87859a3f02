//! The console's pages, one module per section; each handler reads through the service layer or
//! the store's read models and renders one askama template.

pub mod audit;
pub mod findings;
pub mod identity;
pub mod inventory;
pub mod jit;
pub mod overview;
pub mod reviews;
pub mod trust;
