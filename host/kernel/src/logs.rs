//! Agents' log lines: queued without waiting, written to the store in batches by one task.

use overseer_store::{LogLine, Store};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Log lines that may wait for the writer before new ones are dropped (and counted).
const LOG_BUFFER: usize = 16_384;

/// Log lines written to the store in one statement: few enough that a deploy's transaction
/// waiting for the store's one writer waits a fraction of a millisecond behind a batch.
const LOG_BATCH: usize = 128;

/// The queue in front of the log writer. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    sender: mpsc::Sender<LogLine>,
    metrics: std::sync::Arc<Metrics>,
}

impl Logs {
    /// Start the writer on the current runtime.
    pub(crate) fn start(store: Store, metrics: std::sync::Arc<Metrics>) -> Logs {
        let (sender, receiver) = mpsc::channel(LOG_BUFFER);
        tokio::spawn(write(store, receiver));
        Logs { sender, metrics }
    }

    /// Queue a line. Dropped, and counted, if the writer is far behind.
    pub fn write(&self, line: LogLine) {
        if self.sender.try_send(line).is_err() {
            self.metrics.log_dropped();
        }
    }
}

async fn write(store: Store, mut receiver: mpsc::Receiver<LogLine>) {
    let mut batch = Vec::with_capacity(LOG_BATCH);
    while receiver.recv_many(&mut batch, LOG_BATCH).await > 0 {
        if let Err(e) = store.insert_logs(&batch).await {
            tracing::warn!(error = %e, lines = batch.len(), "could not write agent logs");
        }
        batch.clear();
    }
}
