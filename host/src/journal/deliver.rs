//! Delivering one call event to every installed CRM plugin, and what each
//! did with it; a call that failed in the runtime is kept for the ticker
//! (or, past the journal's limits, as a dead letter).

use serde::Serialize;

use super::{Journal, Kept};
use crate::call_input::phase_name;
use crate::runtime::CallError;
use crate::runtime::wit::{CallEvent, EventAction, EventOutcome, Phase};

/// At most this many outcomes of one plugin are kept per event, each
/// detail at most [`OUTCOME_TEXT`] characters: they are the plugin's words,
/// shown to the administrator.
pub const OUTCOMES_MAX: usize = 16;
/// The longest outcome detail, in characters.
pub const OUTCOME_TEXT: usize = 256;

/// What happened to an event at one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The plugin.
    pub plugin: String,
    /// The plugin took the event.
    pub ok: bool,
    /// Kept in the host's retry queue (the call itself failed).
    pub queued: bool,
    /// Moved to the dead letters instead (the queue was full, or the event
    /// ran out of attempts or time): the dead letter's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// What the plugin did with the event, in its words (pbx:crm 0.4.0 on;
    /// one `Taken` outcome for older plugins); when the host kept the event,
    /// one `Queued` outcome saying so. Empty when the plugin refused it.
    pub outcome: Vec<EventOutcome>,
    /// The plugin's or the runtime's error kind, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Why not, naming the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The whole plugin call, in microseconds.
    pub call_us: u64,
    /// Of that, time spent in the plugin's outbound HTTP (the CRM's time).
    pub http_us: u64,
    /// Of that, time the call ran on a CPU (host and plugin work, no
    /// waiting), in microseconds.
    pub busy_us: u64,
    /// The plugin answered (took the event, or refused it): it has seen it.
    #[serde(skip)]
    pub answered: bool,
}

impl Journal {
    /// Deliver `event` to every installed plugin; a failed call is queued.
    pub async fn deliver(&self, event: &CallEvent) -> Vec<Delivery> {
        let mut out = Vec::new();
        for plugin in self.runtime.plugin_ids() {
            out.push(self.deliver_to(&plugin, event).await);
        }
        // Active in the registry but not loaded on this replica yet: kept
        // for when it is (the journal's lease holder delivers it then).
        for plugin in self.runtime.lagging() {
            out.push(self.keep_for_later(&plugin, event));
        }
        if event.phase == Phase::Ended {
            self.kick();
        }
        out
    }

    /// Keep `event` in the retry queue for `plugin`, which this replica has
    /// not loaded yet.
    fn keep_for_later(&self, plugin: &str, event: &CallEvent) -> Delivery {
        let message = format!("{plugin} is still being loaded on this replica");
        let kept = self.enqueue(plugin, event, &message);
        let queued = matches!(kept, Kept::Queued);
        Delivery {
            plugin: plugin.to_string(),
            ok: false,
            queued,
            dead_letter: match kept {
                Kept::Dead(id) => Some(id),
                _ => None,
            },
            outcome: if queued {
                vec![EventOutcome {
                    action: EventAction::Queued,
                    detail: "the host keeps the event and delivers it again".into(),
                }]
            } else {
                Vec::new()
            },
            kind: Some("loading".into()),
            error: Some(format!(
                "{message}; the host keeps the event and delivers it once loaded"
            )),
            call_us: 0,
            http_us: 0,
            busy_us: 0,
            answered: false,
        }
    }

    /// Deliver `event` to `plugin`; a call failing in the runtime is kept
    /// (queued, or a dead letter).
    pub(super) async fn deliver_to(&self, plugin: &str, event: &CallEvent) -> Delivery {
        self.deliver_once(plugin, event, true).await
    }

    /// Deliver `event` to `plugin`; with `keep`, a call failing in the
    /// runtime goes to the retry queue (or the dead letters).
    pub(super) async fn deliver_once(
        &self,
        plugin: &str,
        event: &CallEvent,
        keep: bool,
    ) -> Delivery {
        let (result, timing) = self
            .runtime
            .plugin(plugin)
            .on_call_event(event)
            .timed()
            .await;
        let mut delivery = Delivery {
            plugin: plugin.to_string(),
            ok: false,
            queued: false,
            dead_letter: None,
            outcome: Vec::new(),
            kind: None,
            error: None,
            call_us: timing.total.as_micros() as u64,
            http_us: timing.http.as_micros() as u64,
            busy_us: timing.busy.as_micros() as u64,
            answered: false,
        };
        match result {
            Ok(outcome) => {
                delivery.outcome = bounded(outcome);
                delivery.ok = true;
                delivery.answered = true;
                self.dequeue(plugin, event);
            }
            Err(e) if e.failed_in_runtime() => {
                let message = e.to_string();
                delivery.kind = Some(e.kind().into());
                if !keep {
                    delivery.error = Some(message);
                    return delivery;
                }
                delivery.error = Some(match self.enqueue(plugin, event, &message) {
                    Kept::Queued => {
                        delivery.queued = true;
                        delivery.outcome = vec![EventOutcome {
                            action: EventAction::Queued,
                            detail: "the host keeps the event and delivers it again".into(),
                        }];
                        format!("{message}; the host keeps the event and delivers it again")
                    }
                    Kept::Dead(id) => {
                        let text = format!(
                            "{message}; the host gave up on the event and keeps it as dead letter {id} (`pbx-host call dead-letters`)"
                        );
                        delivery.dead_letter = Some(id);
                        text
                    }
                    Kept::Lost => format!("{message}; the host could not keep the event"),
                });
            }
            Err(e) => {
                if let CallError::Refused { .. } = &e {
                    // The plugin answered: it has seen the event and decided.
                    tracing::warn!(
                        %plugin, call_id = %event.call_id, phase = phase_name(event.phase),
                        "the plugin refused a call event: {e}"
                    );
                    delivery.answered = true;
                    self.dequeue(plugin, event);
                }
                delivery.kind = Some(e.kind().into());
                delivery.error = Some(e.to_string());
            }
        }
        delivery
    }
}

/// A plugin's outcomes within the host's bounds.
fn bounded(outcome: Vec<EventOutcome>) -> Vec<EventOutcome> {
    outcome
        .into_iter()
        .take(OUTCOMES_MAX)
        .map(|o| EventOutcome {
            action: o.action,
            detail: cut(o.detail),
        })
        .collect()
}

/// `text` cut to [`OUTCOME_TEXT`] characters, the last one "…" when cut.
fn cut(text: String) -> String {
    if text.chars().count() <= OUTCOME_TEXT {
        return text;
    }
    let mut cut: String = text.chars().take(OUTCOME_TEXT - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugins_outcomes_are_bounded() {
        let many = (0..40)
            .map(|i| EventOutcome {
                action: EventAction::Skipped,
                detail: format!("{i} {}", "x".repeat(1000)),
            })
            .collect();
        let kept = bounded(many);
        assert_eq!(kept.len(), OUTCOMES_MAX);
        assert!(
            kept.iter()
                .all(|o| o.detail.chars().count() == OUTCOME_TEXT)
        );
        assert!(kept[0].detail.starts_with("0 x") && kept[0].detail.ends_with('…'));
        let short = bounded(vec![EventOutcome {
            action: EventAction::Logged,
            detail: "Task logged".into(),
        }]);
        assert_eq!(short[0].detail, "Task logged");
    }
}
