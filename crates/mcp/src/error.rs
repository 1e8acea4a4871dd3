//! The crate's error type.

use p2p_foundation_identity::IdentityError;

/// Everything that can go wrong in this crate outside a tool's own result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// Signing or verifying a record or token failed.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// An I/O error on a stream or listener.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The MCP session could not be established (handshake failed or the peer closed).
    #[error("mcp session setup failed: {0}")]
    Handshake(String),
    /// The remote side answered with a JSON-RPC error (policy denial, unknown tool,
    /// invalid arguments...). `code` is the JSON-RPC code, `message` the reason given.
    #[error("remote error {code}: {message}")]
    Remote {
        /// JSON-RPC error code.
        code: i32,
        /// The reason the remote gave.
        message: String,
    },
    /// The connection broke or the request could not be sent.
    #[error("connection to the provider failed: {0}")]
    Connection(String),
    /// The call did not complete within its deadline.
    #[error("deadline exceeded after {attempts} attempt(s); last error: {last}")]
    Deadline {
        /// Providers tried.
        attempts: usize,
        /// The last failure seen.
        last: String,
    },
    /// No provider of the requested tool is known (nothing in the registry matched).
    #[error(
        "no provider found for tool '{tool}'; is a service offering it registered and unexpired?"
    )]
    NoProvider {
        /// The tool asked for.
        tool: String,
    },
    /// Every provider failed.
    #[error("all {attempts} provider(s) of '{tool}' failed; last error: {last}")]
    AllProvidersFailed {
        /// The tool asked for.
        tool: String,
        /// Providers tried.
        attempts: usize,
        /// The last failure seen.
        last: String,
    },
    /// A record, schema or argument is invalid.
    #[error("invalid: {0}")]
    Invalid(String),
}
