//! `pbx-host call …`: simulate a call (its events through the admin API),
//! look a caller up, click-to-call, and the journal's dead letters (call
//! events the host gave up delivering: list, retry, discard).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::AdminClient;
use super::out::{self, outln};
use crate::now_ms;

#[derive(Subcommand)]
pub enum CallCommand {
    /// Send a call's events as the PBX would: ringing, answered (unless
    /// missed) and ended, with consistent timestamps.
    Simulate(Simulate),
    /// Who is calling: the CRM's record for a number.
    Lookup {
        /// The number, in any format.
        number: String,
    },
    /// Click-to-call: ring an extension, then dial the number.
    Dial {
        /// The extension that rings first.
        #[arg(long)]
        extension: String,
        /// The number to dial, in any format.
        #[arg(long)]
        number: String,
    },
    /// Let the plugins deliver pending call logs now; show the counts.
    RunPending,
    /// The call events the host gave up delivering to a plugin.
    DeadLetters {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deliver a dead letter again, once (removed when the plugin answers).
    Retry {
        /// The dead letter's id, from `call dead-letters`.
        id: String,
    },
    /// Forget a dead letter.
    Discard {
        /// The dead letter's id, from `call dead-letters`.
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Inbound,
    Outbound,
    Internal,
}

#[derive(clap::Args)]
pub struct Simulate {
    /// The call's direction.
    #[arg(long, value_enum, default_value = "inbound")]
    direction: DirectionArg,
    /// The caller's number (inbound calls).
    #[arg(long, conflicts_with = "to")]
    from: Option<String>,
    /// The called number (outbound calls).
    #[arg(long)]
    to: Option<String>,
    /// The extension on the PBX side.
    #[arg(long)]
    extension: String,
    /// How long it rang before it was answered, e.g. 3s, 500ms.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    answer_after: Duration,
    /// How long the conversation lasted, e.g. 60s, 2m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// The disposition: answered, or busy / no-answer / missed / failed for a
    /// call nobody answered.
    #[arg(long, default_value = "answered")]
    disposition: String,
    /// A link to the recording.
    #[arg(long)]
    recording_url: Option<String>,
    /// The call id (default: a new random one).
    #[arg(long)]
    call_id: Option<String>,
    /// Wait in real time between the events instead of sending them at once
    /// with timestamps in the past.
    #[arg(long)]
    real_time: bool,
}

/// Run a `call` subcommand.
pub async fn run(client: &AdminClient, command: CallCommand) -> anyhow::Result<()> {
    match command {
        CallCommand::Simulate(s) => simulate(client, s).await,
        CallCommand::Lookup { number } => {
            let path = format!("/calls/lookup?number={}", encode(&number));
            let found = client.get(&path).await?;
            match found["name"].as_str() {
                Some(name) => outln!(
                    "{} ({} {}) {}",
                    out::text(name),
                    out::field(&found["best"]["object_type"], "?"),
                    out::field(&found["best"]["id"], "?"),
                    out::field(&found["best"]["url"], "")
                ),
                None => outln!("Unknown caller {}", out::field(&found["number"], &number)),
            }
            for other in found["others"].as_array().into_iter().flatten() {
                outln!(
                    "  also: {} ({} {})",
                    out::field(&other["name"], "?"),
                    out::field(&other["object_type"], "?"),
                    out::field(&other["id"], "?")
                );
            }
            Ok(())
        }
        CallCommand::Dial { extension, number } => {
            let o = client
                .post(
                    "/calls/dial",
                    &json!({"extension": extension, "number": number}),
                )
                .await?;
            outln!(
                "Dialing {} from extension {}.",
                out::field(&o["number"], "?"),
                out::field(&o["extension"], "?")
            );
            Ok(())
        }
        CallCommand::RunPending => {
            let report = client.post("/calls/run-pending", &json!({})).await?;
            for p in report["plugins"].as_array().into_iter().flatten() {
                outln!(
                    "{}: call logs waiting: {}, call events queued in the host: {}{}",
                    out::field(&p["plugin"], "?"),
                    p["pending_call_logs"]
                        .as_u64()
                        .map_or("?".into(), |n| n.to_string()),
                    p["queued_call_events"].as_u64().unwrap_or(0),
                    p["error"]
                        .as_str()
                        .map(|e| format!(" ({})", out::text(e)))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        CallCommand::DeadLetters { json } => dead_letters(client, json).await,
        CallCommand::Retry { id } => {
            let answer = client
                .post(
                    &format!("/calls/dead-letters/{}/retry", encode(&id)),
                    &json!({}),
                )
                .await?;
            let delivery = &answer["delivery"];
            if delivery["ok"].as_bool() == Some(true) {
                outln!(
                    "Delivered to {}; the dead letter is gone.",
                    out::field(&delivery["plugin"], "?")
                );
            } else {
                outln!(
                    "{} refused it ({}); the dead letter is gone.",
                    out::field(&delivery["plugin"], "?"),
                    out::field(&delivery["error"], "no reason given")
                );
            }
            Ok(())
        }
        CallCommand::Discard { id } => {
            client
                .delete(&format!("/calls/dead-letters/{}", encode(&id)))
                .await?;
            outln!("Dead letter {} discarded.", out::text(&id));
            Ok(())
        }
    }
}

/// The dead letters as a table (or JSON).
async fn dead_letters(client: &AdminClient, as_json: bool) -> anyhow::Result<()> {
    let answer = client.get("/calls/dead-letters").await?;
    if as_json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Ok(());
    }
    let letters = answer["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if letters.is_empty() {
        outln!("No dead letters.");
        return Ok(());
    }
    let mut table = out::Table::new(&["ID", "PLUGIN", "CALL", "PHASE", "ATTEMPTS", "WHY"]);
    for l in &letters {
        table.row([
            out::field(&l["id"], "?").into_owned(),
            out::field(&l["plugin"], "?").into_owned(),
            out::field(&l["call_id"], "?").into_owned(),
            out::field(&l["phase"], "?").into_owned(),
            l["attempts"].as_u64().unwrap_or(0).to_string(),
            format!(
                "{}; last error: {}",
                out::field(&l["reason"], "?"),
                out::field(&l["last_error"], "?")
            ),
        ]);
    }
    table.print()?;
    outln!(
        "{} dead letters (kept at most {}). `pbx-host call retry ID` delivers one again, `call discard ID` forgets it.",
        letters.len(),
        answer["limits"]["dead_letters_max"].as_u64().unwrap_or(0)
    );
    Ok(())
}

async fn simulate(client: &AdminClient, s: Simulate) -> anyhow::Result<()> {
    let (direction, number) = match s.direction {
        DirectionArg::Inbound => ("inbound", s.from.or(s.to)),
        DirectionArg::Outbound => ("outbound", s.to.or(s.from)),
        DirectionArg::Internal => ("internal", s.from.or(s.to)),
    };
    let number = match (direction, number) {
        ("internal", n) => n.unwrap_or_default(),
        (_, Some(n)) => n,
        ("inbound", None) => {
            bail!("give the caller's number with --from, e.g. --from +14155550100")
        }
        _ => bail!("give the called number with --to, e.g. --to +14155550100"),
    };
    let missed = !matches!(s.disposition.as_str(), "answered" | "completed");
    let call_id = s
        .call_id
        .unwrap_or_else(|| format!("sim-{}", hex::encode(rand::random::<[u8; 8]>())));
    let now = now_ms();
    let ring = s.answer_after.as_millis() as u64;
    let talk = if missed {
        0
    } else {
        s.duration.as_millis() as u64
    };
    // Sent at once, the call happened in the past; in real time, it starts now.
    let started = if s.real_time {
        now
    } else {
        now.saturating_sub(ring + talk)
    };
    let answered = (!missed).then_some(started + ring);
    let ended = started + ring + talk;
    let base = json!({
        "call_id": call_id,
        "direction": direction,
        "external_number": number,
        "extension": s.extension,
        "started_at_ms": started,
    });
    let mut phases = vec![("ringing", json!({}))];
    if let Some(answered) = answered {
        phases.push(("answered", json!({"answered_at_ms": answered})));
    }
    phases.push((
        "ended",
        json!({
            "answered_at_ms": answered,
            "ended_at_ms": ended,
            "disposition": s.disposition,
            "recording_url": s.recording_url,
        }),
    ));
    outln!("Call {call_id}:");
    for (phase, extra) in phases {
        if s.real_time {
            let at = match phase {
                "answered" => answered.unwrap_or(started),
                "ended" => ended,
                _ => started,
            };
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let mut event = base.clone();
        event["phase"] = json!(phase);
        if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
            e.extend(x.clone());
        }
        let answer = client
            .post("/calls/events", &event)
            .await
            .with_context(|| format!("the {phase} event was refused"))?;
        for line in outcome(&answer) {
            outln!("  {phase:<9} {line}");
        }
    }
    Ok(())
}

/// What each plugin did with one event, a line per plugin, e.g.
/// "salesforce: Task logged on Contact Ada Lovelace (003…)".
fn outcome(answer: &Value) -> Vec<String> {
    let plugins: Vec<String> = answer["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let id = out::field(&p["plugin"], "?");
            if p["ok"].as_bool() == Some(true) {
                let done: Vec<String> = p["outcome"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(in_words)
                    .collect();
                if done.is_empty() {
                    format!("{id}: took the event")
                } else {
                    format!("{id}: {}", done.join("; "))
                }
            } else {
                format!(
                    "{id}: {}{}",
                    out::field(&p["error"], "failed"),
                    if p["queued"].as_bool() == Some(true) {
                        " (kept for another delivery)"
                    } else {
                        ""
                    }
                )
            }
        })
        .collect();
    if plugins.is_empty() {
        vec!["no CRM plugin is installed".into()]
    } else {
        plugins
    }
}

/// One outcome (`{action, detail}`, docs/API.md) in words: the plugin's
/// detail says what it did; skipped and queued say so first.
fn in_words(outcome: &Value) -> String {
    let detail = out::field(&outcome["detail"], "");
    let action = outcome["action"].as_str().unwrap_or("");
    let lead = match action {
        "Skipped" => "skipped",
        "Queued" => "queued for retry",
        "Logged" => "logged",
        "Updated" => "updated",
        "PoppedUp" => "pop-up sent",
        _ => "took the event",
    };
    match (action, detail.is_empty()) {
        (_, true) => lead.to_string(),
        ("Skipped" | "Queued", false) => format!("{lead}: {detail}"),
        _ => detail.into_owned(),
    }
}

/// `3s`, `500ms`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 3s, 500ms or 2m"))?;
    Ok(match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit; write e.g. 3s, 500ms or 2m")),
    })
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_says_in_words_what_it_did() {
        let answer = json!({"plugins": [
            {"plugin": "salesforce", "ok": true, "outcome": [
                {"action": "Logged", "detail": "Task logged on Contact Ada Lovelace (003A)"},
                {"action": "Skipped", "detail": "extension 1003 is not associated with a Salesforce user"},
            ]},
            {"plugin": "old", "ok": true, "outcome": [{"action": "Taken", "detail": ""}]},
            {"plugin": "evil", "ok": true, "outcome": [{"action": "PoppedUp", "detail": "x\u{1b}[2J"}]},
            {"plugin": "down", "ok": false, "queued": true, "error": "deadline"},
        ]});
        assert_eq!(
            outcome(&answer),
            [
                "salesforce: Task logged on Contact Ada Lovelace (003A); skipped: extension 1003 is not associated with a Salesforce user",
                "old: took the event",
                "evil: x\\u{1b}[2J",
                "down: deadline (kept for another delivery)",
            ]
        );
        assert_eq!(
            outcome(&json!({"plugins": []})),
            ["no CRM plugin is installed"]
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}
