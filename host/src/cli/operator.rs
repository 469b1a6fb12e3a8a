//! `pbx-host operator …`: the operator's own credential, through the
//! operator API (the operator token in the data directory).

use clap::Subcommand;
use serde_json::json;

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Replace the operator token (it leaked, or is rotated on a
    /// schedule). Prints the new one; each replica's
    /// DATA_DIR/operator-token holds it too, and the old one stops working.
    NewToken {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: AdminClient, command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::NewToken { json } => {
            let issued = client.post("/token", &json!({})).await?;
            if json {
                return print_json(&issued);
            }
            // The token first, as `tenant new-token` prints one.
            outln!(
                "the new operator token (the old one no longer works; DATA_DIR/operator-token holds the new one): {}",
                out::field(&issued["operator_token"], "?")
            );
        }
    }
    Ok(())
}
