//! What the built binary prints about its own configuration: `--help` shows where each setting
//! comes from, but never the value of a secret taken from the environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const PASSWORD: &str = "hunter2-not-for-help";
const ADMIN_TOKEN: &str = "admin-token-not-for-help";

#[test]
fn help_names_the_secret_variables_but_never_prints_their_values() {
    let out = Command::new(env!("CARGO_BIN_EXE_auren-runtime"))
        .arg("--help")
        .env(
            "DATABASE_URL",
            format!("postgres://auren:{PASSWORD}@db.internal:5432/auren"),
        )
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KAFKA_TOPIC", "shown-topic")
        .output()
        .expect("run auren-runtime --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("DATABASE_URL") && help.contains("ADMIN_TOKEN"),
        "{help}"
    );
    assert!(
        help.contains("shown-topic"),
        "clap does show other variables' values, so the check below can fail: {help}"
    );
    for secret in [PASSWORD, ADMIN_TOKEN] {
        assert!(!help.contains(secret), "--help printed {secret}:\n{help}");
    }
}
