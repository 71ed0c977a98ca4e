//! The bus: events are written to the event log, then handed to the dispatcher (the invoker's
//! delivery task), which delivers each to every agent whose active manifest subscribes to its
//! topic.

use overseer_sandbox::Event;
use overseer_store::now_ms;
use overseer_store::{NewEvent, Store};
use tokio::sync::mpsc;

use crate::error::Result;

/// Publishes events. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    store: Store,
    sender: mpsc::UnboundedSender<Delivery>,
}

/// An event on its way to subscribers, with the market time it belongs to.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Event,
    /// Milliseconds since the Unix epoch; `None` when the event is not about the market.
    pub as_of_ms: Option<u64>,
    /// The version of the agent that emitted it; `None` for the host's events.
    pub source_version: Option<u32>,
}

impl Bus {
    /// A bus and the receiving end of its deliveries.
    pub(crate) fn new(store: Store) -> (Bus, mpsc::UnboundedReceiver<Delivery>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Bus { store, sender }, receiver)
    }

    /// Write `event` to the event log, then deliver it.
    pub async fn publish(&self, event: Event) -> Result<()> {
        self.publish_as_of(event, None).await
    }

    /// Write `event` to the event log, then deliver it: handled, and everything emitted while
    /// handling it, as of `as_of_ms`.
    pub async fn publish_as_of(&self, event: Event, as_of_ms: Option<u64>) -> Result<()> {
        self.store.insert_event(&record(&event, as_of_ms)).await?;
        self.dispatch([Delivery {
            event,
            as_of_ms,
            source_version: None,
        }]);
        Ok(())
    }

    /// Deliver events already in the event log.
    pub(crate) fn dispatch(&self, deliveries: impl IntoIterator<Item = Delivery>) {
        for delivery in deliveries {
            // The receiver lives as long as the kernel; a send after shutdown goes nowhere.
            let _ = self.sender.send(delivery);
        }
    }
}

/// An event as the event log stores it.
pub(crate) fn record(event: &Event, as_of_ms: Option<u64>) -> NewEvent {
    NewEvent {
        id: event.id.clone(),
        topic: event.topic.clone(),
        payload: event.payload.clone(),
        source: event.source.clone(),
        at_ms: event.at_ms,
        as_of_ms,
    }
}

/// An event of the event log as agents receive it, emitted by `source_version` of its
/// source.
pub(crate) fn delivery(record: NewEvent, source_version: Option<u32>) -> Delivery {
    Delivery {
        as_of_ms: record.as_of_ms,
        source_version,
        event: Event {
            id: record.id,
            topic: record.topic,
            payload: record.payload,
            source: record.source,
            at_ms: record.at_ms,
        },
    }
}

/// A new event from the host (`source` names the part of the host that speaks).
pub fn host_event(topic: String, payload: String, source: &str) -> Event {
    Event {
        id: uuid::Uuid::new_v4().to_string(),
        topic,
        payload,
        source: source.to_string(),
        at_ms: now_ms(),
    }
}
