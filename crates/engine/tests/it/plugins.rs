//! Test plugins: a counting source, a transform and a batch transform that
//! panic on demand, a batch transform that stays pending for a number of
//! polls, and a sink that keeps rows in memory.

use std::sync::Arc;
use std::time::Duration;

use contracts::plugin::{
    ArtifactDescriptor, BatchResult, BatchTransform, CallEnd, Options, PluginContext, PluginError, PluginInfo, PluginRegistry,
    Sink, Source, SourceItem, SourcePosition, Transform, TransformResult,
};
use contracts::{CallStatus, CallType, ContentHash, Determinism, Row, Value};
use engine::ManualClock;

const fn info(name: &'static str, determinism: Determinism) -> PluginInfo {
    PluginInfo { name, version: "0.0.0", determinism }
}

fn int(options: &Options, key: &str) -> i64 {
    options.get(key).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

/// Rows `{id: 0..count}`.
struct Counting {
    count: i64,
    next: i64,
}

impl Source for Counting {
    fn info(&self) -> PluginInfo {
        info("counting", Determinism::Deterministic)
    }

    fn next_item(&mut self, _ctx: &mut PluginContext) -> Result<Option<SourceItem>, PluginError> {
        if self.next >= self.count {
            return Ok(None);
        }
        let mut row = Row::new();
        row.insert("id".into(), Value::Integer(self.next));
        self.next += 1;
        Ok(Some(SourceItem::Valid(row)))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition { items: u64::try_from(self.next).unwrap_or(0), byte_offset: None }
    }
}

/// Passes rows on; panics on the row whose id is `panic_on`.
struct PanicOn(i64);

impl Transform for PanicOn {
    fn info(&self) -> PluginInfo {
        info("panic_on", Determinism::Deterministic)
    }

    fn process(&self, row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        assert!(row.get("id") != Some(&Value::Integer(self.0)), "test transform panics on purpose");
        Ok(TransformResult::Row { row, success_reason: None })
    }
}

/// Passes rows on, moving the test's clock on by `tick` before every row
/// after the first (in the engine's thread, so in processing order).
struct Tick {
    clock: Arc<ManualClock>,
    tick: Duration,
    seen: std::sync::atomic::AtomicU64,
}

impl Transform for Tick {
    fn info(&self) -> PluginInfo {
        info("tick", Determinism::Deterministic)
    }

    fn process(&self, row: Row, _ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        if self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
            self.clock.advance(self.tick);
        }
        Ok(TransformResult::Row { row, success_reason: None })
    }
}

/// Answers pending `polls` times, then returns the rows; panics instead
/// when `panic` is set.
struct Slow {
    polls: i64,
    /// How long the job says to wait between polls.
    check_after: Duration,
    panic: bool,
    rows: Vec<Vec<Row>>,
}

impl BatchTransform for Slow {
    fn info(&self) -> PluginInfo {
        info("slow", Determinism::ExternalCall)
    }

    fn process_batch(&mut self, rows: &[Row], _ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        assert!(!self.panic, "test batch transform panics on purpose");
        self.rows.push(rows.to_vec());
        let job = serde_json::json!({"job": self.rows.len() - 1, "left": self.polls});
        Ok(BatchResult::Pending { check_after: self.check_after, job })
    }

    fn poll(&mut self, job: &serde_json::Value, _ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        let index = usize::try_from(job["job"].as_u64().unwrap_or(0)).unwrap_or(0);
        let left = job["left"].as_i64().unwrap_or(0);
        if left > 0 {
            let job = serde_json::json!({"job": index, "left": left - 1});
            return Ok(BatchResult::Pending { check_after: self.check_after, job });
        }
        Ok(BatchResult::Rows(self.rows.get(index).cloned().unwrap_or_default()))
    }
}

/// Runs `pool_size` rows at once; each sleeps a pseudo-random time (from
/// its id and `seed`, up to `max_delay_ms`), records one call and adds
/// `answer`; so answers arrive out of order.
struct Jitter {
    pool: usize,
    seed: u64,
    max_delay_ms: u64,
}

