//! `p2pf words encode|decode`.

use std::net::SocketAddr;

use p2p_foundation::WordAddress;
use serde::Serialize;

use crate::cli::WordsCommand;
use crate::error::CliError;
use crate::output::Output;

#[derive(Serialize)]
struct Words {
    addr: SocketAddr,
    words: String,
    count: usize,
    /// Typed words read as another (typo corrections), when decoding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    corrections: Vec<String>,
}

pub(crate) fn run(out: Output, cmd: &WordsCommand) -> Result<(), CliError> {
    let result = match cmd {
        WordsCommand::Encode { addr } => {
            let w = WordAddress::from(*addr);
            Words {
                addr: w.to_socket_addr(),
                words: w.to_string(),
                count: w.words().len(),
                corrections: Vec::new(),
            }
        }
        WordsCommand::Decode { words } => {
            let text = words.join(" ");
            let (w, corrections) = WordAddress::parse_with_corrections(&text)
                .map_err(|e| CliError::Usage(format!("'{text}': {e}")))?;
            Words {
                addr: w.to_socket_addr(),
                words: w.to_string(),
                count: w.words().len(),
                corrections: corrections.iter().map(ToString::to_string).collect(),
            }
        }
    };
    out.emit(&result, |r| match cmd {
        WordsCommand::Encode { .. } => r.words.clone(),
        WordsCommand::Decode { .. } => {
            let mut s = r.addr.to_string();
            for c in &r.corrections {
                s.push_str(&format!("\nnote: {c}"));
            }
            s
        }
    });
    Ok(())
}
