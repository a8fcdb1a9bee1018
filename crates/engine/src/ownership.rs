//! Who owns a `running` run, and whether that owner is still alive: a run
//! whose process is gone (killed, crashed, machine rebooted) is stale, shown
//! as interrupted by `elspeth runs` and accepted by `elspeth resume`.
//!
//! On the owner's host the process table decides (`/proc/<pid>` exists and
//! is an `elspeth` process); on another host only the heartbeat can, and a
//! heartbeat older than [`HEARTBEAT_STALE_AFTER`] counts as gone.

use std::path::Path;

use contracts::records::{Run, RunState};

/// How old a heartbeat from another host may be before its run counts as stale.
pub const HEARTBEAT_STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// This machine's name, as recorded in a run's owner.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// What can be said of a run's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The run has ended; nobody owns it.
    Ended,
    /// The owning process is alive (or, on another host, heartbeats recently).
    Alive,
    /// The owner is gone; the reason says how we know.
    Gone(String),
}

/// Whether the process that owns `run` is still alive.
pub fn liveness(run: &Run) -> Liveness {
    match run.state {
        RunState::Completed { .. } | RunState::Failed { .. } | RunState::Interrupted { .. } => return Liveness::Ended,
        RunState::Running => {}
    }
    let Some(owner) = &run.owner else {
        return Liveness::Gone("the run records no owner".to_owned());
    };
    if owner.host == host_name() {
        if owner.pid == std::process::id() || is_elspeth_process(owner.pid) {
            Liveness::Alive
        } else {
            Liveness::Gone(format!("process {} on {} is gone", owner.pid, owner.host))
        }
    } else {
        let age = chrono::Utc::now() - owner.heartbeat_at;
        if age > HEARTBEAT_STALE_AFTER {
            Liveness::Gone(format!("no heartbeat from {} for {} min", owner.host, age.num_minutes()))
        } else {
            Liveness::Alive
        }
    }
}

fn is_elspeth_process(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    match std::fs::read(proc.join("cmdline")) {
        Ok(cmdline) => cmdline.split(|b| *b == 0).next().is_some_and(|program| {
            Path::new(&*String::from_utf8_lossy(program))
                .file_name()
                .is_some_and(|name| name.to_string_lossy().contains("elspeth"))
        }),
        Err(_) => false,
    }
}
