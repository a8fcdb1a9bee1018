//! Rows in flight at pooled transforms (`pool_size` > 1, e.g. an `llm`
//! node): each pool runs up to `pool_size` rows at once on its own worker
//! threads, and hands results back **in submission order**, so the audit
//! trail and the outputs are the same whatever order the responses arrive
//! in. The processor releases a pool's oldest row only when the pool's
//! window is full or when everything must settle (end of a chunk, of the
//! source, an interrupt): when a row is recorded never depends on timing
//! either. The window holds [`WINDOW_PER_WORKER`] rows per worker, so a
//! slow row at the head (a retried request) does not idle the workers
//! behind it. Memory stays bounded: at most the window's rows per pool.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use contracts::plugin::{PluginContext, Transform};
use contracts::Row;

use super::transform::{run_attempts, Attempt};
use crate::dag::NodeIdx;
use crate::runtime::{Clock, EngineError, RunContext, Work};
use crate::settings::RetrySettings;

/// Rows a pool holds (running, queued or finished but not yet released)
/// per worker. Measured (`cargo xtask bench`, 15% 429s at pool 64): 1 row
/// per worker let retried rows at the head idle the pool (0.17 of ideal).
pub(crate) const WINDOW_PER_WORKER: usize = 4;

struct Job {
    seq: u64,
    row: Row,
}

/// One pooled node's workers and the rows it has in flight.
struct Pool {
    node: NodeIdx,
    index: usize,
    capacity: usize,
    jobs: Option<Sender<Job>>,
    results: Receiver<(u64, Vec<Attempt>)>,
    in_flight: VecDeque<(u64, Work)>,
    arrived: HashMap<u64, Vec<Attempt>>,
    next_seq: u64,
}

/// The pools of a run, by node.
#[derive(Default)]
pub(crate) struct Pools {
    pools: Vec<Pool>,
    by_node: HashMap<NodeIdx, usize>,
}

impl Pools {
    /// A pool for every transform whose plugin runs more than one row at
    /// once; none in replay mode (answers come from the recordings, in
    /// source order).
    pub(crate) fn new(ctx: &RunContext<'_>) -> Pools {
        let mut pools = Pools::default();
        if ctx.replaying {
            return pools;
        }
        for (node, graph_node) in ctx.graph.nodes.iter().enumerate() {
            let crate::dag::NodeKind::Transform(index) = graph_node.kind else { continue };
            let plugin = &ctx.plugins.transforms[index];
            let capacity = plugin.pool_size();
            if capacity <= 1 {
                continue;
            }
            let pool = Pool::start(
                node,
                index,
                capacity,
                Arc::clone(plugin),
                &ctx.contexts[node],
                &ctx.loaded.settings.retry,
                &ctx.clock,
            );
            pools.by_node.insert(node, pools.pools.len());
            pools.pools.push(pool);
        }
        pools
    }

    /// Whether `node` is pooled.
    pub(crate) fn is_pooled(&self, node: NodeIdx) -> bool {
        self.by_node.contains_key(&node)
    }

    /// Sends a token's row to its node's workers; the token waits here.
    pub(crate) fn submit(&mut self, work: Work) -> Result<(), EngineError> {
        let pool = self.by_node.get(&work.at).map(|&p| &mut self.pools[p]);
        let Some(pool) = pool else { return Err(EngineError::Invariant("submitted to a node without a pool".into())) };
        let seq = pool.next_seq;
        pool.next_seq += 1;
        let job = Job { seq, row: work.row.clone() };
        let sent = pool.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(EngineError::Invariant("a transform pool's workers are gone".into()));
        }
        pool.in_flight.push_back((seq, work));
        Ok(())
    }

    /// A pool that is full, first by node order: its oldest row must be
    /// released before another is read.
    pub(crate) fn full(&self) -> Option<usize> {
        self.pools.iter().position(|p| p.in_flight.len() >= p.capacity * WINDOW_PER_WORKER)
    }

    /// Any pool with rows in flight, first by node order.
    pub(crate) fn busy(&self) -> Option<usize> {
        self.pools.iter().position(|p| !p.in_flight.is_empty())
    }

    /// Waits for pool `pool`'s oldest row; returns it with its attempts and
    /// the transform's index.
    pub(crate) fn release(&mut self, pool: usize) -> Result<(Work, usize, Vec<Attempt>), EngineError> {
        let pool = &mut self.pools[pool];
        let Some((seq, work)) = pool.in_flight.pop_front() else {
            return Err(EngineError::Invariant("released from an empty pool".into()));
        };
        let attempts = loop {
            if let Some(attempts) = pool.arrived.remove(&seq) {
                break attempts;
            }
            match pool.results.recv() {
                Ok((arrived, attempts)) => {
                    pool.arrived.insert(arrived, attempts);
                }
                Err(_) => return Err(EngineError::Invariant(format!("the workers of node {} stopped", pool.node))),
            }
        };
        Ok((work, pool.index, attempts))
    }
}

impl Pool {
    fn start(
        node: NodeIdx,
        index: usize,
        capacity: usize,
        plugin: Arc<dyn Transform>,
        context: &PluginContext,
        retry: &RetrySettings,
        clock: &Arc<dyn Clock>,
    ) -> Pool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (done, results) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..capacity {
            let queue = Arc::clone(&queue);
            let done = done.clone();
            let plugin = Arc::clone(&plugin);
            let mut context = context.for_attempt();
            let retry = retry.clone();
            let clock = Arc::clone(clock);
            // Workers end when the pool (the job sender) is dropped; a
            // worker inside a call finishes it first and its result is
            // dropped with the receiver.
            std::thread::spawn(move || loop {
                let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok(Job { seq, row }) = job else { return };
                let attempts = run_attempts(&*plugin, &row, &mut context, &retry, &*clock);
                if done.send((seq, attempts)).is_err() {
                    return;
                }
            });
        }
        Pool {
            node,
            index,
            capacity,
            jobs: Some(jobs),
            results,
            in_flight: VecDeque::new(),
            arrived: HashMap::new(),
            next_seq: 0,
        }
    }
}
