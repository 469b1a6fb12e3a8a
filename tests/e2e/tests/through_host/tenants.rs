//! Many PBXs on one host: tenants routed by the `Host` of their public
//! URL, each connected to its own org, with nothing crossing between them
//! (keys, pop-ups, Tasks, associations, credentials); the operator's
//! commands (add, list, suspend, resume, remove) through the CLI; and two
//! tenants on two replicas sharing one Redis, one replica killed with
//! `kill -9` in the middle of both tenants' calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2e_tests::org::{CONSUMER_SECRET, Consent, call_event, consent_in, sync_job, user_id_in};
use e2e_tests::{Options, install, pbx_at, start_host};

use crate::replicas::{active_of, eventually, replica_process_in, send_with_failover};
use pbx_host::capabilities::browser::Viewer;
use pbx_host::cli::AdminClient;
use pbx_host::server::{RunningHost, certificates};
use pbx_host::store::Quota;
use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig, NewUser};
use serde_json::{Map, Value, json};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

/// One tenant of the test: its org and how to reach it.
struct Tenant {
    name: &'static str,
    /// Its public URL's host: what requests to it carry in `Host`.
    authority: String,
    org: Emulator,
    ca_path: PathBuf,
    /// Its extension (associated with the org's admin).
    extension: &'static str,
    /// The org's Contact who calls.
    caller: String,
}

impl Tenant {
    async fn start(name: &'static str, extension: &'static str, dir: &Path) -> Tenant {
        let org = Emulator::start(EmulatorConfig::default())
            .await
            .expect("the emulator starts");
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, org.ca_cert_pem()).expect("write the CA");
        let fields: Map<String, Value> =
            json!({"LastName": format!("Caller of {name}"), "Phone": "+1 212 555 0142"})
                .as_object()
                .cloned()
                .expect("object");
        let caller = org.insert("Contact", fields).expect("contact");
        // A user only this org has, to tell the tenants' user lists apart.
        org.add_user(NewUser {
            first_name: "Agent".into(),
            last_name: format!("of {name}"),
            email: format!("agent@{name}.example"),
            ..NewUser::default()
        })
        .expect("user");
        Tenant {
            name,
            authority: format!("pbx.{name}.example"),
            org,
            ca_path,
            extension,
            caller,
        }
    }

    fn public_url(&self) -> String {
        format!("https://{}", self.authority)
    }

    fn consumer_key(&self) -> String {
        format!("3MVG9.{}.consumer", self.name)
    }
}

/// Host options granting both orgs and trusting their CAs.
fn options(tenants: &[&Tenant], store: Option<String>) -> Options {
    Options {
        grants: tenants
            .iter()
            .map(|t| format!("salesforce={}", t.org.base_url()))
            .collect(),
        trust_ca: tenants.iter().map(|t| t.ca_path.clone()).collect(),
        store,
        journal_interval_ms: Some(300),
        ..Options::default()
    }
}

/// A request to `replica` as tenant `authority` (what a load balancer in
/// front of the replicas forwards: the public URL's `Host`).
fn to(
    client: &reqwest::Client,
    method: reqwest::Method,
    replica: &str,
    authority: &str,
    path: &str,
) -> reqwest::RequestBuilder {
    client
        .request(method, format!("{replica}{path}"))
        .header("host", authority)
}

/// The admin token `tenant add` or `tenant new-token` printed: the end of
/// its first line (shown once, so a reader of one line keeps it).
pub(crate) fn token_on_first_line(out: &str) -> String {
    let token = out
        .lines()
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .expect("a first line")
        .trim()
        .to_string();
    assert_eq!(token.len(), 64, "a token on the first line: {out}");
    token
}

/// A portal session of the PBX at `authority` on `replica`, logged in with
/// `token` from `origin`: the session cookie, which is on the login's
/// redirect itself.
async fn portal_session(replica: &str, authority: &str, origin: &str, token: &str) -> String {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = to(
        &no_redirects,
        reqwest::Method::POST,
        replica,
        authority,
        "/login",
    )
    .header("origin", origin)
    .form(&[("token", token)])
    .send()
    .await
    .expect("answers");
    login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("pbx_session="))
        .and_then(|c| c.split(';').next())
        .expect("a portal session")
        .to_string()
}

