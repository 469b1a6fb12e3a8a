//! `pbx:crm/http-fetch`: outbound HTTP through the host's checked client.

use std::time::Duration;

use super::PluginState;
use super::pbx::crm::http_fetch::{Denial, Error, Header, Host, Method, Request, Response};
use crate::outbound;

impl Host for PluginState {
    async fn fetch(&mut self, request: Request) -> Result<Response, Error> {
        let request = outbound::Request {
            method: match request.method {
                Method::Get => outbound::Method::Get,
                Method::Head => outbound::Method::Head,
                Method::Post => outbound::Method::Post,
                Method::Put => outbound::Method::Put,
                Method::Patch => outbound::Method::Patch,
                Method::Delete => outbound::Method::Delete,
            },
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: request.body,
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        let client = self.services.http.clone();
        let started = std::time::Instant::now();
        let fetched = client.fetch(&self.grants.http, request).await;
        self.http_time += started.elapsed();
        self.http_fetches += 1;
        match fetched {
            Ok(response) => Ok(Response {
                status: response.status,
                headers: response
                    .headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
                body: response.body,
            }),
            Err(e) => {
                if let outbound::FetchError::Denied { host, rule } = &e {
                    tracing::warn!(plugin = %self.grants.plugin_id, %host, %rule, "outbound request denied");
                }
                Err(match e {
                    outbound::FetchError::Denied { host, rule } => {
                        Error::Denied(Denial { host, rule })
                    }
                    outbound::FetchError::Timeout => Error::Timeout,
                    outbound::FetchError::Unreachable(why) => Error::Unreachable(why),
                    outbound::FetchError::TooLarge(n) => Error::TooLarge(n),
                    outbound::FetchError::Invalid(why) => Error::Invalid(why),
                })
            }
        }
    }
}
