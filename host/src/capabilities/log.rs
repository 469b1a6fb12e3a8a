//! `log`: plugin messages into the host's log, tagged with the plugin id.

use tracing::Level;

use super::Capabilities;

/// Longest message kept; a plugin must not flood the log.
const MAX_MESSAGE: usize = 4096;

impl Capabilities {
    /// Log `message` at `level` under the target `plugin`.
    pub fn log(&self, level: Level, message: &str) {
        let plugin = self.grants.plugin_id.as_str();
        let message = truncate(message, MAX_MESSAGE);
        match level {
            Level::TRACE => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::DEBUG => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::INFO => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::WARN => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::ERROR => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
