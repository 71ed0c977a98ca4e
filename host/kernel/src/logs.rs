//! Agents' log lines: queued without waiting, written to the store in batches by one task.
//! Each agent's lines waiting for the writer are bounded in bytes, so one agent's flood cannot
//! crowd out another's; the host's own lines about a call (its failure, a budget cut) are
//! never dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use overseer_store::{LogLine, Store};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Log lines written to the store in one statement: few enough that a deploy's transaction
/// waiting for the store's one writer waits a fraction of a millisecond behind a batch.
const LOG_BATCH: usize = 128;

/// The queue in front of the log writer. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Queue>,
}

struct Queue {
    sender: mpsc::UnboundedSender<Queued>,
    /// Bytes of each agent's lines waiting for the writer.
    queued: Mutex<HashMap<String, usize>>,
    /// The most bytes of one agent's lines that may wait.
    per_agent: usize,
    metrics: Arc<Metrics>,
}

struct Queued {
    line: LogLine,
    /// Bytes counted against the agent's queue (0 for the host's lines).
    counted: usize,
}

impl Logs {
    /// Start the writer on the current runtime; at most `per_agent` bytes of one agent's
    /// lines wait for it.
    pub(crate) fn start(store: Store, metrics: Arc<Metrics>, per_agent: usize) -> Logs {
        let (sender, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Queue {
            sender,
            queued: Mutex::new(HashMap::new()),
            per_agent,
            metrics,
        });
        tokio::spawn(write(store, receiver, Arc::downgrade(&inner)));
        Logs { inner }
    }

    /// Queue a line an agent wrote. Dropped, and counted, when the agent's lines already
    /// waiting for the writer take its share.
    pub fn write(&self, line: LogLine) {
        let counted = line.message.len().max(1);
        {
            let mut queued = self.inner.queued();
            let waiting = queued.entry(line.agent.clone()).or_default();
            if *waiting + counted > self.inner.per_agent {
                drop(queued);
                self.inner.metrics.log_dropped(&line.agent, "queue");
                return;
            }
            *waiting += counted;
        }
        if let Err(e) = self.inner.sender.send(Queued { line, counted }) {
            self.inner.settle(&e.0.line.agent, counted);
        }
    }

    /// Queue a line the host writes about an agent: never dropped.
    pub fn write_host(&self, line: LogLine) {
        let _ = self.inner.sender.send(Queued { line, counted: 0 });
    }
}

impl Queue {
    fn queued(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A line of `agent` that counted `counted` bytes left the queue.
    fn settle(&self, agent: &str, counted: usize) {
        if counted == 0 {
            return;
        }
        let mut queued = self.queued();
        if let Some(waiting) = queued.get_mut(agent) {
            *waiting = waiting.saturating_sub(counted);
            if *waiting == 0 {
                queued.remove(agent);
            }
        }
    }
}

async fn write(
    store: Store,
    mut receiver: mpsc::UnboundedReceiver<Queued>,
    queue: std::sync::Weak<Queue>,
) {
    let mut batch = Vec::with_capacity(LOG_BATCH);
    let mut counted = Vec::with_capacity(LOG_BATCH);
    while receiver.recv_many(&mut batch, LOG_BATCH).await > 0 {
        let lines: Vec<LogLine> = batch
            .drain(..)
            .map(|queued| {
                if queued.counted > 0 {
                    counted.push((queued.line.agent.clone(), queued.counted));
                }
                queued.line
            })
            .collect();
        if let Err(e) = store.insert_logs(&lines).await {
            tracing::warn!(error = %e, lines = lines.len(), "could not write agent logs");
        }
        if let Some(queue) = queue.upgrade() {
            for (agent, bytes) in counted.drain(..) {
                queue.settle(&agent, bytes);
            }
        }
        counted.clear();
    }
}
