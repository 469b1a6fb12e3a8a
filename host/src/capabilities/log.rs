//! `pbx:crm/log`: plugin messages into the host's log, tagged with the plugin id.

use super::PluginState;
use super::pbx::crm::log::{Host, Level};

/// Longest message kept; a plugin must not flood the log.
const MAX_MESSAGE: usize = 4096;

impl Host for PluginState {
    async fn log(&mut self, level: Level, message: String) {
        let plugin = self.grants.plugin_id.as_str();
        let message = truncate(&message, MAX_MESSAGE);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
