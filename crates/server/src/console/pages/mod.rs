//! The console's pages, one module per section; each handler reads through the service layer or
//! the store's read models and renders one askama template.

pub mod audit;
pub mod findings;
pub mod governance;
pub mod identity;
pub mod inventory;
pub mod overview;