impl Transform for Jitter {
    fn info(&self) -> PluginInfo {
        info("jitter", Determinism::ExternalCall)
    }

    fn pool_size(&self) -> usize {
        self.pool
    }

    fn process(&self, mut row: Row, ctx: &mut PluginContext) -> Result<TransformResult, PluginError> {
        let id = row.get("id").and_then(|v| if let Value::Integer(i) = v { Some(*i) } else { None }).unwrap_or(0);
        let mixed = (u64::try_from(id).unwrap_or(0) ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let ticket = ctx.begin_call(None);
        if self.max_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(mixed % self.max_delay_ms));
        }
        let request = serde_json::json!({"id": id});
        ctx.end_call(
            ticket,
            CallEnd {
                call_type: CallType::Llm,
                status: CallStatus::Success,
                request,
                response: Some(serde_json::json!({"ok": id})),
                error: None,
            },
        );
        row.insert("answer".into(), Value::Integer(id * 2));
        Ok(TransformResult::Row { row, success_reason: None })
    }
}

/// Keeps what it is given.
#[derive(Default)]
struct Memory {
    rows: usize,
}

impl Sink for Memory {
    fn info(&self) -> PluginInfo {
        info("memory", Determinism::IoWrite)
    }

    fn write(&mut self, rows: &[Row], _ctx: &mut PluginContext) -> Result<(), PluginError> {
        self.rows += rows.len();
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        Ok((self.rows > 0).then(|| ArtifactDescriptor {
            artifact_type: "memory".into(),
            path_or_uri: "memory://out".into(),
            content_hash: ContentHash::of_bytes(self.rows.to_string().as_bytes()),
            size_bytes: self.rows as u64,
        }))
    }
}

/// The registry; `clock` is the test's manual clock, if it has one.
#[derive(Default)]
pub(crate) struct TestPlugins {
    pub(crate) clock: Option<Arc<ManualClock>>,
}

impl PluginRegistry for TestPlugins {
    fn source(&self, _plugin: &str, options: &Options) -> Result<Box<dyn Source>, PluginError> {
        Ok(Box::new(Counting { count: int(options, "count"), next: 0 }))
    }

    fn transform(&self, plugin: &str, options: &Options) -> Result<Box<dyn Transform>, PluginError> {
        if plugin == "tick" {
            let clock = self.clock.clone().ok_or_else(|| PluginError::Config("tick needs the test's clock".into()))?;
            let tick = Duration::from_secs(u64::try_from(int(options, "tick_seconds")).unwrap_or(0));
            return Ok(Box::new(Tick { clock, tick, seen: std::sync::atomic::AtomicU64::new(0) }));
        }
        if plugin == "jitter" {
            let number = |key: &str| options.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let pool = usize::try_from(number("pool_size")).unwrap_or(1);
            return Ok(Box::new(Jitter { pool, seed: number("seed"), max_delay_ms: number("max_delay_ms") }));
        }
        Ok(Box::new(PanicOn(options.get("panic_on").and_then(serde_json::Value::as_i64).unwrap_or(-1))))
    }

    fn batch_transform(&self, _plugin: &str, options: &Options) -> Result<Box<dyn BatchTransform>, PluginError> {
        let panic = options.get("panic").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let check_after = options.get("check_after_seconds").and_then(serde_json::Value::as_f64).unwrap_or(0.02);
        Ok(Box::new(Slow {
            polls: int(options, "polls"),
            check_after: Duration::from_secs_f64(check_after),
            panic,
            rows: Vec::new(),
        }))
    }

    fn sink(&self, _plugin: &str, _options: &Options) -> Result<Box<dyn Sink>, PluginError> {
        Ok(Box::new(Memory::default()))
    }

    fn is_batch_aware(&self, plugin: &str) -> bool {
        plugin == "slow"
    }
}
