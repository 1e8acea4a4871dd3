//! `p2pf id`: the node identity in the data directory.

use std::path::Path;

use serde::Serialize;

use crate::error::CliError;
use crate::output::Output;
use crate::paths;

#[derive(Serialize)]
struct Identity {
    peer_id: String,
    key_file: String,
    created: bool,
}

pub(crate) fn run(out: Output, data_dir: &Path) -> Result<(), CliError> {
    let (keypair, path, created) = paths::load_identity(data_dir)?;
    let id = Identity {
        peer_id: keypair.peer_id().to_string(),
        key_file: path.display().to_string(),
        created,
    };
    out.emit(&id, |id| {
        let note = if id.created { " (new)" } else { "" };
        format!("{}\nkey file: {}{note}", id.peer_id, id.key_file)
    });
    Ok(())
}
