//! `cargo bench -p salesforce-emulator`: an org of 50,000 users; the time
//! to serve one 2,000-record query page over HTTPS (keep-alive), and to
//! page through all users.

use std::time::{Duration, Instant};

use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig};
use serde_json::Value;

const USERS: usize = 50_000;
const SAMPLES: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let started = Instant::now();
        let emu = Emulator::start(EmulatorConfig {
            users: USERS,
            apps: vec![ConnectedApp::new("bench", "secret", "https://localhost/cb")],
            api_daily_limit: 1_000_000,
            ..EmulatorConfig::default()
        })
        .await?;
        println!(
            "emulator: org of {USERS} users started in {:.0} ms",
            ms(started.elapsed())
        );
        let token = emu.issue_token("bench", "admin@example.org")?.access_token;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                emu.ca_cert_pem().as_bytes(),
            )?)
            .tls_built_in_root_certs(false)
            .build()?;
        let base = emu.base_url();
        let first_url = format!(
            "{base}/services/data/v67.0/query?q=SELECT+Id,Name,Username,Email,IsActive+FROM+User"
        );
        let first: Value = client
            .get(&first_url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let next = first["nextRecordsUrl"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(!next.is_empty(), "expected a second page");
        let page_url = format!("{base}{next}");

        // Warm up the connection, then time one 2,000-record page (a
        // nextRecordsUrl page, which is what clients fetch most).
        for _ in 0..3 {
            client
                .get(&page_url)
                .bearer_auth(&token)
                .send()
                .await?
                .bytes()
                .await?;
        }
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let t = Instant::now();
            let body = client
                .get(&page_url)
                .bearer_auth(&token)
                .send()
                .await?
                .bytes()
                .await?;
            times.push(t.elapsed());
            anyhow::ensure!(body.len() > 100_000, "short page");
        }
        times.sort();
        let (median, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
        println!(
            "emulator: 2000-record page median {:.1} ms p95 {:.1} ms (target <= 20 ms)",
            ms(median),
            ms(p95)
        );

        // First page including the query itself (filter + cursor).
        let mut firsts = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            client
                .get(&first_url)
                .bearer_auth(&token)
                .send()
                .await?
                .bytes()
                .await?;
            firsts.push(t.elapsed());
        }
        firsts.sort();
        println!(
            "emulator: first page (runs the SOQL over {USERS} users) median {:.1} ms",
            ms(percentile(&firsts, 0.5))
        );

        // Page through everything.
        let t = Instant::now();
        let mut url = first_url.clone();
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page: Value = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            seen += page["records"].as_array().map_or(0, Vec::len);
            pages += 1;
            match page["nextRecordsUrl"].as_str() {
                Some(n) => url = format!("{base}{n}"),
                None => break,
            }
        }
        anyhow::ensure!(seen == USERS, "paged {seen} of {USERS}");
        println!(
            "emulator: paged through all {USERS} users ({pages} pages) in {:.0} ms",
            ms(t.elapsed())
        );
        emu.shutdown().await;
        anyhow::Ok(())
    })
}
