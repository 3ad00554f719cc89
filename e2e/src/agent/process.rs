//! Local processes standing in for containers. Each runs in its own process
//! group so that termination reaches its children too.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{Error, Result};

/// Variables of the agent's own environment passed to every process
/// (KUBECONFIG lets a pod reach the local API with `Client::try_default`).
const PASSED_THROUGH: [&str; 8] = [
    "KUBECONFIG",
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "RUST_BACKTRACE",
];

/// Starts `argv` with exactly `env` (plus [`PASSED_THROUGH`]), in `cwd`,
/// stdout and stderr appended to `log`.
pub fn spawn(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    log: &Path,
) -> Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Invalid("empty command".to_owned()))?;
    std::fs::create_dir_all(cwd).map_err(|e| Error::io(cwd, e))?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(log, e))?;
    let err = out.try_clone().map_err(|e| Error::io(log, e))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(
            PASSED_THROUGH
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
        )
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn().map_err(|e| Error::io(program, e))
}

/// Exit code as a shell reports it (128 + signal for a signalled process).
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // ESRCH (group already gone) is the normal outcome after an exit.
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// Kills whatever is left of the process group of `pid` (after the leader exited).
pub fn kill_leftovers(pid: Option<u32>) {
    signal_group(pid, Signal::SIGKILL);
}

/// SIGTERM to the group, up to `grace` to exit, then SIGKILL. Returns the exit status.
pub async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    if let Ok(Some(status)) = child.try_wait() {
        kill_leftovers(pid);
        return Some(status);
    }
    signal_group(pid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            signal_group(pid, Signal::SIGKILL);
            child.wait().await.ok()
        }
    };
    kill_leftovers(pid);
    status
}
