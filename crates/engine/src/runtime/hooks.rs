//! Test hooks: an interrupt after a number of rows and a crash point where
//! the process aborts (the crash harness). They exist only with the
//! `test-hooks` cargo feature; in any other build `TestHooks` is empty, every
//! check is a constant, and the binary holds no trace of them.

/// Where the crash-test hook aborts the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the n-th source row was processed (before its chunk commits).
    AfterRow(u64),
    /// After the n-th durable sink write (before its states are recorded).
    AfterSinkWrite(u64),
    /// Just before the n-th commit.
    BeforeCommit(u64),
    /// Just after the n-th commit.
    AfterCommit(u64),
}

/// The hooks of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestHooks {
    /// Behave as if interrupted once this many rows were read.
    #[cfg(feature = "test-hooks")]
    pub interrupt_after_rows: Option<u64>,
    /// Abort the process at this point.
    #[cfg(feature = "test-hooks")]
    pub crash_at: Option<CrashPoint>,
}

#[cfg(feature = "test-hooks")]
impl TestHooks {
    /// Reads `ELSPETH_TEST_INTERRUPT_AFTER_ROWS` and `ELSPETH_TEST_CRASH_AT`
    /// (`row:N`, `sink:N`, `commit:N:before` or `commit:N:after`).
    pub fn from_env() -> TestHooks {
        TestHooks {
            interrupt_after_rows: std::env::var("ELSPETH_TEST_INTERRUPT_AFTER_ROWS").ok().and_then(|v| v.parse().ok()),
            crash_at: std::env::var("ELSPETH_TEST_CRASH_AT").ok().as_deref().and_then(parse_crash_point),
        }
    }

    /// Aborts the process (no unwinding, no cleanup, as a kill would) when
    /// `point` is the configured crash point.
    pub(crate) fn crash_if(self, point: CrashPoint) {
        if self.crash_at == Some(point) {
            std::process::abort();
        }
    }

    /// Whether the harness will crash at `point` (so the engine first waits
    /// for what it committed to be durable).
    pub(crate) fn crashes_at(self, point: CrashPoint) -> bool {
        self.crash_at == Some(point)
    }

    pub(crate) fn interrupt_due(self, rows_read: u64) -> bool {
        self.interrupt_after_rows.is_some_and(|limit| rows_read >= limit)
    }
}

#[cfg(feature = "test-hooks")]
fn parse_crash_point(text: &str) -> Option<CrashPoint> {
    let parts: Vec<&str> = text.split(':').collect();
    let n = parts.get(1)?.parse().ok()?;
    match (parts[0], parts.get(2).copied()) {
        ("row", None) => Some(CrashPoint::AfterRow(n)),
        ("sink", None) => Some(CrashPoint::AfterSinkWrite(n)),
        ("commit", Some("before")) => Some(CrashPoint::BeforeCommit(n)),
        ("commit", Some("after")) => Some(CrashPoint::AfterCommit(n)),
        _ => None,
    }
}

#[cfg(not(feature = "test-hooks"))]
impl TestHooks {
    /// Without the `test-hooks` feature there is nothing to read.
    pub fn from_env() -> TestHooks {
        TestHooks {}
    }

    #[allow(clippy::unused_self, clippy::needless_pass_by_value, reason = "the same signature as with the test-hooks feature")]
    pub(crate) fn crash_if(self, _point: CrashPoint) {}

    #[allow(clippy::unused_self, clippy::needless_pass_by_value, reason = "the same signature as with the test-hooks feature")]
    pub(crate) fn crashes_at(self, _point: CrashPoint) -> bool {
        false
    }

    #[allow(clippy::unused_self, clippy::needless_pass_by_value, reason = "the same signature as with the test-hooks feature")]
    pub(crate) fn interrupt_due(self, _rows_read: u64) -> bool {
        false
    }
}
