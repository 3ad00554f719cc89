//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! installed by `scripts/deps.sh`): a few commands of the W3C protocol spoken with reqwest,
//! enough to load a page, read it with a script, click and take a screenshot.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags for this machine's closed network: no background connections, no GPU, no sandbox
/// (root), a fresh profile.
fn chromium_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// A chromedriver process with one Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} missing: `bash scripts/deps.sh e2e` installs chromium and chromium-driver"
            );
        }
        let port = auren_testkit::free_port();
        let profile = auren_testkit::scratch_dir("auren-e2e-chromium");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        wait_ready(&http, &base).await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": chromium_args(&profile)},
        }}});
        let answer = send(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            caps,
        )
        .await;
        let session = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        send(&self.http, method, &url, body).await
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.command(reqwest::Method::POST, "/execute/sync", body)
            .await
    }

    /// Runs `script` every 250 ms until it returns something other than null/false; panics
    /// after `secs` with `what` and the page's text.
    pub async fn wait_for(&self, what: &str, secs: u64, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self.eval(script).await;
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let text = self.eval("return document.body.innerText").await;
                panic!(
                    "timed out after {secs} s waiting for the page to show {what}; page:\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Clicks the first element matching `css` with a real (WebDriver) click; retries while
    /// the page re-renders it.
    pub async fn click(&self, css: &str) {
        let start = Instant::now();
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let found = self
                .http
                .post(&url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap();
            let found: Value = found.json().await.unwrap();
            if let Some(id) = found["value"][ELEMENT].as_str() {
                let click = format!("/element/{id}/click");
                let url = format!("{}/session/{}{click}", self.base, self.session);
                let answer = self.http.post(&url).json(&json!({})).send().await.unwrap();
                let success = answer.status().is_success();
                let error: Value = answer.json().await.unwrap_or(Value::Null);
                // A click that opened a confirm dialog happened: the dialog is the answer.
                if success || error["value"]["error"] == "unexpected alert open" {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "cannot click {css}: {found}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The text of the open user prompt (a `confirm` dialog), waiting up to `secs` for one.
    pub async fn prompt_text(&self, secs: u64) -> String {
        let url = format!("{}/session/{}/alert/text", self.base, self.session);
        let start = Instant::now();
        loop {
            let answer = self.http.get(&url).send().await.unwrap();
            let success = answer.status().is_success();
            let value: Value = answer.json().await.unwrap_or(Value::Null);
            if success {
                return value["value"].as_str().unwrap_or_default().to_owned();
            }
            assert_eq!(value["value"]["error"], "no such alert", "{value}");
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "no dialog within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answers the open user prompt: OK (`accept`) or Cancel.
    pub async fn answer_prompt(&self, accept: bool) {
        let path = if accept {
            "/alert/accept"
        } else {
            "/alert/dismiss"
        };
        self.command(reqwest::Method::POST, path, json!({})).await;
    }

    /// Saves a PNG of the viewport at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let answer = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer.as_str().expect("base64 PNG"))
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Closes the session (Chromium exits) and stops chromedriver.
    pub async fn close(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(&url).send().await;
        self.stop();
    }

    fn stop(&mut self) {
        // chromedriver runs in its own process group with Chromium under it.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/status")).send().await {
            let status: Value = r.json().await.unwrap_or(Value::Null);
            if status["value"]["ready"] == true {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One WebDriver call; panics with the driver's error; returns `value` of the answer.
async fn send(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Value) -> Value {
    let mut request = http.request(method.clone(), url);
    if method != reqwest::Method::GET {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let value: Value = answer.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "WebDriver {method} {url}: {status} {value}"
    );
    value["value"].clone()
}
