//! Transport failures of Salesforce's endpoints, in words that name the
//! fix; the CRM-neutral request helpers are the SDK's (`pbx_crm_sdk::http`),
//! re-exported here under the paths the plugin uses.

pub use pbx_crm_sdk::http::{
    TIMEOUT_MS, form_body, get, header, origin, post_form, response_header, sanitize,
};

use crate::bindings::pbx::crm::http_fetch::Error as FetchError;
use crate::error::PluginError;

/// The plugin id the operator grants hosts to (`manifest.json`).
const PLUGIN_ID: &str = "salesforce";

/// What the administrator needs to read when a fetch to `target` (the base
/// URL of the Salesforce endpoint, never a URL with secrets in it) failed.
/// `denied` builds the error for a host the PBX refused, so the authorization
/// flow can report it as a failed authorization.
pub fn fetch_failure(
    error: &FetchError,
    target: &str,
    denied: fn(String) -> PluginError,
) -> PluginError {
    match error {
        FetchError::Denied(denial) if denial.rule.contains("manifest") => denied(format!(
            "the Salesforce plugin may not connect to {} ({}): use a Salesforce login host such as https://login.salesforce.com or https://yourcompany.my.salesforce.com",
            denial.host,
            sanitize(&denial.rule)
        )),
        FetchError::Denied(denial) => denied(format!(
            "the PBX does not allow connections to {host}: ask the operator to grant it (pbx-host serve --grant {PLUGIN_ID}={host})",
            host = denial.host
        )),
        FetchError::Timeout => PluginError::CrmUnavailable(format!(
            "Salesforce at {target} could not be reached (no answer in time): check the login host and the PBX's internet access"
        )),
        FetchError::Unreachable(why) => PluginError::CrmUnavailable(format!(
            "Salesforce at {target} could not be reached ({}): check the login host and the PBX's internet access",
            sanitize(why)
        )),
        FetchError::TooLarge(bytes) => PluginError::CrmUnavailable(format!(
            "Salesforce at {target} sent an answer larger than the PBX accepts ({bytes} bytes); try again later"
        )),
        FetchError::Invalid(why) => PluginError::NotConfigured(format!(
            "the PBX refused the request to {target} as invalid ({}): check the login host setting",
            sanitize(why)
        )),
    }
}
