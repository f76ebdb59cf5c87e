//! Webhook rules that need no actor: which callback URLs are allowed, how a
//! delivery is signed, and how an endpoint's answer is judged.

pub mod callback;
pub mod delivery;

pub use callback::{check_callback_url, refused_literal, CallbackError, PublicOnlyResolver};
pub use delivery::{sign, Verdict};