/// The operator replaces PBX `name`'s admin token `old` (the PBX at
/// `authority` on `replica`, logged in to from `origin`) with the CLI:
/// after, the old token and a portal session made with it are refused, and
/// the new one, returned, works.
async fn the_operator_replaces_the_admin_token(
    data_dir: &Path,
    replica: &str,
    authority: &str,
    origin: &str,
    name: &str,
    old: &str,
) -> String {
    let session = portal_session(replica, authority, origin, old).await;
    let client = reqwest::Client::new();
    let extensions = |credential: &str| {
        let request = to(
            &client,
            reqwest::Method::GET,
            replica,
            authority,
            "/api/extensions",
        );
        let request = match credential.strip_prefix("session:") {
            Some(id) => request.header("cookie", format!("pbx_session={id}")),
            None => request.bearer_auth(credential),
        };
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let with_session = format!("session:{session}");
    assert_eq!(extensions(&with_session).await, 200);
    let (ok, out, err) = pbx_at(Some(data_dir), &["tenant", "new-token", name], "");
    assert!(ok, "{err}");
    assert!(
        out.contains("1 administrator portal session ended"),
        "{out}"
    );
    let new = token_on_first_line(&out);
    assert_ne!(new, old);
    assert_eq!(extensions(old).await, 401, "the old token is refused");
    assert_eq!(
        extensions(&with_session).await,
        401,
        "the session made with the old token ended"
    );
    assert_eq!(extensions(&new).await, 200);
    new
}

/// Add `tenant` through the operator API of the host serving `data_dir`;
/// its admin token.
async fn add_tenant(data_dir: &Path, tenant: &Tenant) -> String {
    let operator = AdminClient::operator(data_dir).expect("operator client");
    let added = operator
        .post(
            "/tenants",
            &json!({"name": tenant.name, "public_url": tenant.public_url()}),
        )
        .await
        .expect("the tenant is added");
    assert_eq!(added["tenant"]["status"], "active", "{added}");
    added["admin_token"]
        .as_str()
        .expect("an admin token")
        .to_string()
}

/// The administrator's whole set-up of `tenant` through `replica` (whose
/// data directory is `data_dir`): install, [`connect`], extension, user
/// sync, association.
async fn set_up(data_dir: &Path, replica: &str, tenant: &Tenant) -> AdminClient {
    let api = AdminClient::for_tenant(data_dir, tenant.name).expect("tenant client");
    install(&api, "salesforce_plugin")
        .await
        .expect("the plugin installs in the tenant");
    connect(&api, replica, tenant).await;
    api.post(
        "/extensions",
        &json!({"number": tenant.extension, "name": format!("Desk of {}", tenant.name)}),
    )
    .await
    .expect("extension saved");
    let job = sync_job(&api, "salesforce").await;
    assert_eq!(job["ok"], true, "{job}");
    let list = api.get("/crm/salesforce/users").await.expect("users");
    api.put(
        "/crm/salesforce/associations",
        &json!({"version": list["version"], "associations": [
            {"user_id": user_id_in(&tenant.org, "admin@example.org"), "extension": tenant.extension},
        ]}),
    )
    .await
    .expect("associations saved");
    api
}

/// Connect `tenant` to its org through its admin API `api`: the app with
/// the tenant's Callback URL, the settings, the authorization, Allow, and
/// the org's redirect to the tenant's public URL, which the balancer sends
/// to `replica`.
async fn connect(api: &AdminClient, replica: &str, tenant: &Tenant) {
    let callback = format!("{}/crm/salesforce/oauth/callback", tenant.public_url());
    tenant.org.add_app(ConnectedApp::new(
        tenant.consumer_key(),
        CONSUMER_SECRET,
        &callback,
    ));
    api.put(
        "/crm/salesforce/settings",
        &json!({"settings": [
            {"key": "consumer-key", "value": tenant.consumer_key()},
            {"key": "consumer-secret", "value": CONSUMER_SECRET},
            {"key": "login-host", "value": "my-domain"},
            {"key": "my-domain-url", "value": tenant.org.base_url()},
        ]}),
    )
    .await
    .expect("settings save");
    let consent_url = api
        .post("/crm/salesforce/authorize", &json!({}))
        .await
        .expect("the authorization starts")["url"]
        .as_str()
        .expect("a consent URL")
        .to_string();
    let Consent::Redirect(location) = consent_in(&tenant.org, &consent_url, true).await else {
        panic!("{} did not redirect after Allow", tenant.name);
    };
    let path = location
        .strip_prefix(&tenant.public_url())
        .unwrap_or_else(|| panic!("the org redirects to the tenant's Callback URL: {location}"));
    let page = to(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        replica,
        &tenant.authority,
        path,
    )
    .send()
    .await
    .expect("the callback answers");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("page");
    assert!(html.contains("Authorization succeeded!"), "{html}");
}

/// The Tasks of `org` logging one of `calls`, by call id.
fn tasks_by_call(org: &Emulator) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut by_call = std::collections::BTreeMap::<String, Vec<Value>>::new();
    for task in org.tasks() {
        if let Some(call) = task["CallObject"].as_str() {
            by_call.entry(call.to_string()).or_default().push(task);
        }
    }
    by_call
}

