//! `pbx-host network …`: the PBX's Homepage URL (from which the Callback
//! URLs are composed) through the admin API, with the warnings it earns.

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// The Homepage URL in effect, where it comes from, and its warnings.
    Show {
        /// Print JSON (the admin API's `GET /api/network`).
        #[arg(long)]
        json: bool,
    },
    /// Set the Homepage URL (it wins over `serve --public-url`).
    Set {
        /// The PBX's address as browsers reach it, e.g. https://pbx.example.com.
        #[arg(long, required_unless_present = "reset", conflicts_with = "reset")]
        homepage_url: Option<String>,
        /// Forget the Homepage URL set: `serve --public-url` applies again.
        #[arg(long)]
        reset: bool,
    },
}

/// The network settings for a person.
fn prose(view: &Value) -> Vec<String> {
    let mut lines = vec![
        format!("Homepage URL: {}", out::field(&view["homepage_url"], "?")),
        match view["source"].as_str() {
            Some("administrator") => format!(
                "  set by the administrator (serve --public-url is {})",
                out::field(&view["public_url"], "?")
            ),
            _ => "  from serve --public-url (or the address the host listens on)".to_string(),
        },
        format!(
            "Callback URL: {}",
            out::field(&view["callback_url_template"], "?")
        ),
    ];
    for warning in view["warnings"].as_array().into_iter().flatten() {
        lines.push(format!("warning: {}", out::field(warning, "")));
    }
    lines
}

pub async fn run(client: AdminClient, command: NetworkCommand) -> anyhow::Result<()> {
    let view = match command {
        NetworkCommand::Show { json: true } => return print_json(&client.get("/network").await?),
        NetworkCommand::Show { json: false } => client.get("/network").await?,
        NetworkCommand::Set { homepage_url, .. } => {
            // No URL means --reset (clap requires one of them).
            client
                .put("/network", &json!({ "homepage_url": homepage_url }))
                .await?
        }
    };
    for line in prose(&view) {
        outln!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_read_as_prose_with_their_warnings() {
        let view = json!({
            "homepage_url": "http://192.0.2.10:8080",
            "source": "administrator",
            "public_url": "https://pbx.example.com",
            "callback_url_template": "http://192.0.2.10:8080/crm/{plugin}/oauth/callback",
            "warnings": ["It is not https.", "192.0.2.10 is an IP address."],
        });
        assert_eq!(
            prose(&view),
            vec![
                "Homepage URL: http://192.0.2.10:8080",
                "  set by the administrator (serve --public-url is https://pbx.example.com)",
                "Callback URL: http://192.0.2.10:8080/crm/{plugin}/oauth/callback",
                "warning: It is not https.",
                "warning: 192.0.2.10 is an IP address.",
            ]
        );
    }
}
