//! `log`: plugin messages into the host's log, tagged with the plugin id,
//! with their control characters escaped (a plugin must not forge log
//! lines or drive the operator's terminal) and bounded in number and size
//! per call (a plugin must not flood the log). What plugins print on
//! stdout and stderr goes through the same escaping (`runtime::pool`).

use tracing::Level;

use super::Capabilities;

/// Longest message kept, in bytes after escaping; the rest is cut.
pub const MAX_MESSAGE: usize = 4096;
/// Messages one call may log; the rest are dropped, with one warning.
pub const MAX_MESSAGES_PER_CALL: u32 = 1000;

impl Capabilities {
    /// Log `message` at `level` under the target `plugin`, escaped and cut
    /// to [`MAX_MESSAGE`]; past [`MAX_MESSAGES_PER_CALL`] in one call,
    /// dropped.
    pub fn log(&mut self, level: Level, message: &str) {
        let plugin = self.grants.plugin_id.as_str();
        match self.logged.admit() {
            Admit::Yes => {}
            Admit::FirstDropped => {
                tracing::warn!(
                    target: "plugin", plugin,
                    "the plugin logged more than {MAX_MESSAGES_PER_CALL} messages in one call; the rest of this call's are dropped"
                );
                return;
            }
            Admit::Dropped => return,
        }
        let message = bounded(message, MAX_MESSAGE);
        match level {
            Level::TRACE => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::DEBUG => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::INFO => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::WARN => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::ERROR => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// Messages one call logged, against [`MAX_MESSAGES_PER_CALL`].
#[derive(Debug, Default)]
pub struct LogBudget {
    logged: u32,
}

/// Whether a message may be logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Yes.
    Yes,
    /// No, and it is the first one refused in this call (say so once).
    FirstDropped,
    /// No.
    Dropped,
}

impl LogBudget {
    /// Counts a message and says whether it may be logged.
    pub fn admit(&mut self) -> Admit {
        self.logged = self.logged.saturating_add(1);
        match self.logged {
            n if n <= MAX_MESSAGES_PER_CALL => Admit::Yes,
            n if n == MAX_MESSAGES_PER_CALL + 1 => Admit::FirstDropped,
            _ => Admit::Dropped,
        }
    }

    /// A new call: nothing logged yet.
    pub fn reset(&mut self) {
        self.logged = 0;
    }
}

/// `text` with its control characters escaped (see [`escape_controls`])
/// and cut to at most `max` bytes, saying so when cut.
pub fn bounded(text: &str, max: usize) -> String {
    let escaped = escape_controls(text);
    if escaped.len() <= max {
        return escaped;
    }
    let mut end = max;
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes cut]",
        &escaped[..end],
        escaped.len() - end
    )
}

/// `text` with every character that could end a log line, rewrite one or
/// drive a terminal written as a visible escape: newlines and tabs as
/// `\n`, `\r`, `\t`; other control characters (C0, DEL, C1, so ANSI
/// escape sequences too), Unicode line and paragraph separators and
/// bidirectional overrides as `\u{…}`.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_log_lines() {
        let forged =
            "ok\n2026-12-05T09:00:00Z  INFO pbx_host: admin signed in\r\x1b[2Kx\u{202e}y\u{85}";
        let escaped = escape_controls(forged);
        assert!(
            !escaped.chars().any(needs_escape),
            "nothing unescaped is left: {escaped:?}"
        );
        assert_eq!(
            escaped,
            "ok\\n2026-12-05T09:00:00Z  INFO pbx_host: admin signed in\\r\\u{1b}[2Kx\\u{202e}y\\u{85}"
        );
        assert_eq!(
            escape_controls("plain text, ünïcode"),
            "plain text, ünïcode"
        );
    }

    #[test]
    fn a_call_logs_at_most_its_budget_and_the_next_call_starts_again() {
        let mut budget = LogBudget::default();
        let admitted = (0..5000).filter(|_| budget.admit() == Admit::Yes).count();
        assert_eq!(admitted, MAX_MESSAGES_PER_CALL as usize);
        budget.reset();
        assert_eq!(budget.admit(), Admit::Yes);
        let mut budget = LogBudget::default();
        for _ in 0..MAX_MESSAGES_PER_CALL {
            budget.admit();
        }
        assert_eq!(budget.admit(), Admit::FirstDropped);
        assert_eq!(budget.admit(), Admit::Dropped);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary_and_say_so() {
        let long = "é".repeat(3000);
        let cut = bounded(&long, MAX_MESSAGE);
        assert!(cut.starts_with(&"é".repeat(2048)), "kept what fits");
        assert!(cut.ends_with("… [1904 more bytes cut]"), "{}", &cut[4090..]);
        assert_eq!(bounded("short", MAX_MESSAGE), "short");
        // Escaping counts: 1000 newlines are 2000 bytes once escaped.
        assert_eq!(
            bounded(&"\n".repeat(1000), 100).len(),
            100 + "… [1900 more bytes cut]".len()
        );
    }
}
