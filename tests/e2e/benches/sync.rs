//! A user sync of 50,000 users from the emulator: through the host and the
//! plugin, side by side with fetching the same pages raw, and with
//! simple-salesforce's `query_all` of the same users. Target: the plugin's
//! sync within 1.2 × the raw fetch. Then a full sync side by side with a
//! refresh after 10 changes: API requests and time of each. Target: the
//! refresh in at most 2 requests and 1/10 of the full sync's time.

use std::time::{Duration, Instant};

use e2e_tests::org::{CONSUMER_KEY, Setup, World};
use salesforce_plugin::users::USERS_SOQL;
use serde_json::{Value, json};

const USERS: usize = 50_000;
const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Start a sync and wait for its end, polling every 2 ms (the shared
/// helper polls every 50 ms, which added up to 50 ms to a ~250 ms figure).
/// Returns the job as it ended and its steps' progress as seen.
async fn sync_users(world: &World) -> anyhow::Result<(Value, Vec<u64>)> {
    const PATH: &str = "/crm/salesforce/users/sync";
    let mut job = world.api.post(PATH, &json!({})).await?;
    let mut seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while job["running"].as_bool() == Some(true) {
        anyhow::ensure!(Instant::now() < deadline, "the sync never ended: {job}");
        let fetched = job["fetched"].as_u64().unwrap_or(0);
        if fetched > 0 && seen.last() != Some(&fetched) {
            seen.push(fetched);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        job = world.api.get(PATH).await?;
    }
    Ok((job, seen))
}

/// Make the next sync a full one: save another `user-types` than the
/// last sync's (every generated user is Standard, so both list the same).
async fn full_sync_next(world: &World, run: usize) -> anyhow::Result<()> {
    let value = if run % 2 == 0 { "all" } else { "standard" };
    world
        .api
        .put(
            "/crm/salesforce/settings",
            &json!({"settings": [{"key": "user-types", "value": value}]}),
        )
        .await?;
    Ok(())
}

/// 10 changes to the org's users (7 renamed, 2 deactivated, 1 made a
/// Chatter Free user), each bumping its `SystemModstamp`; `run` picks
/// other users each time.
fn change_ten_users(world: &World, run: usize) -> anyhow::Result<()> {
    let ids: Vec<String> = world
        .org
        .users()
        .iter()
        .filter(|u| u["IsActive"] == true && u["UserType"] == "Standard")
        .skip(1 + run * 10)
        .take(10)
        .filter_map(|u| u["Id"].as_str().map(str::to_string))
        .collect();
    anyhow::ensure!(ids.len() == 10, "not enough users to change");
    for (k, id) in ids.iter().enumerate() {
        let mut fields = serde_json::Map::new();
        match k {
            0..=6 => fields.insert("FirstName".into(), json!(format!("Changed{run}x{k}"))),
            7 | 8 => fields.insert("IsActive".into(), json!(false)),
            _ => fields.insert("UserType".into(), json!("CsnOnly")),
        };
        world
            .org
            .update_user(id, fields)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Every page of the query, bodies read, nothing else.
async fn raw_fetch(world: &World, token: &str) -> anyhow::Result<usize> {
    let ca = reqwest::Certificate::from_pem(world.org.ca_cert_pem().as_bytes())?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    let base = world.org.base_url();
    let mut url = format!(
        "{base}/services/data/v67.0/query?q={}",
        url::form_urlencoded::byte_serialize(USERS_SOQL.as_bytes()).collect::<String>()
    );
    let mut records = 0;
    loop {
        let page: serde_json::Value = client
            .get(&url)
            .bearer_auth(token)
            .header("Sforce-Query-Options", "batchSize=2000")
            .send()
            .await?
            .json()
            .await?;
        records += page["records"].as_array().map_or(0, Vec::len);
        match page["nextRecordsUrl"].as_str() {
            Some(next) => url = format!("{base}{next}"),
            None => return Ok(records),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let world = World::start(Setup {
        users: USERS,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    let token = world
        .org
        .issue_token(CONSUMER_KEY, "admin@example.org")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .access_token;

    let mut raw = Vec::new();
    let mut plugin = Vec::new();
    let mut active = 0;
    for run in 0..RUNS {
        let started = Instant::now();
        active = raw_fetch(&world, &token).await?;
        raw.push(started.elapsed());

        // A sync after a sync is a refresh unless the settings changed.
        full_sync_next(&world, run).await?;
        let started = Instant::now();
        let (job, progress) = sync_users(&world).await?;
        plugin.push(started.elapsed());
        anyhow::ensure!(job["ok"] == true, "sync failed: {job}");
        anyhow::ensure!(
            job["fetched"].as_u64() == Some(active as u64),
            "{job} vs {active}"
        );
        println!(
            "sync: run {}: raw {:.0} ms, sync {:.0} ms; progress seen: {progress:?}",
            run + 1,
            raw[run].as_secs_f64() * 1e3,
            plugin[run].as_secs_f64() * 1e3,
        );
    }
    let (raw, plugin) = (median(raw), median(plugin));
    println!(
        "sync: {active} active users: raw page fetch {:.0} ms, plugin sync through the host {:.0} ms, ratio {:.2} (target <= 1.20) (medians of {RUNS})",
        raw.as_secs_f64() * 1e3,
        plugin.as_secs_f64() * 1e3,
        plugin.as_secs_f64() / raw.as_secs_f64()
    );

    // A full sync side by side with a refresh after 10 changes.
    let (mut full, mut refresh) = (Vec::new(), Vec::new());
    let (mut full_requests, mut refresh_requests) = (0, 0);
    for run in 0..RUNS {
        full_sync_next(&world, run + RUNS).await?;
        let before = world.org.api_usage().0;
        let started = Instant::now();
        let (job, _) = sync_users(&world).await?;
        full.push(started.elapsed());
        full_requests = world.org.api_usage().0 - before;
        anyhow::ensure!(job["ok"] == true, "full sync failed: {job}");

        change_ten_users(&world, run)?;
        let before = world.org.api_usage().0;
        let started = Instant::now();
        let (job, _) = sync_users(&world).await?;
        refresh.push(started.elapsed());
        refresh_requests = refresh_requests.max(world.org.api_usage().0 - before);
        anyhow::ensure!(job["ok"] == true, "refresh failed: {job}");
        println!(
            "refresh: run {}: full sync {:.0} ms ({full_requests} requests), refresh after 10 changes {:.1} ms ({} requests)",
            run + 1,
            full[run].as_secs_f64() * 1e3,
            refresh[run].as_secs_f64() * 1e3,
            world.org.api_usage().0 - before,
        );
    }
    let (full, refresh) = (median(full), median(refresh));
    let ratio = refresh.as_secs_f64() / full.as_secs_f64();
    println!(
        "refresh: {USERS} users: full sync {:.0} ms in {full_requests} API requests; refresh after 10 changes {:.1} ms in {refresh_requests} API requests (at most, of {RUNS}); time ratio {ratio:.3} (targets: <= 2 requests, <= 0.100) (medians of {RUNS})",
        full.as_secs_f64() * 1e3,
        refresh.as_secs_f64() * 1e3,
    );
    anyhow::ensure!(
        refresh_requests <= 2,
        "a refresh made {refresh_requests} API requests"
    );
    anyhow::ensure!(ratio <= 0.1, "a refresh took {ratio:.3} of a full sync");

    // simple-salesforce's query_all of the same users, same org.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/bench_query_all.py");
    let out =
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(&script)
            .env("SF_INSTANCE", world.org.base_url())
            .env("SF_TOKEN", &token)
            .env("SF_CA", &world.ca_path)
            .env("SF_SOQL", USERS_SOQL)
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<f64>() {
        Ok(ms) if out.status.success() => println!(
            "sync: simple-salesforce query_all {ms:.0} ms; plugin sync / simple-salesforce = {:.2}",
            plugin.as_secs_f64() * 1e3 / ms
        ),
        _ => println!(
            "sync: simple-salesforce did not run ({}): install it with `cargo xtask test` first",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
        ),
    }
    Ok(())
}
