//! Kernel variants: recipes (`kernels/*.yaml`) and their builds.

pub mod build;
pub mod flavor;
pub mod mail;
pub mod recipe;
pub mod selftests;
pub mod series;

pub use build::{build, BuiltKernel};
pub use flavor::Flavor;
pub use recipe::Recipe;
