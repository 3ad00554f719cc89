//! Local processes standing in for containers. Each runs in its own process
//! group so that termination reaches its children too.
//!
//! A container process outlives an agent that is killed (SIGKILL, crash), as a
//! container outlives a kubelet restart: each start is recorded in a [`Record`]
//! file next to the container's working directory, and the next agent adopts the
//! process ([`Proc::Adopted`]) instead of starting a second one, which could not
//! bind the pod's address and would leave the first one running unsupervised.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::{Error, Result};

/// Exit code reported for an adopted process that exited: not our child, so its
/// status went to whoever reaped it.
pub const UNKNOWN_EXIT: i32 = -1;

/// A container's process: started by this agent, or adopted from a previous one.
#[derive(Debug)]
pub enum Proc {
    Child(Child),
    /// Still running when this agent started; `start` guards against pid reuse.
    Adopted {
        pid: u32,
        start: u64,
    },
}

impl Proc {
    pub fn id(&self) -> Option<u32> {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Adopted { pid, .. } => Some(*pid),
        }
    }

    /// The exit code once the process has exited.
    pub fn try_exit(&mut self) -> std::io::Result<Option<i32>> {
        match self {
            Proc::Child(c) => Ok(c.try_wait()?.map(exit_code)),
            Proc::Adopted { pid, start } => Ok((!alive(*pid, *start)).then_some(UNKNOWN_EXIT)),
        }
    }

    async fn wait(&mut self) -> Option<i32> {
        match self {
            Proc::Child(c) => c.wait().await.ok().map(exit_code),
            Proc::Adopted { pid, start } => {
                while alive(*pid, *start) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(UNKNOWN_EXIT)
            }
        }
    }
}

/// State and start time (clock ticks after boot) of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses; fields 3.. follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?; // field 22, starttime
    Some((state, start))
}

/// Start time of a live (not zombie) `pid`.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid)
        .filter(|(state, _)| !matches!(state, 'Z' | 'X'))
        .map(|(_, start)| start)
}

fn alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// What the next agent needs to adopt a container's process:
/// `<state dir>/pods/<namespace>_<pod>/<container>.run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub uid: String,
    pub pid: u32,
    pub start: u64,
    pub started_at: Time,
    pub restart_count: i32,
}

impl Record {
    pub fn write(&self, path: &Path) {
        let tmp = path.with_extension("run.tmp");
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "process record not written");
        }
    }

    fn read(path: &Path) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// The record at `path` of pod `uid` whose process still runs.
    pub fn adoptable(path: &Path, uid: &str) -> Option<Record> {
        Record::read(path).filter(|r| r.uid == uid && alive(r.pid, r.start))
    }
}

/// Kills the recorded processes of pods not in `uids` (deleted while no agent ran) and
/// removes their records. Returns how many processes were killed.
pub fn sweep_records(pods_dir: &Path, uids: &BTreeSet<String>) -> usize {
    let records = std::fs::read_dir(pods_dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|pod| {
            std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "run"));
    let mut killed = 0;
    for path in records.collect::<Vec<PathBuf>>() {
        let Some(record) = Record::read(&path) else {
            continue;
        };
        if uids.contains(&record.uid) {
            continue;
        }
        if alive(record.pid, record.start) {
            tracing::info!(pid = record.pid, path = %path.display(), "killing the process of a pod that is gone");
            signal_group(Some(record.pid), Signal::SIGKILL);
            killed += 1;
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

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

/// SIGTERM to the group, up to `grace` to exit, then SIGKILL. Returns the exit code.
pub async fn terminate(proc: &mut Proc, grace: Duration) -> Option<i32> {
    let pid = proc.id();
    if let Ok(Some(code)) = proc.try_exit() {
        kill_leftovers(pid);
        return Some(code);
    }
    signal_group(pid, Signal::SIGTERM);
    let code = match tokio::time::timeout(grace, proc.wait()).await {
        Ok(code) => code,
        Err(_) => {
            signal_group(pid, Signal::SIGKILL);
            proc.wait().await
        }
    };
    kill_leftovers(pid);
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[tokio::test]
    async fn a_recorded_process_is_adoptable_until_it_exits_and_swept_when_its_pod_is_gone() {
        let dir = std::env::temp_dir().join(format!("auren-agent-proc-{}", std::process::id()));
        let pod_dir = dir.join("ns_pod");
        let argv = ["sleep".to_owned(), "30".to_owned()];
        let child = spawn(
            &argv,
            &BTreeMap::new(),
            &pod_dir.join("c"),
            &dir.join("c.log"),
        )
        .unwrap();
        let pid = child.id().unwrap();
        let record = Record {
            uid: "uid-1".into(),
            pid,
            start: start_time(pid).unwrap(),
            started_at: Time(Timestamp::now()),
            restart_count: 2,
        };
        let path = pod_dir.join("c.run");
        record.write(&path);
        assert_eq!(
            Record::adoptable(&path, "uid-1").map(|r| r.restart_count),
            Some(2)
        );
        assert!(Record::adoptable(&path, "another pod").is_none());
        let mut adopted = Proc::Adopted {
            pid,
            start: record.start,
        };
        assert_eq!(adopted.try_exit().unwrap(), None);

        let kept = BTreeSet::from(["uid-1".to_owned()]);
        assert_eq!(
            sweep_records(&dir, &kept),
            0,
            "a listed pod keeps its process"
        );
        assert_eq!(sweep_records(&dir, &BTreeSet::new()), 1);
        assert!(!path.exists());
        let mut child = child;
        let _ = child.wait().await;
        assert_eq!(adopted.try_exit().unwrap(), Some(UNKNOWN_EXIT));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
