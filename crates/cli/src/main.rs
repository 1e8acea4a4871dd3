//! `p2pf`: see `p2pf --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use p2p_foundation_cli::{Cli, Output, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = e.print();
            // Scripts asked for JSON: the usage error too, on stdout.
            if code == exit::USAGE && std::env::args_os().any(|a| a == "--json") {
                let value = serde_json::json!({
                    "error": {"kind": "usage", "message": usage_summary(&e), "exit_code": code}
                });
                Output::new(true).emit(&value, |_| String::new());
            }
            return ExitCode::from(code);
        }
    };
    let out = Output::new(cli.global.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("p2pf")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(p2p_foundation_cli::run(cli)) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The first line of clap's message, without its `error: ` prefix.
fn usage_summary(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}
