//! AsyncAPI documents: parsing, local `$ref` resolution, traits, and one
//! normalized model shared by 2.x and 3.0.

mod diagnostics;
pub mod load;
mod model;
mod refs;
mod traits;
mod v2;
mod v3;

pub use diagnostics::{Diagnostic, LoadError};
pub use load::{load, SourceFormat, SUPPORTED_VERSIONS};
pub use model::{Channel, Document, Message, Parameter, Server};

#[cfg(test)]
mod tests;
