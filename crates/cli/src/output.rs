//! Human or JSON output: every command prints through [`Output`], so `--json` covers all.

use std::io::Write as _;

use serde::Serialize;

use crate::error::CliError;

/// Where a command's results go: stdout, as text for people or as one JSON document per
/// line for scripts (`--json`). Logs never go here (they go to stderr).
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text output when `json` is false, JSON lines when it is true.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether the output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as one JSON line, or the text `human` makes from it.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        let line = if self.json {
            match serde_json::to_string(value) {
                Ok(s) => s,
                // Our own types always serialise; say so rather than print nothing.
                Err(e) => format!("{{\"error\":{{\"kind\":\"failed\",\"message\":\"{e}\"}}}}"),
            }
        } else {
            human(value)
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (`p2pf … | head`) is not an error of the command.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Prints a text line for people; nothing in JSON mode.
    pub fn say(&self, text: impl std::fmt::Display) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    /// Reports a failure: the message on stderr, and in JSON mode also
    /// `{"error":{"kind":…,"message":…,"exit_code":…}}` on stdout.
    pub fn error(&self, err: &CliError) {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        eprintln!("error: {message}");
        if self.json {
            let value = serde_json::json!({
                "error": {
                    "kind": err.kind(),
                    "message": message,
                    "exit_code": err.exit_code(),
                }
            });
            self.emit(&value, |_| String::new());
        }
    }
}
