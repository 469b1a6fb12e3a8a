//! A real browser for portal tests: Debian's Chromium driven through
//! chromedriver (WebDriver) with fantoccini.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A headless Chromium session; chromedriver is stopped on drop.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver on a free port and open a headless session.
    pub async fn start() -> Browser {
        for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: run `cargo xtask test` (it installs chromium and chromium-driver)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    // The emulated org's certificate comes from a test CA.
                    "--ignore-certificate-errors",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // The console, for `csp_violations`.
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        // chromedriver takes a moment to listen: retry the session until it does.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let attempt =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Open the portal at `base_url`, log in with the admin token and wait
    /// for the portal's page.
    pub async fn log_in(&self, base_url: &str, admin_token: &str) {
        self.client
            .goto(&format!("{base_url}/"))
            .await
            .expect("open the portal");
        self.find("#token")
            .await
            .send_keys(admin_token)
            .await
            .expect("type the token");
        self.find("#login").await.click().await.expect("log in");
        self.find("#status").await;
    }

    /// Wait for an element (CSS selector).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Click the element (CSS selector) once it is there.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Type `text` into the input (CSS selector) once it is there.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Wait until the element's text contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {needle:?} (last: {text:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The console messages since the last call that report a
    /// Content-Security-Policy violation (Chromium logs each one).
    pub async fn csp_violations(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser's console log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["message"].as_str())
            .filter(|m| m.contains("Content Security Policy"))
            .map(str::to_string)
            .collect()
    }

    /// Save a screenshot under target/artifacts; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = crate::artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Save a screenshot of one element (CSS selector) under
    /// target/artifacts; returns its path.
    pub async fn screenshot_of(&self, css: &str, name: &str) -> PathBuf {
        let png = self
            .find(css)
            .await
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot of {css}: {e}"));
        let dir = crate::artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Whether the element (CSS selector, once it is there) is shown.
    pub async fn shown(&self, css: &str) -> bool {
        self.find(css)
            .await
            .is_displayed()
            .await
            .unwrap_or_else(|e| panic!("is {css} displayed: {e}"))
    }

    /// The pop-up links listed on the agent page in this browser.
    pub async fn popup_links(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for item in self
            .client
            .find_all(Locator::Css("#popups li.popup a"))
            .await
            .expect("list")
        {
            urls.push(item.attr("href").await.ok().flatten().unwrap_or_default());
        }
        urls
    }

    /// Wait (20 s at most) until a listed pop-up link contains `needle`;
    /// the links then.
    pub async fn wait_popup_link(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let urls = self.popup_links().await;
            if urls.iter().any(|u| u.contains(needle)) {
                return urls;
            }
            assert!(Instant::now() < deadline, "{needle} never listed: {urls:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// End the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// chromedriver's console log command (not in the W3C protocol).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}
