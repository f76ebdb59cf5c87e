//! AsyncAPI documents: parsing, local `$ref` resolution, traits, and one
//! normalized model shared by 2.x and 3.0.

pub mod avro;
mod diagnostics;
pub mod load;
mod model;
mod positions;
mod refs;
mod rules;
pub mod schema;
pub mod sources;
mod traits;
mod v2;
mod v3;

pub use diagnostics::{Diagnostic, LoadError, Severity};
pub use load::{load, load_with, LoadOptions, SourceFormat, SUPPORTED_VERSIONS};
pub use model::{Channel, Document, Message, Parameter, Server};

#[cfg(test)]
mod tests;
