//! The bus: events are written to the event log, then handed to the dispatcher (the invoker's
//! delivery task), which delivers each to every agent whose active manifest subscribes to its
//! topic.

use overseer_sandbox::Event;
use overseer_store::{NewEvent, Store};
use tokio::sync::mpsc;

use crate::error::Result;

/// Publishes events. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    store: Store,
    sender: mpsc::UnboundedSender<Event>,
}

impl Bus {
    /// A bus and the receiving end of its deliveries.
    pub(crate) fn new(store: Store) -> (Bus, mpsc::UnboundedReceiver<Event>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Bus { store, sender }, receiver)
    }

    /// Write `event` to the event log, then deliver it.
    pub async fn publish(&self, event: Event) -> Result<()> {
        self.store.insert_event(&record(&event)).await?;
        self.dispatch([event]);
        Ok(())
    }

    /// Deliver events already in the event log.
    pub(crate) fn dispatch(&self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            // The receiver lives as long as the kernel; a send after shutdown goes nowhere.
            let _ = self.sender.send(event);
        }
    }
}

/// An event as the event log stores it.
pub(crate) fn record(event: &Event) -> NewEvent {
    NewEvent {
        id: event.id.clone(),
        topic: event.topic.clone(),
        payload: event.payload.clone(),
        source: event.source.clone(),
        at_ms: event.at_ms,
    }
}

/// An event of the event log as agents receive it.
pub(crate) fn event(record: NewEvent) -> Event {
    Event {
        id: record.id,
        topic: record.topic,
        payload: record.payload,
        source: record.source,
        at_ms: record.at_ms,
    }
}

/// A new event from the host (`source` names the part of the host that speaks).
pub fn host_event(topic: String, payload: String, source: &str) -> Event {
    Event {
        id: uuid::Uuid::new_v4().to_string(),
        topic,
        payload,
        source: source.to_string(),
        at_ms: overseer_store::now_ms(),
    }
}
