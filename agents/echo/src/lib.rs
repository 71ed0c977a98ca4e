//! `echo`: answers every event with its payload.

use overseer_guest::{Agent, Error, Event, Info};

struct Echo;

impl Agent for Echo {
    fn describe() -> Info {
        Info {
            name: "echo".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Answers with the payload it was given".to_string(),
            subscriptions: vec![],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        Ok(event.payload)
    }
}

overseer_guest::export!(Echo);
