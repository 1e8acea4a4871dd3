#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod access;
pub mod context;
mod error;
pub mod framing;
pub mod gateway;
mod hex;
pub mod mrtr;
pub mod records;
pub mod router;
pub mod schema;
pub mod server;
pub mod stream;
pub mod tcp;

pub use access::{Caller, CapabilityToken, Grant, Policy, RateLimit};
pub use context::{ClientLink, LogMessage, Logger};
pub use error::McpError;
pub use framing::StreamLimits;
pub use gateway::{Gateway, HttpConfig, HttpGateway, NetworkTools};
pub use mrtr::{InputNeeded, InputRound, Outcome, StateSealer};
pub use records::{MemoryRegistry, Registry, ServicePublisher, ServiceRecord, ToolRecord};
pub use router::{Candidate, Discovery, Query, RouteOptions, Routed, Router};
pub use server::{
    CallContext, CompletionRequest, JsonObject, McpServer, Progress, ProgressUpdate, Prompt,
    Resource, ResourceTemplate, ServerSettings, StreamControl, Tool, ToolCall, complete_from,
    tool_result,
};
pub use stream::{CallOptions, Connector, Era, McpClient, serve_stream};

/// The official MCP Rust SDK this crate builds on (protocol model types and engine).
pub use rmcp;
