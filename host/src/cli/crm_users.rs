//! `pbx-host crm users …`, `crm associate`, `crm unassociate`: the CRM's
//! users (sync with progress, the list) and their associations with
//! extensions (one by hand, or the automatic proposal after confirmation).

use std::io::BufRead;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::out::{self, out, outln};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Read the CRM's active users again, with progress.
    Sync,
    /// The users with their extensions and association state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run a `crm users` subcommand.
pub async fn run(client: &AdminClient, plugin: &str, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Sync => sync(client, plugin).await,
        UsersCommand::List { json } => list(client, plugin, json).await,
    }
}

/// Start a sync and show its progress until it ends.
async fn sync(client: &AdminClient, plugin: &str) -> anyhow::Result<()> {
    let path = format!("/crm/{plugin}/users/sync");
    let mut job = client.post(&path, &json!({})).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} Syncing users [{bar:40}] {pos}/{len} ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    while job["running"].as_bool() == Some(true) {
        bar.set_length(job["total"].as_u64().unwrap_or(0));
        bar.set_position(job["fetched"].as_u64().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = client.get(&path).await?;
    }
    bar.finish_and_clear();
    if job["ok"].as_bool() == Some(true) {
        outln!("Synced {} users.", job["fetched"].as_u64().unwrap_or(0));
        Ok(())
    } else {
        bail!(
            "{}",
            job["error"].as_str().unwrap_or("the sync did not finish")
        )
    }
}

/// The users table.
async fn list(client: &AdminClient, plugin: &str, as_json: bool) -> anyhow::Result<()> {
    let list = client.get(&format!("/crm/{plugin}/users")).await?;
    if as_json {
        let entries = json!({"entries": list["entries"], "version": list["version"], "synced_at_ms": list["synced_at_ms"]});
        outln!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
        return Ok(());
    }
    let mut table = out::Table::new(&["USER", "E-MAIL", "EXTENSION", "STATE"]);
    for entry in list["entries"].as_array().into_iter().flatten() {
        table.row([
            out::field(&entry["user"]["name"], "?").into_owned(),
            out::field(&entry["user"]["email"], "-").into_owned(),
            out::field(&entry["extension"], "-").into_owned(),
            state(&entry["state"]).to_string(),
        ]);
    }
    table.print()?;
    Ok(())
}

fn state(value: &Value) -> &'static str {
    match value.as_str() {
        Some("Associated") => "associated",
        Some("Unassociated") => "-",
        Some("StaleUser") => "stale: user inactive or removed",
        Some("StaleExtension") => "stale: extension removed",
        _ => "?",
    }
}

/// The saved associations as `{user_id, extension}` pairs (stale ones
/// included: Save decides what to do with them).
fn current(list: &Value) -> Vec<Value> {
    list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let extension = e["extension"].as_str()?;
            Some(json!({"user_id": e["user"]["id"], "extension": extension}))
        })
        .collect()
}

/// The entry of the users list whose user `user` (an id or an e-mail
/// address) names. An id the list does not hold as typed may be another
/// spelling of a listed one (Salesforce's 15-character ids): the plugin
/// decides, through the lookup by user, which answers the extension of an
/// associated user, or refuses a malformed id with its fix.
async fn entry_of<'l>(
    client: &AdminClient,
    plugin: &str,
    list: &'l Value,
    user: &str,
) -> anyhow::Result<Option<&'l Value>> {
    let typed = user.trim();
    let wanted = typed.to_lowercase();
    let entries = list["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let exact = entries.iter().find(|e| {
        e["user"]["id"].as_str() == Some(typed)
            || e["user"]["email"]
                .as_str()
                .is_some_and(|m| m.trim().to_lowercase() == wanted)
    });
    if exact.is_some() || typed.is_empty() || typed.contains('@') {
        return Ok(exact);
    }
    let path = format!("/crm/{plugin}/associations/user/{}", path_segment(typed));
    let answer = client.get(&path).await?;
    Ok(answer["extension"]
        .as_str()
        .and_then(|x| entries.iter().find(|e| e["extension"].as_str() == Some(x))))
}

