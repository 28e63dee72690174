//! Git: change detection for monorepos and path filters (shells out to `git`).

pub mod changed;

pub use changed::{ChangedError, changed_files, changed_packages};
