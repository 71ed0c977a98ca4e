//! `counter`: keeps a count in kv, emits `counter.incremented` on every call.

use overseer_guest::{Agent, Error, Event, Info, kv};

struct Counter;

impl Agent for Counter {
    fn describe() -> Info {
        Info {
            name: "counter".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Counts its calls in kv and announces each on counter.incremented"
                .to_string(),
            subscriptions: vec![],
        }
    }

    fn handle(_event: Event) -> Result<String, Error> {
        let count = match kv::get("count")? {
            Some(text) => text
                .parse::<u64>()
                .map_err(|e| Error::Failed(format!("stored count {text:?}: {e}")))?,
            None => 0,
        } + 1;
        kv::set("count", &count.to_string())?;
        let payload = format!("{{\"count\":{count}}}");
        overseer_guest::emit("counter.incremented", &payload)?;
        Ok(payload)
    }
}

overseer_guest::export!(Counter);
