//! One module per command.

pub(crate) mod demo;
pub(crate) mod id;
pub(crate) mod node;
pub(crate) mod words;
