//! [`CliError`]: what can go wrong in a command, and the documented exit code of each kind.

use std::path::PathBuf;

/// The exit codes of `p2pf`, documented in `p2pf --help` and the README.
pub mod exit {
    /// Everything worked.
    pub const SUCCESS: u8 = 0;
    /// An operation failed: a demo step, a tool call, a publish.
    pub const FAILURE: u8 = 1;
    /// The command line or a value on it is wrong: an unknown flag, malformed words, a
    /// malformed peer id, JSON that does not parse.
    pub const USAGE: u8 = 2;
    /// A peer could not be reached: every bootstrap peer failed, a dial timed out, the
    /// peer proved another identity.
    pub const UNREACHABLE: u8 = 3;
    /// Nothing was found: no record under a key, no provider of a tool.
    pub const NOT_FOUND: u8 = 4;
    /// A local file or directory could not be used: the data directory, the identity
    /// file, the configuration file.
    pub const LOCAL: u8 = 5;
}

/// A command's failure; [`CliError::exit_code`] is the process exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A value on the command line (or in the configuration) is wrong.
    #[error("{0}")]
    Usage(String),
    /// A peer could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Nothing was found.
    #[error("{0}")]
    NotFound(String),
    /// A local file or directory could not be used.
    #[error("{what} {}: {source}", path.display())]
    Local {
        /// What was being done, e.g. "creating the data directory".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The node failed.
    #[error("{0}")]
    Node(p2p_foundation::Error),
    /// An operation failed (a demo step names itself).
    #[error("{0}")]
    Failed(String),
}

impl From<p2p_foundation::Error> for CliError {
    fn from(e: p2p_foundation::Error) -> Self {
        Self::Node(e)
    }
}

impl CliError {
    /// The process exit code for this failure (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        use p2p_foundation::Error as E;
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Unreachable(_) => exit::UNREACHABLE,
            Self::NotFound(_) => exit::NOT_FOUND,
            Self::Local { .. } => exit::LOCAL,
            Self::Failed(_) => exit::FAILURE,
            Self::Node(e) => match e {
                E::Bootstrap { .. }
                | E::Timeout { .. }
                | E::NoAddress { .. }
                | E::Transport(_)
                | E::SelfAddress { .. } => exit::UNREACHABLE,
                E::InvalidPeerAddr(_) | E::InvalidAddress { .. } | E::InvalidArguments(_) => {
                    exit::USAGE
                }
                E::Identity(_) => exit::LOCAL,
                _ => exit::FAILURE,
            },
        }
    }

    /// A one-word name of the failure's kind, as `--json` reports it.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            exit::USAGE => "usage",
            exit::UNREACHABLE => "unreachable",
            exit::NOT_FOUND => "not_found",
            exit::LOCAL => "local",
            _ => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_documented_code() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Unreachable("x".into()).exit_code(), 3);
        assert_eq!(CliError::NotFound("x".into()).exit_code(), 4);
        let local = CliError::Local {
            what: "reading",
            path: "/nope".into(),
            source: std::io::Error::other("gone"),
        };
        assert_eq!((local.exit_code(), local.kind()), (5, "local"));
        assert_eq!(local.to_string(), "reading /nope: gone");
        assert_eq!(CliError::Failed("x".into()).exit_code(), 1);
        let shut = CliError::from(p2p_foundation::Error::Shutdown);
        assert_eq!((shut.exit_code(), shut.kind()), (1, "failed"));
    }
}
