//! `http-fetch`: outbound HTTP through the host's checked client, timed so
//! a call's own overhead can be told from the remote side's time.

use super::Capabilities;
use crate::outbound::{self, FetchError};

impl Capabilities {
    /// Send `request` if the plugin's policy allows every hop.
    pub async fn fetch(
        &mut self,
        request: outbound::Request,
    ) -> Result<outbound::Response, FetchError> {
        let client = self.services.http.clone();
        let started = std::time::Instant::now();
        // The grants check, the hop checks and the caps are all in there.
        let fetched = client.fetch(&self.grants.http, request).await;
        self.http_time += started.elapsed();
        self.http_fetches += 1;
        if let Err(FetchError::Denied { host, rule }) = &fetched {
            tracing::warn!(plugin = %self.grants.plugin_id, %host, %rule, "outbound request denied");
        }
        fetched
    }
}
