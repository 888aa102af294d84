//! The hub repository: the bare `hub.git` driven through git2, its seeding
//! from the workspace, and the landing protocol that keeps trunk linear.

pub mod land;
pub mod repo;
