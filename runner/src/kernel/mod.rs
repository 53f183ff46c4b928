//! Kernel variants: recipes (`kernels/*.yaml`) and their builds.

pub mod build;
pub mod recipe;
pub mod selftests;

pub use build::{build, BuiltKernel};
pub use recipe::Recipe;
