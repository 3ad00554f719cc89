//! `kubectl auren dashboard` in a real browser (issue 14, part 3): the built `kubectl-auren`
//! serves the page against the test's namespace, headless Chromium (Debian's, over WebDriver)
//! loads it once, and the page follows a v1 → v2 rollout without a reload: phases, the new
//! release, measurement points in the chart, history rows; with `--allow-actions` a click on
//! promote promotes; without it there are no buttons and a POST is refused.
//!
//! Issue 26, point 7: an action needs the token the dashboard printed in its URL (a POST
//! without it or with another one is 403), no page may frame the dashboard, and promote asks
//! first: dismissed, nothing is sent; accepted, the action goes through with the token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use auren_operator::api::{AurenRuntime, Phase};
use browser::Browser;
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::{Env, NAME, TestNs, built_bin, state_dir};

/// A `kubectl-auren dashboard` process; killed on drop.
struct DashboardProcess {
    child: Child,
    /// The URL it printed, with its `?token=`: what the user opens.
    url: String,
    /// `http://127.0.0.1:<port>/`.
    base: String,
    token: String,
}

const TOKEN_HEADER: &str = "x-auren-dashboard-token";

impl DashboardProcess {
    /// Starts the dashboard of `namespace` on a free port; returns once it printed its URL.
    fn start(namespace: &str, extra: &[&str]) -> DashboardProcess {
        let mut child = Command::new(built_bin("kubectl-auren"))
            .args(["-n", namespace, "dashboard", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start kubectl-auren dashboard");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        eprintln!("{}", line.trim_end());
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        let (base, token) = url
            .split_once("?token=")
            .unwrap_or_else(|| panic!("no token in {url}"));
        assert_eq!(token.len(), 32, "{url}");
        DashboardProcess {
            base: base.to_owned(),
            token: token.to_owned(),
            url,
            child,
        }
    }

    fn action_url(&self, namespace: &str, name: &str, action: &str) -> String {
        format!("{}api/runtimes/{namespace}/{name}/{action}", self.base)
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifact(name: &str) -> PathBuf {
    state_dir().join("artifacts").join(name)
}

/// A script that returns `expr` evaluated on the card of `key`, or null while there is none.
fn on_card(key: &str, expr: &str) -> String {
    format!(
        "const card = document.querySelector('[data-key=\"{key}\"]');\n\
         if (!card) return null;\n{expr}"
    )
}

const PAGE_MARK: &str = "return window.__aurenPage || null";

/// (1) The page follows v1 → v2 live, and promote pressed on the page promotes v2.
#[tokio::test]
async fn the_page_follows_a_rollout_live_and_its_promote_button_promotes() {
    let env = Env::start("dash").await;
    let key = format!("{}/{NAME}", env.ns.name);
    let dashboard = DashboardProcess::start(&env.ns.name, &["--allow-actions"]);
    let browser = Browser::start().await;
    browser.goto(&dashboard.url).await;
    browser
        .wait_for(
            "the empty namespace",
            20,
            "return document.body.innerText.includes('No AurenRuntime here yet')",
        )
        .await;
    // A reload would drop this mark: every later check proves the page updated in place.
    browser
        .eval("window.__aurenPage = 'loaded once'; return null")
        .await;

    let v1 = env.install("auren/runtime:v1").await;
    let phase = on_card(&key, "return card.querySelector('.phase').textContent");
    let stable = on_card(
        &key,
        "const h = card.querySelector('tr[data-role=stable] .hash'); return h && h.textContent",
    );
    browser
        .wait_for(
            "Healthy",
            30,
            &on_card(
                &key,
                "return card.querySelector('.phase').textContent === 'Healthy'",
            ),
        )
        .await;
    assert!(v1.starts_with(browser.eval(&stable).await.as_str().unwrap()));
    let history_rows = on_card(
        &key,
        "return card.querySelectorAll('table.history tbody tr').length",
    );
    assert_eq!(
        browser.eval(&history_rows).await,
        json!(1),
        "v1's install is history"
    );

    let mut v2_spec = env.spec("auren/runtime:v2", &[]);
    v2_spec["strategy"]["blueGreen"]["autoPromotion"] = json!(false);
    let v2 = env.release(v2_spec).await;
    let candidate = on_card(
        &key,
        "const h = card.querySelector('tr[data-role=candidate] .hash'); return h && h.textContent",
    );
    let shown = browser
        .wait_for("v2 as the candidate", 30, &candidate)
        .await;
    assert!(
        v2.starts_with(shown.as_str().unwrap()),
        "{shown} is not {v2}"
    );
    let moving = browser
        .wait_for(
            "a phase other than Healthy",
            30,
            &on_card(
                &key,
                "const p = card.querySelector('.phase').textContent; return p !== 'Healthy' && p",
            ),
        )
        .await;
    eprintln!("phase on the page during the rollout: {moving}");
    let points = browser
        .wait_for(
            "a measurement point in the chart",
            60,
            &on_card(&key, "const n = card.querySelectorAll('svg.chart circle.point').length; return n > 0 && n"),
        )
        .await;
    eprintln!("{points} measurement points");
    browser
        .wait_for(
            "Paused (AwaitingPromotion) and the buttons",
            90,
            &on_card(
                &key,
                "return card.querySelector('.phase').textContent === 'Paused' \
                && card.querySelector('.reason').textContent === 'AwaitingPromotion' \
                && card.querySelectorAll('button[data-action]').length === 3",
            ),
        )
        .await;
    let preview = on_card(
        &key,
        "return card.querySelector('.traffic .preview').textContent",
    );
    assert!(v2.starts_with(browser.eval(&preview).await.as_str().unwrap()));
    let screenshot = artifact("dashboard.png");
    browser.screenshot(&screenshot).await;
    eprintln!("screenshot: {}", screenshot.display());

    // An action the dashboard does not know of, or on a resource it does not show.
    let http = reqwest::Client::new();
    for (url, code) in [
        (dashboard.action_url(&env.ns.name, NAME, "delete"), 404),
        (dashboard.action_url(&env.ns.name, "nosuch", "promote"), 404),
        (dashboard.action_url("kube-system", NAME, "promote"), 404),
    ] {
        let answer = http
            .post(&url)
            .header(TOKEN_HEADER, &dashboard.token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), code, "{url}");
        let body: Value = answer.json().await.unwrap();
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    // A page elsewhere that rebound its own name to 127.0.0.1 (DNS rebinding) still sends
    // that name as Host: refused, the board included.
    let rebound = dashboard.base.replacen("127.0.0.1", "rebound.example", 1);
    for request in [
        http.post(dashboard.action_url(&env.ns.name, NAME, "promote"))
            .header(TOKEN_HEADER, &dashboard.token),
        http.get(format!("{}api/runtimes", dashboard.base)),
    ] {
        let host = rebound.trim_start_matches("http://").trim_end_matches('/');
        let answer = request.header("host", host).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 403);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "ForeignHost", "{body}");
    }
    // Without the token, or with another, a promote is refused: any peer that can reach the
    // port (a dashboard on --address 0.0.0.0) would otherwise act with the user's credentials.
    let promote = dashboard.action_url(&env.ns.name, NAME, "promote");
    let wrong = "0".repeat(32);
    for (token, error) in [
        (None, "ForeignRequest"),
        (Some(wrong.as_str()), "WrongToken"),
    ] {
        let mut request = http.post(&promote);
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{token:?}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
    }
    // No page may frame the dashboard.
    let page = http.get(&dashboard.base).send().await.unwrap();
    assert_eq!(
        page.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(
        env.ns.status(NAME).await.phase,
        Some(Phase::Paused),
        "nothing was done"
    );

    // Promote asks first. Every POST the page makes is counted from here on.
    browser
        .eval(
            "window.__posts = 0; const send = window.fetch; \
             window.fetch = (url, init) => { \
               if (init && init.method === 'POST') window.__posts += 1; \
               return send(url, init); }; return null",
        )
        .await;
    let button = format!("[data-key=\"{key}\"] button[data-action=promote]");
    browser.click(&button).await;
    let question = browser.prompt_text(10).await;
    assert!(
        question.contains("Promote") && question.contains(NAME),
        "{question}"
    );
    browser.answer_prompt(false).await;
    // The click handler returned when confirm() did: a POST would already be counted.
    assert_eq!(
        browser.eval("return window.__posts").await,
        json!(0),
        "dismissed: nothing sent"
    );
    assert!(
        !env.ns
            .runtimes()
            .get(NAME)
            .await
            .unwrap()
            .annotations()
            .contains_key("auren.io/promote"),
        "dismissed: no promote requested"
    );
    assert_eq!(
        browser.eval("return location.search").await,
        json!(""),
        "the token left the address bar"
    );

    browser.click(&button).await;
    browser.prompt_text(10).await;
    browser.answer_prompt(true).await;
    let st = env
        .ns
        .wait_status(NAME, "v2 promoted by the button", 60, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2)
        })
        .await;
    assert!(
        st.acknowledged.promote.is_some(),
        "the operator acted on auren.io/promote"
    );
    browser
        .wait_for(
            "v2 stable, Healthy, promoted by hand in the history",
            30,
            &on_card(&key, "return card.querySelector('.phase').textContent === 'Healthy' \
                && card.querySelector('table.history tbody tr td.outcome').textContent === 'Promoted' \
                && card.querySelectorAll('table.history tbody tr').length >= 2"),
        )
        .await;
    assert!(v2.starts_with(browser.eval(&stable).await.as_str().unwrap()));
    let result = browser
        .eval(&on_card(
            &key,
            "return card.querySelector('.action-result').textContent",
        ))
        .await;
    assert!(
        result.as_str().unwrap().contains("promote requested"),
        "the dashboard accepted the page's token: {result}"
    );
    assert_eq!(browser.eval("return window.__posts").await, json!(1));
    assert_eq!(
        browser.eval(PAGE_MARK).await,
        json!("loaded once"),
        "the page was never reloaded"
    );
    assert_eq!(browser.eval(&phase).await, json!("Healthy"));
    browser
        .screenshot(&artifact("dashboard-promoted.png"))
        .await;
    browser.close().await;
}

/// (2) Read-only by default: no buttons on the page, and a POST is refused with a reason and
/// changes nothing.
#[tokio::test]
async fn a_read_only_dashboard_has_no_buttons_and_refuses_actions() {
    let ns = TestNs::new("dash-ro").await;
    let ar: AurenRuntime = serde_json::from_value(json!({
        "apiVersion": "auren.io/v1alpha1", "kind": "AurenRuntime",
        "metadata": {"name": NAME}, "spec": {"image": "auren/runtime:v1"},
    }))
    .unwrap();
    ns.runtimes()
        .create(&PostParams::default(), &ar)
        .await
        .unwrap();
    let dashboard = DashboardProcess::start(&ns.name, &[]);
    let browser = Browser::start().await;
    browser.goto(&dashboard.url).await;
    let key = format!("{}/{NAME}", ns.name);
    browser
        .wait_for(
            "the AurenRuntime, read-only",
            20,
            &on_card(
                &key,
                "return document.getElementById('mode').textContent === 'read-only'",
            ),
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('button').length")
            .await,
        json!(0)
    );
    assert_eq!(
        browser
            .eval(&on_card(
                &key,
                "return card.querySelector('.phase').textContent"
            ))
            .await,
        json!("-")
    );

    let answer = reqwest::Client::new()
        .post(dashboard.action_url(&ns.name, NAME, "abort"))
        .header(TOKEN_HEADER, &dashboard.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "ActionsNotAllowed", "{body}");
    let annotations = ns
        .runtimes()
        .get(NAME)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("auren.io/abort"),
        "{annotations:?}"
    );
    browser.close().await;
}
