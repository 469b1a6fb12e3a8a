//! What the host lets a plugin do, in the host's own types: one file per
//! interface of the `pbx:crm` contract (http, kv, browser, directory, log),
//! each implementing its operations on [`Capabilities`]. The WIT bindings
//! of every served contract version (`runtime::wit`) only convert their
//! types and call these, so the http-fetch policy, the kv store's checks and
//! quotas, the directory and the browser requests are one code path
//! whatever version a plugin was built against.

pub mod browser;
pub mod directory;
pub mod http;
pub mod kv;
pub mod log;

use std::sync::Arc;
use std::time::Duration;

use crate::directory::Directory;
use crate::outbound;
use crate::store::Namespace;

/// Host services shared by every plugin and every call.
pub struct Services {
    /// The outbound HTTP client.
    pub http: outbound::Client,
    /// Pages plugins asked to open.
    pub browser: browser::BrowserRequests,
    /// The PBX's extensions.
    pub directory: Directory,
}

/// What one plugin may use; built at load time from its manifest and the
/// operator's grants, shared by all of its calls.
pub struct Grants {
    /// The plugin id.
    pub plugin_id: String,
    /// Its kv-store namespace.
    pub kv: Namespace,
    /// Where it may send HTTP (and which pages it may open).
    pub http: outbound::Policy,
    /// Its open-browser requests' rate.
    pub open_budget: browser::OpenBudget,
}

/// One plugin instance's access to the host: its grants, the shared
/// services, and what its current call used of them.
pub struct Capabilities {
    grants: Arc<Grants>,
    services: Arc<Services>,
    /// Time the current call spent in `http-fetch`.
    http_time: Duration,
    /// How many `http-fetch` calls it made.
    http_fetches: u32,
    /// How many messages it logged.
    logged: log::LogBudget,
}

impl Capabilities {
    /// Access for an instance of the plugin `grants` describe.
    pub fn new(grants: Arc<Grants>, services: Arc<Services>) -> Self {
        Self {
            grants,
            services,
            http_time: Duration::ZERO,
            http_fetches: 0,
            logged: log::LogBudget::default(),
        }
    }

    /// The plugin's id.
    pub fn plugin_id(&self) -> &str {
        &self.grants.plugin_id
    }

    /// Clears what is counted per call, for an instance that serves another.
    pub fn begin_call(&mut self) {
        self.http_time = Duration::ZERO;
        self.http_fetches = 0;
        self.logged.reset();
    }

    /// Time the current call spent in `http-fetch`.
    pub fn http_time(&self) -> Duration {
        self.http_time
    }

    /// How many `http-fetch` calls the current call made.
    pub fn http_fetches(&self) -> u32 {
        self.http_fetches
    }
}