/// `text` percent-encoded as one path segment.
fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Set (or with `None` remove) one user's extension and save. A user not
/// in the list as typed is sent as typed: the plugin normalizes its id (or
/// refuses it, naming the fix), and what it saved is read back.
pub async fn associate(
    client: &AdminClient,
    plugin: &str,
    user: &str,
    extension: Option<&str>,
) -> anyhow::Result<()> {
    let list = client.get(&format!("/crm/{plugin}/users")).await?;
    let entry = entry_of(client, plugin, &list, user).await?;
    let typed = user.trim();
    let user_id = match (entry, extension) {
        (Some(entry), _) => entry["user"]["id"].as_str().unwrap_or_default().to_string(),
        (None, Some(_)) if !typed.is_empty() && !typed.contains('@') => typed.to_string(),
        (None, _) => bail!(
            "no synced user has the id or e-mail {user:?}; run `pbx-host crm users sync` and check `crm users list`"
        ),
    };
    let mut associations: Vec<Value> = current(&list)
        .into_iter()
        .filter(|a| a["user_id"].as_str() != Some(&user_id))
        .collect();
    if let Some(extension) = extension {
        associations.push(json!({"user_id": user_id, "extension": extension}));
    }
    let saved = client
        .put(
            &format!("/crm/{plugin}/associations"),
            &json!({"version": list["version"], "associations": associations}),
        )
        .await?;
    let who = |entry: &Value| {
        format!(
            "{} ({})",
            out::field(&entry["user"]["name"], "?"),
            out::field(&entry["user"]["id"], "?")
        )
    };
    match extension {
        Some(extension) => {
            // Read back who the plugin saved: a typed id may have become
            // another spelling.
            let after = client.get(&format!("/crm/{plugin}/users")).await?;
            let saved_entry = after["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["extension"].as_str() == Some(extension));
            let name = saved_entry.or(entry).map_or_else(|| user_id.clone(), who);
            outln!(
                "{name} is on extension {extension} (version {}).",
                saved["version"]
            )
        }
        None => outln!(
            "{} has no extension now (version {}).",
            entry.map_or_else(|| user_id.clone(), who),
            saved["version"]
        ),
    }
    Ok(())
}

/// Propose associations by e-mail, show them, save on confirmation.
pub async fn associate_auto(client: &AdminClient, plugin: &str, yes: bool) -> anyhow::Result<()> {
    let proposal = client
        .get(&format!("/crm/{plugin}/associations/proposal"))
        .await?;
    let list = client.get(&format!("/crm/{plugin}/users")).await?;
    let name_of = |id: &str| {
        list["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["user"]["id"].as_str() == Some(id))
            .and_then(|e| {
                e["user"]["name"]
                    .as_str()
                    .map(|n| out::text(n).into_owned())
            })
            .unwrap_or_else(|| out::text(id).into_owned())
    };
    let matches = proposal["matches"].as_array().cloned().unwrap_or_default();
    outln!("Matched by e-mail ({}):", matches.len());
    let mut table = out::Table::new(&["USER", "EXTENSION"]);
    for m in &matches {
        table.row([
            name_of(m["user_id"].as_str().unwrap_or("?")),
            out::field(&m["extension"], "?").into_owned(),
        ]);
    }
    table.print()?;
    let unmatched = proposal["unmatched"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !unmatched.is_empty() {
        outln!("Not matched ({}):", unmatched.len());
        let mut table = out::Table::new(&["USER", "WHY"]);
        for u in &unmatched {
            table.row([
                name_of(u["user_id"].as_str().unwrap_or("?")),
                reason(&u["reason"]),
            ]);
        }
        table.print()?;
    }
    if matches.is_empty() {
        outln!("Nothing to associate.");
        return Ok(());
    }
    if !yes {
        // `out!` flushes; a closed stdout must not stop the answer being
        // read and acted on.
        out!("Save these associations? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            outln!("Nothing saved.");
            return Ok(());
        }
    }
    // The proposal replaces what it covers; other associations (made by
    // hand, e.g. for users without an e-mail) stay.
    let covered = |a: &Value| {
        matches
            .iter()
            .any(|m| m["user_id"] == a["user_id"] || m["extension"] == a["extension"])
    };
    let mut associations: Vec<Value> = current(&list).into_iter().filter(|a| !covered(a)).collect();
    associations.extend(matches.iter().cloned());
    let saved = client
        .put(
            &format!("/crm/{plugin}/associations"),
            &json!({"version": proposal["version"], "associations": associations}),
        )
        .await?;
    outln!(
        "Saved {} associations, {} of them proposed (version {}).",
        associations.len(),
        matches.len(),
        saved["version"]
    );
    Ok(())
}

fn reason(value: &Value) -> String {
    if let Some(kind) = value.as_str() {
        return match kind {
            "NoEmail" => "has no e-mail address".into(),
            "NoExtension" => "no extension has this e-mail address".into(),
            other => out::text(other).into_owned(),
        };
    }
    if let Some(list) = value.get("SharedEmail") {
        return format!(
            "several extensions share the e-mail address: {}",
            join(list)
        );
    }
    if let Some(list) = value.get("SharedUserEmail") {
        return format!("other users share the e-mail address: {}", join(list));
    }
    out::text(&value.to_string()).into_owned()
}

fn join(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(out::text)
        .collect::<Vec<_>>()
        .join(", ")
}
