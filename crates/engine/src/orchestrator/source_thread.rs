//! The source, read on its own thread: the engine waits for the next item
//! with a deadline, so timers (aggregation and coalesce timeouts, trigger
//! conditions on batch age) fire while the source is idle — a slow stream, a
//! pipe nobody writes to yet — not only when the next row arrives.
//!
//! The queue is bounded (one chunk), so reading ahead never holds more
//! than a chunk of rows in memory.

use std::thread::JoinHandle;
use std::time::Instant;

use contracts::plugin::{PluginContext, PluginError, PluginInfo, Source, SourceItem, SourcePosition};
use contracts::Determinism;

use super::handoff::{self, RecvError};

/// One read of the source, with the field resolution once it is known.
struct Message {
    item: Result<Option<SourceItem>, PluginError>,
    field_resolution: Option<Vec<(String, String)>>,
}

/// What waiting for the source produced.
#[allow(clippy::large_enum_variant, reason = "moved once per item, straight into processing; boxing would allocate per row")]
pub(crate) enum Received {
    Item(Result<Option<SourceItem>, PluginError>),
    /// The deadline passed before the source produced anything.
    Idle,
}

/// The reading thread and its queue.
pub(crate) struct SourceThread {
    receiver: handoff::Receiver<Message>,
    handle: Option<JoinHandle<Box<dyn Source>>>,
    field_resolution: Option<Vec<(String, String)>>,
    ended: bool,
}

impl SourceThread {
    /// Starts reading `source` ahead of the engine, at most `capacity` items.
    pub(crate) fn spawn(mut source: Box<dyn Source>, mut ctx: PluginContext, capacity: usize) -> SourceThread {
        let (sender, receiver) = handoff::queue(capacity);
        let handle = std::thread::spawn(move || {
            let mut resolution_sent = false;
            loop {
                let item = source.next_item(&mut ctx);
                let end = !matches!(item, Ok(Some(_)));
                let field_resolution = if resolution_sent { None } else { source.field_resolution() };
                resolution_sent |= field_resolution.is_some();
                if sender.send(Message { item, field_resolution }).is_err() || end {
                    return source;
                }
            }
        });
        SourceThread { receiver, handle: Some(handle), field_resolution: None, ended: false }
    }

    /// The next item, waiting until `deadline` at most (forever without one).
    pub(crate) fn next(&mut self, deadline: Option<Instant>) -> Received {
        if self.ended {
            return Received::Item(Ok(None));
        }
        match self.receiver.recv(deadline) {
            Ok(Message { item, field_resolution }) => {
                if field_resolution.is_some() {
                    self.field_resolution = field_resolution;
                }
                if !matches!(item, Ok(Some(_))) {
                    self.ended = true;
                }
                Received::Item(item)
            }
            Err(RecvError::Timeout) => Received::Idle,
            Err(RecvError::Disconnected) => {
                self.ended = true;
                Received::Item(Err(PluginError::Contract("the source thread stopped without ending its input".into())))
            }
        }
    }

    /// Original header → final field name, once the source knows it.
    pub(crate) fn field_resolution(&self) -> Option<&Vec<(String, String)>> {
        self.field_resolution.as_ref()
    }

    /// Takes the source back once it has ended; `None` while it may still be
    /// blocked reading (it is then left to finish on its own).
    pub(crate) fn into_source(mut self) -> Option<Box<dyn Source>> {
        if !self.ended {
            return None;
        }
        self.handle.take().and_then(|handle| handle.join().ok())
    }
}

/// What stands in the pipeline's source slot while the real source is read
/// on its thread.
pub(crate) struct SourceOnThread(pub(crate) PluginInfo);

impl Source for SourceOnThread {
    fn info(&self) -> PluginInfo {
        self.0.clone()
    }

    fn next_item(&mut self, _ctx: &mut PluginContext) -> Result<Option<SourceItem>, PluginError> {
        Err(PluginError::Contract("the source is being read on its own thread".into()))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::default()
    }
}

impl SourceOnThread {
    pub(crate) fn placeholder() -> SourceOnThread {
        SourceOnThread(PluginInfo { name: "source on thread", version: "0", determinism: Determinism::IoRead })
    }
}