/// The pop-ups `host` shows for tenant `name`: (extension, call id).
fn pop_ups(host: &RunningHost, name: &str) -> Vec<(String, String)> {
    let pbx = host.pbxs.get(name).expect("the tenant is served");
    pbx.state
        .services
        .browser
        .since(0)
        .into_iter()
        .filter_map(|r| {
            let Viewer::Extension(extension) = r.viewer else {
                return None;
            };
            let call = r.caption.and_then(|c| c.call_id)?;
            Some((extension, call))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_on_two_replicas_share_nothing_and_survive_a_kill() {
    let server = redis_kit::RedisServer::start_durable();
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = Tenant::start("acme", "1001", dir.path()).await;
    let globex = Tenant::start("globex", "2001", dir.path()).await;
    let options = options(&[&acme, &globex], Some(server.url()));
    let one_dir = dir.path().join("replica-1");
    let one = start_host(&one_dir, options.clone()).await;
    let two_dir = dir.path().join("replica-2");
    let (mut two, two_url) = replica_process_in(&one_dir, &two_dir, &server.url(), &options).await;
    let one_url = one.url();
    assert_eq!(
        std::fs::read_to_string(two_dir.join(pbx_host::server::OPERATOR_TOKEN_FILE))
            .expect("replica 2's operator token")
            .trim(),
        one.operator_token,
        "one operator token for the fleet"
    );

    // Tenant A is added and set up through replica 1, tenant B through
    // replica 2; each replica serves both.
    let acme_token = add_tenant(&one_dir, &acme).await;
    let globex_token = add_tenant(&two_dir, &globex).await;
    assert!(
        eventually(Duration::from_secs(5), || one.pbxs.get("globex").is_some()).await,
        "replica 1 serves the tenant added on replica 2"
    );
    let acme_api = set_up(&one_dir, &one_url, &acme).await;
    set_up(&two_dir, &two_url, &globex).await;

    // Each tenant's administrator reaches only their own PBX; the operator
    // API is the operator's alone.
    let client = reqwest::Client::new();
    for (replica, authority, token, expected) in [
        (&one_url, &acme.authority, &acme_token, 200),
        (&two_url, &acme.authority, &acme_token, 200),
        (&one_url, &globex.authority, &acme_token, 401),
        (&two_url, &globex.authority, &acme_token, 401),
        (&one_url, &acme.authority, &globex_token, 401),
        (&one_url, &globex.authority, &globex_token, 200),
    ] {
        let status = to(
            &client,
            reqwest::Method::GET,
            replica,
            authority,
            "/api/extensions",
        )
        .bearer_auth(token)
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16();
        assert_eq!(status, expected, "{authority} on {replica} with a token");
    }
    let operator = client
        .get(format!("{one_url}/operator/tenants"))
        .bearer_auth(&acme_token)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        operator.status().as_u16(),
        401,
        "a tenant's token is not the operator's"
    );

    // Moved to another host name on replica 2, and back: replica 1 follows
    // each move, and what acme keeps (its connection) serves the calls.
    let operator_two = AdminClient::operator(&two_dir).expect("operator client");
    for (to_url, authority) in [
        ("https://pbx.acme-corp.example", "pbx.acme-corp.example"),
        (acme.public_url().as_str(), acme.authority.as_str()),
    ] {
        operator_two
            .put("/tenants/acme/public-url", &json!({"public_url": to_url}))
            .await
            .expect("moved");
        assert!(
            eventually(Duration::from_secs(5), || {
                one.pbxs.route(Some(authority)).name == "acme"
            })
            .await,
            "replica 1 serves acme at {authority}"
        );
    }
    assert_eq!(
        one.pbxs.route(Some("pbx.acme-corp.example")).name,
        "default",
        "the name it moved away from reaches the host's own PBX"
    );
    // Following other changes does not open a tenant that stayed again.
    let acme_served = one.pbxs.get("acme").expect("served");
    for (verb, suspended) in [("suspend", true), ("resume", false)] {
        operator_two
            .post(&format!("/tenants/globex/{verb}"), &json!({}))
            .await
            .expect(verb);
        assert!(
            eventually(Duration::from_secs(5), || {
                one.pbxs
                    .get("globex")
                    .is_some_and(|g| g.is_suspended() == suspended)
            })
            .await,
            "replica 1 follows the {verb}"
        );
    }
    assert!(
        Arc::ptr_eq(&acme_served, &one.pbxs.get("acme").expect("served")),
        "acme was not opened again"
    );

    // Calls for both tenants, their events spread over both replicas, with
    // replica 2 killed with kill -9 once a third are through.
    const CALLS: usize = 12;
    let done = Arc::new(AtomicUsize::new(0));
    let call_done = Arc::new(tokio::sync::Notify::new());
    let failovers = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (tenant, token) in [(&acme, &acme_token), (&globex, &globex_token)] {
        for worker in 0..2 {
            let (one_url, two_url, token) = (one_url.clone(), two_url.clone(), token.clone());
            let (authority, extension, name) =
                (tenant.authority.clone(), tenant.extension, tenant.name);
            let (done, call_done, failovers) = (done.clone(), call_done.clone(), failovers.clone());
            workers.push(tokio::spawn(async move {
                for call in (worker..CALLS).step_by(2) {
                    let call_id = format!("{name}-{call}");
                    for (n, phase) in ["ringing", "answered", "ended"].iter().enumerate() {
                        let event = call_event(
                            &call_id,
                            phase,
                            "(212) 555-0142",
                            extension,
                            NOON + call as u64,
                        );
                        let first = (call + n) % 2;
                        let took = send_with_failover(
                            [&one_url, &two_url],
                            first,
                            Some(&authority),
                            &token,
                            &event,
                        )
                        .await;
                        if took != first {
                            failovers.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    call_done.notify_one();
                }
            }));
        }
    }
    while done.load(Ordering::SeqCst) < 2 * CALLS / 3 {
        call_done.notified().await;
    }
    two.0.kill().expect("kill -9 of replica 2");
    two.0.wait().expect("replica 2 is gone");
    let at_kill = done.load(Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    assert!(
        at_kill < 2 * CALLS,
        "the kill came in the middle: {at_kill}"
    );
    assert!(
        failovers.load(Ordering::SeqCst) > 0,
        "events meant for replica 2 went to replica 1 after the kill"
    );

    // From here on through replica 1, the one left.
    let globex_api = AdminClient::for_tenant(&one_dir, globex.name).expect("tenant client");

    // Every call of each tenant is logged exactly once, in its own org,
    // against its own org's Contact; none in the other's.
    for api in [&acme_api, &globex_api] {
        e2e_tests::org::drain(api, Duration::from_secs(90)).await;
    }
    for (tenant, other) in [(&acme, &globex), (&globex, &acme)] {
        let tasks = tasks_by_call(&tenant.org);
        for call in 0..CALLS {
            let logged = tasks
                .get(&format!("{}-{call}", tenant.name))
                .cloned()
                .unwrap_or_default();
            assert_eq!(logged.len(), 1, "{}-{call}: {logged:?}", tenant.name);
            assert_eq!(logged[0]["WhoId"], tenant.caller.as_str());
        }
        assert!(
            tasks.keys().all(|call| call.starts_with(tenant.name)),
            "no Task of {} in {}'s org: {:?}",
            other.name,
            tenant.name,
            tasks.keys().collect::<Vec<_>>()
        );
    }

    // Pop-ups: each tenant's, wherever its call rang, only to its own
    // extension on replica 1, never to the other tenant's.
    for (tenant, other) in [(&acme, &globex), (&globex, &acme)] {
        let shown = pop_ups(&one, tenant.name);
        assert!(!shown.is_empty(), "{} has pop-ups", tenant.name);
        for (extension, call) in &shown {
            assert_eq!(extension, tenant.extension, "{call}");
            assert!(
                call.starts_with(tenant.name) && !call.starts_with(other.name),
                "{call} shown in {}",
                tenant.name
            );
        }
    }

    // Associations and users: each tenant lists its own org's users only.
    for (api, tenant, other) in [(&acme_api, &acme, &globex), (&globex_api, &globex, &acme)] {
        let users = api.get("/crm/salesforce/users").await.expect("users");
        let usernames: Vec<&str> = users["entries"]
            .as_array()
            .expect("users")
            .iter()
            .filter_map(|u| u["user"]["username"].as_str())
            .collect();
        let own = format!("agent@{}.example", tenant.name);
        let theirs = format!("agent@{}.example", other.name);
        assert!(usernames.contains(&own.as_str()), "{users}");
        assert!(!usernames.contains(&theirs.as_str()), "{users}");
        let associated: Vec<&Value> = users["entries"]
            .as_array()
            .expect("users")
            .iter()
            .filter(|u| !u["extension"].is_null())
            .collect();
        assert_eq!(associated.len(), 1, "{users}");
        assert_eq!(associated[0]["extension"], tenant.extension);
    }

    // Keys: each tenant's are in its own scope; the host's own PBX keeps
    // none of theirs.
    let store = &one.pbxs.store;
    for tenant in [&acme, &globex] {
        let keys = store
            .tenant(tenant.name)
            .namespace("plugin/salesforce", Quota::UNLIMITED)
            .list_keys("")
            .expect("keys");
        assert!(!keys.is_empty(), "{} keeps its plugin's keys", tenant.name);
        let extensions = store
            .tenant(tenant.name)
            .namespace("host/extensions", Quota::UNLIMITED)
            .list_keys("")
            .expect("extensions");
        assert!(
            extensions.iter().all(|k| k.contains(tenant.extension)),
            "{extensions:?}"
        );
    }
    let own_keys = store
        .namespace("plugin/salesforce", Quota::UNLIMITED)
        .list_keys("")
        .expect("keys");
    assert!(own_keys.is_empty(), "the host's own PBX: {own_keys:?}");
    drop(two);
    one.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_adds_suspends_resumes_and_removes_a_tenant_with_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = Tenant::start("acme", "1001", dir.path()).await;
    let data_dir = dir.path().join("pbx");
    let host = start_host(&data_dir, options(&[&acme], None)).await;
    let url = host.url();
    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");

    let public_url = acme.public_url();
    let (ok, out, err) = cli(&["tenant", "add", "acme", "--public-url", &public_url]);
    assert!(ok, "{err}");
    assert!(out.contains("added tenant acme"), "{out}");
    let token = token_on_first_line(&out);
    // Refused: a taken name, a bad name, the same public URL again; none
    // changes anything.
    for (args, why) in [
        (
            vec![
                "tenant",
                "add",
                "acme",
                "--public-url",
                "https://other.example",
            ],
            "exists already",
        ),
        (
            vec![
                "tenant",
                "add",
                "Acme!",
                "--public-url",
                "https://other.example",
            ],
            "not a tenant name",
        ),
        (
            vec![
                "tenant",
                "add",
                "acme2",
                "--public-url",
                public_url.as_str(),
            ],
            "already reaches another PBX",
        ),
    ] {
        let (ok, _, err) = cli(&args);
        assert!(!ok, "{args:?} must be refused");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let kept = host
        .pbxs
        .store
        .tenant("acme")
        .namespace("host/admin", Quota::UNLIMITED)
        .get("token")
        .expect("store")
        .expect("acme's token");
    assert_eq!(
        kept,
        token.as_bytes(),
        "adding a taken name again left the tenant's admin token as it was"
    );

    // --tenant reaches the tenant's own PBX: its plugin, its extensions.
    let (ok, _, err) = cli(&[
        "plugin",
        "install",
        e2e_tests::component("salesforce_plugin")
            .to_str()
            .expect("path"),
        "--tenant",
        "acme",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "extension",
        "add",
        "1001",
        "--name",
        "Ada",
        "--tenant",
        "acme",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["extension", "list", "--tenant", "acme"]);
    assert!(ok && out.contains("1001"), "{out}{err}");
    let (ok, out, _) = cli(&["extension", "list"]);
    assert!(
        ok && !out.contains("1001"),
        "the host's own PBX has none: {out}"
    );
    let (ok, out, err) = cli(&["tenant", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("acme") && out.contains("active") && out.contains("salesforce"),
        "{out}"
    );

    // The operator API refuses a request without the operator token.
    let anonymous = reqwest::Client::new()
        .get(format!("{url}/operator/tenants"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);

    // A removal that stopped midway (the tenant left `removing`) refuses
    // suspend and resume, and is finished by running it again.
    let (ok, _, err) = cli(&[
        "tenant",
        "add",
        "initech",
        "--public-url",
        "https://pbx.initech.example",
    ]);
    assert!(ok, "{err}");
    host.pbxs
        .tenants
        .set_status("initech", pbx_host::tenants::TenantStatus::Removing)
        .expect("marked removing");
    for verb in ["suspend", "resume"] {
        let (ok, _, err) = cli(&["tenant", verb, "initech"]);
        assert!(!ok && err.contains("being removed"), "{verb}: {err}");
    }
    let (ok, out, err) = cli(&["tenant", "remove", "initech"]);
    assert!(ok && out.contains("removed tenant initech"), "{out}{err}");

    // The tenant's administrator, at its Host, with its token.
    let client = reqwest::Client::new();
    let extensions = |token: &str| {
        to(
            &client,
            reqwest::Method::GET,
            &url,
            &acme.authority,
            "/api/extensions",
        )
        .bearer_auth(token.to_string())
        .send()
    };
    assert_eq!(
        extensions(&token).await.expect("answers").status().as_u16(),
        200
    );
    assert_eq!(
        extensions(&host.admin_token)
            .await
            .expect("answers")
            .status()
            .as_u16(),
        401,
        "the host's own admin token is not the tenant's"
    );

    // Suspended: nothing of it is served, the rest of the host is.
    let (ok, _, err) = cli(&["tenant", "suspend", "acme"]);
    assert!(ok, "{err}");
    let answer = extensions(&token).await.expect("answers");
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let page = to(
        &client,
        reqwest::Method::GET,
        &url,
        &acme.authority,
        "/login",
    )
    .send()
    .await
    .expect("answers");
    assert_eq!(page.status().as_u16(), 503);
    let html = page.text().await.expect("page");
    assert!(html.contains("This PBX is suspended"), "{html}");
    let own = client
        .get(format!("{url}/api/extensions"))
        .bearer_auth(&host.admin_token)
        .send()
        .await
        .expect("answers");
    assert_eq!(own.status().as_u16(), 200);
    let (ok, _, err) = cli(&["tenant", "resume", "acme"]);
    assert!(ok, "{err}");
    assert_eq!(
        extensions(&token).await.expect("answers").status().as_u16(),
        200
    );

    // A lost or leaked admin token: the operator issues a new one. The old
    // token, and the portal session made with it, reach nothing after.
    let new_token = the_operator_replaces_the_admin_token(
        &data_dir,
        &url,
        &acme.authority,
        &acme.public_url(),
        "acme",
        &token,
    )
    .await;
    let token = new_token;
    // Refused, changing nothing: an unknown tenant, a tenant's own token
    // at the operator route.
    let (ok, _, err) = cli(&["tenant", "new-token", "nobody"]);
    assert!(!ok && err.contains("no tenant is named"), "{err}");
    let refused = client
        .post(format!("{url}/operator/tenants/acme/admin-token"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        extensions(&token).await.expect("answers").status().as_u16(),
        200,
        "the token the refusals left is still the one"
    );

    // Its Homepage URL is the operator's public URL for it.
    let api = AdminClient::for_tenant(&data_dir, "acme").expect("client");
    let refused = api
        .put(
            "/network",
            &json!({"homepage_url": "https://elsewhere.example"}),
        )
        .await
        .expect_err("a tenant's Homepage URL is the operator's");
    assert!(
        format!("{refused:#}").contains("ask the operator"),
        "{refused:#}"
    );
    let network = api.get("/network").await.expect("network");
    assert_eq!(network["homepage_url"], acme.public_url(), "{network}");

    // Connected, then removed: its token is revoked at the org, and every
    // key it kept is gone.
    connect(&api, &url, &acme).await;
    assert!(!acme.org.live_tokens().is_empty(), "connected");
    assert!(
        host.pbxs
            .store
            .tenant("acme")
            .tenant_usage()
            .expect("usage")
            .1
            .keys
            > 0
    );

    let (ok, out, err) = cli(&["tenant", "remove", "acme"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("revoked the CRM tokens of salesforce"),
        "{out}"
    );
    assert!(out.contains("plugin/salesforce"), "{out}");
    assert!(out.contains("host/extensions"), "{out}");
    assert!(acme.org.live_tokens().is_empty(), "its tokens were revoked");
    assert_eq!(
        host.pbxs
            .store
            .tenant("acme")
            .tenant_usage()
            .expect("usage"),
        (0, Default::default()),
        "every key of the tenant is gone"
    );
    let (ok, out, _) = cli(&["tenant", "list"]);
    assert!(ok && out.contains("no tenants"), "{out}");
    let gone = extensions(&token).await.expect("answers");
    assert_eq!(gone.status().as_u16(), 401, "its token reaches nothing");
    let (ok, _, err) = cli(&["extension", "list", "--tenant", "acme"]);
    assert!(!ok && err.contains("no tenant is named"), "{err}");

    // A replica that had not yet heard of the removal writes one last key
    // under the name; acme added again inherits nothing of the old acme.
    let late = || {
        host.pbxs
            .store
            .tenant("acme")
            .namespace("plugin/salesforce", Quota::UNLIMITED)
    };
    late().set("late", b"the old acme's").expect("a late write");
    let (ok, out, err) = cli(&["tenant", "add", "acme", "--public-url", &public_url]);
    assert!(ok, "{err}");
    let token = token_on_first_line(&out);
    assert_eq!(late().get("late").expect("store"), None, "{out}");
    assert_eq!(
        extensions(&token).await.expect("answers").status().as_u16(),
        200
    );
    // A replica that missed both the removal and the new add (played here
    // by following records changed under it) serves the new acme, not
    // the one it had open; one that missed nothing keeps its own.
    let served = host.pbxs.get("acme").expect("served");
    host.pbxs.follow().expect("followed");
    assert!(Arc::ptr_eq(
        &served,
        &host.pbxs.get("acme").expect("served")
    ));
    let mut record = host.pbxs.tenants.get("acme").expect("its record");
    host.pbxs.tenants.remove("acme").expect("removed elsewhere");
    record.created_at_ms += 1;
    host.pbxs
        .tenants
        .add(&record)
        .expect("added again elsewhere");
    host.pbxs.follow().expect("followed");
    assert!(
        !Arc::ptr_eq(&served, &host.pbxs.get("acme").expect("served")),
        "the new acme is opened"
    );
    host.shutdown().await;
}

/// Tokens leak: the operator replaces the operator token, and the admin
/// token of the host's own PBX, while the host serves. The old ones are
/// refused at once, the portal session made with the old admin token
/// ends, the CLI finds the new ones in the data directory, and both last
/// a restart. A refused request replaces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_replaces_its_own_token_and_the_host_s_own_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("pbx");
    let host = start_host(&data_dir, options(&[], None)).await;
    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");
    let file = |name: &str| {
        std::fs::read_to_string(data_dir.join(name))
            .expect("a token file")
            .trim()
            .to_string()
    };
    let client = reqwest::Client::new();
    let status = |url: String, token: String| {
        let request = client.get(url).bearer_auth(token);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let (old_operator, old_admin) = (host.operator_token.clone(), host.admin_token.clone());
    assert_eq!(file("operator-token"), old_operator);
    assert_eq!(file("admin-token"), old_admin);

    // Refused, replacing nothing: the admin token at the operator route,
    // and `--tenant` on the operator's own command.
    let url = host.url();
    let refused = client
        .post(format!("{url}/operator/token"))
        .bearer_auth(&old_admin)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status().as_u16(), 401);
    let (ok, _, err) = cli(&["operator", "new-token", "--tenant", "acme"]);
    assert!(!ok && err.contains("drop --tenant"), "{err}");
    assert_eq!(file("operator-token"), old_operator, "nothing replaced");
    assert_eq!(
        status(format!("{url}/operator/tenants"), old_operator.clone()).await,
        200
    );

    // The operator token.
    let (ok, out, err) = cli(&["operator", "new-token"]);
    assert!(ok, "{err}");
    let operator = token_on_first_line(&out);
    assert_ne!(operator, old_operator);
    assert_eq!(file("operator-token"), operator, "the CLI's copy");
    assert_eq!(
        status(format!("{url}/operator/tenants"), old_operator.clone()).await,
        401,
        "the old operator token is refused"
    );
    assert_eq!(
        status(format!("{url}/operator/tenants"), operator.clone()).await,
        200
    );
    let (ok, out, err) = cli(&["tenant", "list"]);
    assert!(ok && out.contains("no tenants"), "{out}{err}");

    // The host's own PBX's admin token.
    let admin = the_operator_replaces_the_admin_token(
        &data_dir,
        &url,
        &host.addr.to_string(),
        &url,
        "default",
        &old_admin,
    )
    .await;
    assert_eq!(file("admin-token"), admin, "the CLI's copy");
    let (ok, out, err) = cli(&["extension", "list"]);
    assert!(ok, "{out}{err}");

    // Both last a restart; the old ones stay refused.
    host.shutdown().await;
    let host = start_host(&data_dir, options(&[], None)).await;
    assert_eq!(
        (host.operator_token.as_str(), host.admin_token.as_str()),
        (operator.as_str(), admin.as_str())
    );
    let url = host.url();
    for (path, token, expected) in [
        ("/operator/tenants", &operator, 200),
        ("/operator/tenants", &old_operator, 401),
        ("/api/extensions", &admin, 200),
        ("/api/extensions", &old_admin, 401),
    ] {
        assert_eq!(
            status(format!("{url}{path}"), token.clone()).await,
            expected,
            "{path}"
        );
    }
    host.shutdown().await;
}

/// A certificate for `host` from a CA of its own named `ca`: (the CA's
/// PEM, the chain's PEM, the key's PEM).
fn issued(ca: &str, host: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, ca);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec![host.to_string()]).expect("params");
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf.signed_by(&key, &issuer).expect("certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Whether `https://NAME:PORT/login` on `addr` answers 200 to a client that
/// trusts only `ca_pem`: whether the certificate served for `name` is one
/// that CA issued for it.
async fn served_for(addr: std::net::SocketAddr, name: &str, ca_pem: &str) -> bool {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .resolve(name, addr)
        .build()
        .expect("client");
    client
        .get(format!("https://{name}:{}/login", addr.port()))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// A tenant at its own domain, on an HTTPS host: the operator gives it its
/// own certificate, which the host serves for that name (SNI), and its own
/// for every other; refusals change nothing; it lasts a restart; removed,
/// the host's is served for the tenant again. A plain-HTTP host refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_own_domain_is_served_its_own_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_ca, host_chain, host_key) = issued("Host CA", "pbx.host.example");
    let (acme_ca, acme_chain, acme_key) = issued("Acme CA", "pbx.acme.example");
    let (_, globex_chain, globex_key) = issued("Acme CA", "pbx.globex.example");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    };
    let (host_cert_file, host_key_file) = (
        file("host.pem", &host_chain),
        file("host-key.pem", &host_key),
    );
    let (acme_cert, acme_key_file) = (
        file("acme.pem", &acme_chain),
        file("acme-key.pem", &acme_key),
    );
    let (globex_cert, globex_key_file) = (
        file("globex.pem", &globex_chain),
        file("globex-key.pem", &globex_key),
    );
    let data_dir = dir.path().join("pbx");
    let start = || async {
        let config = pbx_host::config::HostConfig::from_file(pbx_host::config::FileConfig {
            data_dir: Some(data_dir.clone()),
            listen: Some("127.0.0.1:0".parse().expect("address")),
            tls_cert: Some(host_cert_file.clone().into()),
            tls_key: Some(host_key_file.clone().into()),
            ..Default::default()
        })
        .expect("config");
        pbx_host::server::start(config)
            .await
            .expect("the host starts")
    };
    let host = start().await;
    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");
    let (ok, _, err) = cli(&[
        "tenant",
        "add",
        "acme",
        "--public-url",
        "https://pbx.acme.example",
    ]);
    assert!(ok, "{err}");
    assert!(served_for(host.addr, "pbx.host.example", &host_ca).await);
    assert!(
        !served_for(host.addr, "pbx.acme.example", &acme_ca).await,
        "the host's certificate, until acme has its own"
    );

    // Refused, changing nothing: a certificate for another name, a key
    // not the certificate's, an unknown tenant.
    for (args, why) in [
        (
            vec!["acme", "--cert", &globex_cert, "--key", &globex_key_file],
            "does not name pbx.acme.example",
        ),
        (
            vec!["acme", "--cert", &acme_cert, "--key", &globex_key_file],
            "does not belong",
        ),
        (
            vec!["nobody", "--cert", &acme_cert, "--key", &acme_key_file],
            "no tenant is named",
        ),
    ] {
        let mut command = vec!["tenant", "set-certificate"];
        command.extend(args);
        let (ok, _, err) = cli(&command);
        assert!(!ok && err.contains(why), "{command:?}: {err}");
        assert!(!err.contains("PRIVATE KEY"), "no key in errors: {err}");
    }
    assert!(!served_for(host.addr, "pbx.acme.example", &acme_ca).await);

    let (ok, out, err) = cli(&[
        "tenant",
        "set-certificate",
        "acme",
        "--cert",
        &acme_cert,
        "--key",
        &acme_key_file,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("served for pbx.acme.example"), "{out}");
    assert!(served_for(host.addr, "pbx.acme.example", &acme_ca).await);
    assert!(
        served_for(host.addr, "pbx.host.example", &host_ca).await,
        "every other name gets the host's"
    );
    let (ok, out, err) = cli(&["tenant", "list"]);
    assert!(ok && out.contains("its own"), "{out}{err}");
    // The CLI, which trusts exactly the host's certificate, still works.
    let (ok, out, err) = cli(&["extension", "list"]);
    assert!(ok, "{out}{err}");

    // Kept: served again after a restart.
    host.shutdown().await;
    let host = start().await;
    assert!(served_for(host.addr, "pbx.acme.example", &acme_ca).await);
    // Taken away and given again on another replica (played here through
    // the store and the record): this one follows.
    let store = host.pbxs.store.tenant("acme");
    assert!(certificates::discard(&store).expect("taken away elsewhere"));
    host.pbxs
        .tenants
        .set_certificate("acme", None)
        .expect("its record");
    host.pbxs.follow().expect("followed");
    assert!(!served_for(host.addr, "pbx.acme.example", &acme_ca).await);
    let certificate = certificates::Certificate::from_pem(
        acme_chain.as_bytes(),
        acme_key.as_bytes(),
        ("chain", "key"),
    )
    .expect("usable");
    certificates::keep(&store, &certificate).expect("given elsewhere");
    host.pbxs
        .tenants
        .set_certificate("acme", Some(certificate.digest()))
        .expect("its record");
    host.pbxs.follow().expect("followed");
    assert!(served_for(host.addr, "pbx.acme.example", &acme_ca).await);

    // Removed: the host's is served for acme again.
    let (ok, out, err) = cli(&["tenant", "remove-certificate", "acme"]);
    assert!(
        ok && out.contains("its own certificate is removed"),
        "{out}{err}"
    );
    assert!(!served_for(host.addr, "pbx.acme.example", &acme_ca).await);
    assert!(served_for(host.addr, "pbx.host.example", &host_ca).await);
    host.shutdown().await;

    // A host that serves plain HTTP has no certificates to choose from.
    let plain_dir = dir.path().join("plain");
    let plain = start_host(&plain_dir, options(&[], None)).await;
    let plain_cli = |args: &[&str]| pbx_at(Some(&plain_dir), args, "");
    let (ok, _, err) = plain_cli(&[
        "tenant",
        "add",
        "acme",
        "--public-url",
        "https://pbx.acme.example",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = plain_cli(&[
        "tenant",
        "set-certificate",
        "acme",
        "--cert",
        &acme_cert,
        "--key",
        &acme_key_file,
    ]);
    assert!(!ok && err.contains("plain HTTP"), "{err}");
    plain.shutdown().await;
}

/// Suspended, a tenant is not acted for either: a call event its host
/// queued waits, whatever ticks, until the operator resumes the tenant,
/// and then goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_s_queued_call_events_wait_for_its_resumption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = Tenant::start("acme", "1001", dir.path()).await;
    let data_dir = dir.path().join("pbx");
    let host = start_host(
        &data_dir,
        Options {
            deadline_ms: Some(500),
            // No tick but the test's own.
            journal_interval_ms: Some(3_600_000),
            ..options(&[&acme], None)
        },
    )
    .await;
    let url = host.url();
    let token = add_tenant(&data_dir, &acme).await;
    let api = AdminClient::for_tenant(&data_dir, "acme").expect("tenant client");
    install(&api, "salesforce_plugin")
        .await
        .expect("the plugin installs");
    connect(&api, &url, &acme).await;
    api.post("/extensions", &json!({"number": "1001", "name": "Ada"}))
        .await
        .expect("extension saved");

    // The org slower than a plugin call may take: the host queues the event.
    acme.org.faults().latency(Duration::from_millis(1_500));
    let ended = call_event("acme-held", "ended", "(212) 555-0142", "1001", NOON);
    send_with_failover([&url, &url], 0, Some(&acme.authority), &token, &ended).await;
    let journal = host.pbxs.get("acme").expect("served").state.journal.clone();
    assert_eq!(journal.queued("salesforce"), 1, "queued by the host");
    acme.org.faults().clear();

    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");
    let (ok, _, err) = cli(&["tenant", "suspend", "acme"]);
    assert!(ok, "{err}");
    let held = journal.tick(true).await;
    assert!(held.paused, "a suspended PBX's tick does nothing");
    assert_eq!(held.redelivered, 0);
    assert!(held.plugins.is_empty(), "no plugin work either");
    assert_eq!(journal.queued("salesforce"), 1, "still queued");
    let (ok, _, err) = cli(&["tenant", "resume", "acme"]);
    assert!(ok, "{err}");
    let sent = journal.tick(true).await;
    assert!(!sent.paused);
    assert_eq!(sent.redelivered, 1, "delivered once resumed");
    assert_eq!(journal.queued("salesforce"), 0);
    host.shutdown().await;
}

/// The operator moves a tenant to another host name: it is served there,
/// with everything it keeps, also after a restart; its old name reaches
/// it no more; the CLI names the Callback URL each CRM app now needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_moves_a_tenant_to_another_host_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("pbx");
    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");
    let host = start_host(&data_dir, Options::default()).await;
    let mut token = String::new();
    for name in ["acme", "globex"] {
        let url = format!("https://pbx.{name}.example");
        let (ok, out, err) = cli(&["tenant", "add", name, "--public-url", &url]);
        assert!(ok, "{err}");
        if name == "acme" {
            token = token_on_first_line(&out);
        }
    }
    let plugin = e2e_tests::component("salesforce_plugin");
    let plugin = plugin.to_str().expect("path");
    for args in [
        vec!["plugin", "install", plugin, "--tenant", "acme"],
        vec![
            "extension",
            "add",
            "1001",
            "--name",
            "Ada",
            "--tenant",
            "acme",
        ],
    ] {
        let (ok, _, err) = cli(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let extensions = |url: String, authority: &'static str, token: String| async move {
        reqwest::Client::new()
            .get(format!("{url}/api/extensions"))
            .header("host", authority)
            .bearer_auth(token)
            .send()
            .await
            .expect("answers")
    };

    let (ok, out, err) = cli(&[
        "tenant",
        "set-url",
        "acme",
        "--public-url",
        "https://pbx.acme-corp.example",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("acme is now at https://pbx.acme-corp.example"),
        "{out}"
    );
    assert!(
        out.contains(
            "give salesforce's app its new Callback URL: https://pbx.acme-corp.example/crm/salesforce/oauth/callback"
        ),
        "{out}"
    );
    let moved = extensions(host.url(), "pbx.acme-corp.example", token.clone()).await;
    assert_eq!(moved.status().as_u16(), 200);
    assert!(
        moved.text().await.expect("body").contains("1001"),
        "its extension"
    );
    let old = extensions(host.url(), "pbx.acme.example", token.clone()).await;
    assert_eq!(
        old.status().as_u16(),
        401,
        "the old name reaches the host's own PBX"
    );

    // Refused, changing nothing: another tenant's host name, a URL that is
    // not one, an unknown tenant.
    for (args, why) in [
        (
            [
                "tenant",
                "set-url",
                "acme",
                "--public-url",
                "https://pbx.globex.example",
            ],
            "already reaches another PBX",
        ),
        (
            [
                "tenant",
                "set-url",
                "acme",
                "--public-url",
                "ftp://pbx.acme.example",
            ],
            "http",
        ),
        (
            [
                "tenant",
                "set-url",
                "nobody",
                "--public-url",
                "https://pbx.nobody.example",
            ],
            "no tenant is named",
        ),
    ] {
        let (ok, _, err) = cli(&args);
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    let (ok, out, err) = cli(&["tenant", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("https://pbx.acme-corp.example"), "{out}");
    assert!(out.contains("https://pbx.globex.example"), "{out}");
    host.shutdown().await;

    // Kept: after a restart it is served at the new name only.
    let host = start_host(&data_dir, Options::default()).await;
    let moved = extensions(host.url(), "pbx.acme-corp.example", token.clone()).await;
    assert_eq!(moved.status().as_u16(), 200);
    let old = extensions(host.url(), "pbx.acme.example", token).await;
    assert_eq!(old.status().as_u16(), 401);
    host.shutdown().await;
}

/// A tenant whose admin token is gone (a crash between adding its record
/// and its token) is not served; a new token from the operator serves it
/// again, with nothing else of it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_left_without_its_token_is_served_again_with_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("pbx");
    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");
    let host = start_host(&data_dir, Options::default()).await;
    let (ok, _, err) = cli(&[
        "tenant",
        "add",
        "acme",
        "--public-url",
        "https://pbx.acme.example",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "extension",
        "add",
        "1001",
        "--name",
        "Ada",
        "--tenant",
        "acme",
    ]);
    assert!(ok, "{err}");
    host.shutdown().await;
    pbx_host::store::Store::open(&data_dir)
        .expect("store")
        .tenant("acme")
        .namespace("host/admin", Quota::UNLIMITED)
        .delete("token")
        .expect("token lost");

    let host = start_host(&data_dir, Options::default()).await;
    assert!(
        host.pbxs.get("acme").is_none(),
        "not served without a token"
    );
    let (ok, out, err) = cli(&["tenant", "new-token", "acme"]);
    assert!(ok, "{err}");
    let token = token_on_first_line(&out);
    assert!(host.pbxs.get("acme").is_some(), "served again");
    let extensions = reqwest::Client::new()
        .get(format!("{}/api/extensions", host.url()))
        .header("host", "pbx.acme.example")
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(extensions.status().as_u16(), 200);
    let body: Value = extensions.json().await.expect("json");
    assert!(body.to_string().contains("1001"), "its extension: {body}");
    host.shutdown().await;
}

/// The active version of plugin `id` in tenant `name` on `host`.
fn active_in(host: &RunningHost, name: &str, id: &str) -> Option<String> {
    active_of(&host.pbxs.get(name).expect("served").state.runtime, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_reaches_chosen_tenants_first_then_all_and_rolls_back_per_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("pbx");
    let host = start_host(&data_dir, Options::default()).await;
    let cli = |args: &[&str]| pbx_at(Some(&data_dir), args, "");
    for name in ["acme", "globex"] {
        let url = format!("https://pbx.{name}.example");
        let (ok, _, err) = cli(&["tenant", "add", name, "--public-url", &url]);
        assert!(ok, "{err}");
    }
    let files: Vec<String> = ["1.0.0", "2.0.0"]
        .iter()
        .map(|version| {
            let path = dir.path().join(format!("probe-{version}.wasm"));
            std::fs::write(&path, crate::plugin_versions::probe_version(version, &[]))
                .expect("write");
            path.to_str().expect("path").to_string()
        })
        .collect();
    let (ok, out, err) = cli(&["plugin", "install", &files[0], "--tenants", "all"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("default:") && out.contains("acme:") && out.contains("globex:"),
        "{out}"
    );
    let (ok, _, err) = cli(&[
        "plugin",
        "install",
        &files[1],
        "--no-activate",
        "--tenants",
        "all",
    ]);
    assert!(ok, "{err}");
    let versions = |host: &RunningHost| {
        ["default", "acme", "globex"].map(|name| active_in(host, name, "probe"))
    };
    let v = |s: &str| Some(s.to_string());
    assert_eq!(versions(&host), [v("1.0.0"), v("1.0.0"), v("1.0.0")]);

    // Chosen tenants first...
    let (ok, _, err) = cli(&["plugin", "activate", "probe", "2.0.0", "--tenants", "acme"]);
    assert!(ok, "{err}");
    assert_eq!(versions(&host), [v("1.0.0"), v("2.0.0"), v("1.0.0")]);
    // ...an unknown one stops the list where it is, saying so...
    let (ok, out, err) = cli(&[
        "plugin",
        "activate",
        "probe",
        "2.0.0",
        "--tenants",
        "default,nosuch,globex",
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("nosuch") && err.contains("those before it are done"),
        "{err}"
    );
    assert_eq!(versions(&host), [v("2.0.0"), v("2.0.0"), v("1.0.0")]);
    // ...then all.
    let (ok, _, err) = cli(&["plugin", "activate", "probe", "2.0.0", "--tenants", "all"]);
    assert!(ok, "{err}");
    assert_eq!(versions(&host), [v("2.0.0"), v("2.0.0"), v("2.0.0")]);

    // Rollback is per tenant.
    let (ok, _, err) = cli(&["plugin", "rollback", "probe", "--tenant", "globex"]);
    assert!(ok, "{err}");
    assert_eq!(versions(&host), [v("2.0.0"), v("2.0.0"), v("1.0.0")]);

    // Each version's file was compiled once for the three PBXs.
    let compiled: u64 = ["default", "acme", "globex"]
        .iter()
        .map(|name| {
            host.pbxs
                .get(name)
                .expect("served")
                .state
                .runtime
                .stats()
                .compiled
        })
        .sum();
    assert_eq!(compiled, 2, "one compilation per version");
    host.shutdown().await;
}
