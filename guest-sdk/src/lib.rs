//! Write overseer agents in Rust.
//!
//! An agent is a type that implements [`Agent`], exported with [`export!`]. It is built for
//! `wasm32-wasip2` as a `cdylib`, which makes a WebAssembly component of the `overseer:agent`
//! world that `overseer push` (or a plain HTTP POST) puts live.
//!
//! ```no_run
//! use overseer_guest::{Agent, Error, Event, Info, kv, log};
//!
//! struct Greeter;
//!
//! impl Agent for Greeter {
//!     fn describe() -> Info {
//!         Info {
//!             name: "greeter".to_string(),
//!             version: env!("CARGO_PKG_VERSION").to_string(),
//!             description: "Greets whoever it is given and counts greetings".to_string(),
//!             subscriptions: vec![],
//!         }
//!     }
//!
//!     fn handle(event: Event) -> Result<String, Error> {
//!         // The payload is a JSON document; this agent expects a string.
//!         let name = event.payload.trim_matches('"');
//!         if name.is_empty() {
//!             return Err(Error::invalid_input("give me a name"));
//!         }
//!         let count: u64 = kv::get("greetings")?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
//!         kv::set("greetings", &count.to_string())?;
//!         log::info(&format!("greeting number {count}"));
//!         overseer_guest::emit("greeter.greeted", &format!("{{\"count\":{count}}}"))?;
//!         Ok(format!("{{\"greeting\":\"hello, {name}\",\"count\":{count}}}"))
//!     }
//! }
//!
//! overseer_guest::export!(Greeter);
//! ```
//!
//! `Cargo.toml` of such an agent:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! overseer-guest = { path = "../../guest-sdk" }
//! ```

extern crate self as overseer_guest;

/// The generated bindings; reached by [`export!`], not meant to be used directly.
#[doc(hidden)]
// The lowered `handle` export takes an event as nine flat arguments.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "agent",
        pub_export_macro: true,
        export_macro_name: "__export_agent_world",
        default_bindings_module: "overseer_guest::bindings",
        runtime_path: "overseer_guest::__rt",
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

pub use bindings::overseer::agent::types::{Error, Event, Health, Info, Level};

use bindings::overseer::agent::{kv as wit_kv, runtime};

/// An agent: who it is, how it handles an event, and whether it is healthy.
///
/// Every invocation runs in a fresh instance: keep state that must last in [`kv`].
pub trait Agent {
    /// Name, version, description and wished-for subscriptions. Called when a version is
    /// checked before it goes live.
    fn describe() -> Info;

    /// Handle one event and answer with a JSON document.
    fn handle(event: Event) -> Result<String, Error>;

    /// Whether the agent can do its work. A version that answers `ok: false` never goes live.
    fn health() -> Health {
        Health {
            ok: true,
            detail: "ok".to_string(),
        }
    }
}

/// Export a type implementing [`Agent`] as the component's `agent` world.
#[macro_export]
macro_rules! export {
    ($agent:ty) => {
        const _: () = {
            struct OverseerExport;

            impl $crate::bindings::Guest for OverseerExport {
                fn describe() -> $crate::Info {
                    <$agent as $crate::Agent>::describe()
                }

                fn handle(
                    event: $crate::Event,
                ) -> ::core::result::Result<::std::string::String, $crate::Error> {
                    <$agent as $crate::Agent>::handle(event)
                }

                fn health() -> $crate::Health {
                    <$agent as $crate::Agent>::health()
                }
            }

    $crate::bindings::__export_agent_world!(OverseerExport with_types_in $crate::bindings);
        };
    };
}

impl Error {
    /// The input was malformed or out of range.
    pub fn invalid_input(message: impl Into<String>) -> Error {
        Error::InvalidInput(message.into())
    }

    /// The agent was not granted what it asked for.
    pub fn denied(message: impl Into<String>) -> Error {
        Error::Denied(message.into())
    }

    /// A service the call needed is not available right now.
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::Unavailable(message.into())
    }

    /// The work was attempted and failed.
    pub fn failed(message: impl Into<String>) -> Error {
        Error::Failed(message.into())
    }

    /// The variant's stable code: `invalid_input`, `denied`, `unavailable` or `failed`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::Denied(_) => "denied",
            Error::Unavailable(_) => "unavailable",
            Error::Failed(_) => "failed",
        }
    }

    /// The message carried by any variant.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m)
            | Error::Denied(m)
            | Error::Unavailable(m)
            | Error::Failed(m) => m,
        }
    }
}

/// The agent's private, durable key-value store.
pub mod kv {
    use super::{Error, wit_kv};

    /// The value under `key`, if any.
    pub fn get(key: &str) -> Result<Option<String>, Error> {
        wit_kv::get(key)
    }

    /// Store `value` under `key`.
    pub fn set(key: &str, value: &str) -> Result<(), Error> {
        wit_kv::set(key, value)
    }

    /// Remove `key` (a missing key is not an error).
    pub fn delete(key: &str) -> Result<(), Error> {
        wit_kv::delete(key)
    }

    /// Every key starting with `prefix`, sorted.
    pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
        wit_kv::keys(prefix)
    }
}

/// Lines in the agent's log (`overseer logs NAME`).
pub mod log {
    use super::{Level, runtime};

    /// Write a line at `level`.
    pub fn write(level: Level, message: &str) {
        runtime::log(level, message);
    }

    /// Write a line at level `trace`.
    pub fn trace(message: &str) {
        write(Level::Trace, message);
    }

    /// Write a line at level `debug`.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    /// Write a line at level `info`.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    /// Write a line at level `warn`.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    /// Write a line at level `error`.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// Completions from the host's LLM. Needs `grant = ["llm"]` in the manifest; without a
/// configured endpoint calls answer [`Error::Unavailable`], so an agent keeps to its rules.
pub mod llm {
    pub use super::bindings::overseer::agent::llm::{
        Completion, Message, Request, Role, Usage, complete, model,
    };

    impl Message {
        /// A system message.
        pub fn system(content: impl Into<String>) -> Message {
            Message {
                role: Role::System,
                content: content.into(),
            }
        }

        /// A user message.
        pub fn user(content: impl Into<String>) -> Message {
            Message {
                role: Role::User,
                content: content.into(),
            }
        }

        /// An assistant message (an earlier answer of the model).
        pub fn assistant(content: impl Into<String>) -> Message {
            Message {
                role: Role::Assistant,
                content: content.into(),
            }
        }
    }

    /// Ask the model to continue `messages`, with the endpoint's defaults.
    pub fn chat(messages: Vec<Message>) -> Result<Completion, super::Error> {
        complete(&Request {
            messages,
            max_tokens: None,
            temperature: None,
        })
    }
}

/// Outbound HTTP, made by the host. Needs `grant = ["http"]` and the origin in the manifest's
/// `http_allow`; anything else answers [`Error::Denied`].
pub mod http {
    pub use super::bindings::overseer::agent::http::{Request, Response, fetch};

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, super::Error> {
        fetch(&Request {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        })
    }

    /// `POST url` with a JSON body.
    pub fn post_json(url: &str, json: &str) -> Result<Response, super::Error> {
        fetch(&Request {
            method: "POST".to_string(),
            url: url.to_string(),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: json.as_bytes().to_vec(),
            timeout_ms: None,
        })
    }

    impl Response {
        /// The body as text (invalid UTF-8 replaced).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }
}

/// Other agents' source, its findings and edits of it. Privileged: needs `grant = ["source"]`
/// in the manifest, which only a person's push can give.
pub mod source {
    pub use super::bindings::overseer::agent::source::{
        AgentSource, Change, EditOutcome, File, Finding, LogLine, Proposal, agents, files,
        findings, logs, outcome, propose, read,
    };
}

/// Backtests the host runs for the agent: `run(spec)` takes the JSON of `POST /v1/backtests`
/// and answers the result's id, metrics and walk-forward as JSON. Needs
/// `grant = ["backtest"]`.
/// Prompts from the host's registry (grant `prompts`): declare them in `agent.toml` under
/// `[prompts.KEY]` (`template`, optional `system`, `variables = { name = "string" }`), ask for
/// one per use, and report how the use turned out.
///
/// ```ignore
/// let served = prompts::get("sentiment", symbol, r#"{"symbol": "AAPL", "headlines": "…"}"#)?;
/// let answer = llm::complete(&prompts::request(&served, 8, 0.0))?;
/// prompts::report(served.use_id, None, Some(parsed_ok))?;
/// ```
pub mod prompts {
    pub use super::bindings::overseer::agent::prompts::{
        Served, catalog, get, report, start_experiment, write,
    };

    /// An LLM request of the served prompt: its system message (when it has one) and its
    /// text.
    pub fn request(served: &Served, max_tokens: u32, temperature: f32) -> super::llm::Request {
        let mut messages = Vec::new();
        if !served.system.is_empty() {
            messages.push(super::llm::Message::system(&served.system));
        }
        messages.push(super::llm::Message::user(&served.text));
        super::llm::Request {
            messages,
            max_tokens: Some(max_tokens),
            temperature: Some(temperature),
        }
    }
}

pub mod backtest {
    pub use super::bindings::overseer::agent::backtest::run;
}

/// Companies' filings (their financial statements), bounded by the call's as-of day: only
/// those filed by then. Needs `grant = ["fundamentals"]`; a host without a provider answers
/// `unavailable`.
pub mod fundamentals {
    pub use super::bindings::overseer::agent::fundamentals::{Filing, LineItem, filings};
}

/// The Overseer's view of every agent, and decisions proposed through the host's policy.
/// Privileged: needs `grant = ["fleet"]`, which only a person's push can give.
pub mod fleet {
    pub use super::bindings::overseer::agent::fleet::{
        AgentWindow, Alert, alerts, check, propose, raise_alert, telemetry,
    };
}

/// Market data bounded by the call's as-of time. Needs `grant = ["market"]`.
pub mod market {
    pub use super::bindings::overseer::agent::market::{
        AsOfTime, Bar, NewsItem, Timeframe, as_of, bars, latest, news, symbols,
    };

    /// A day in milliseconds: market time on the replay is counted in days.
    pub const DAY_MS: u64 = 86_400_000;

    /// `date` (`YYYY-MM-DD`) `years` years earlier, as a date of the same form (29 February
    /// becomes the 28th): the start of a lookback window.
    pub fn years_before(date: &str, years: i32) -> String {
        let (year, rest) = date.split_once('-').unwrap_or((date, "01-01"));
        let year: i32 = year.parse().unwrap_or(1970);
        let rest = if rest == "02-29" { "02-28" } else { rest };
        format!("{:04}-{rest}", year - years)
    }

    /// The daily bars of `symbol` from `from` to the call's as-of day, oldest first.
    pub fn daily_until_as_of(symbol: &str, from: &str) -> Result<Vec<Bar>, super::Error> {
        bars(symbol, Timeframe::Day, from, &as_of().date)
    }
}

/// The host's broker; every submit passes its risk gate. Privileged: needs
/// `grant = ["broker"]`, which only a person's push can give.
pub mod broker {
    pub use super::bindings::overseer::agent::broker::{
        AccountInfo, Amount, Order, OrderRequest, OrderType, Position, Side, TimeInForce, account,
        cancel, orders, positions, submit,
    };
}

/// Long-term memory recalled by relevance. Needs `grant = ["memory"]`.
pub mod memory {
    pub use super::bindings::overseer::agent::memory::{Recalled, forget, recall, remember};
}

/// The agents' LLM budgets. Privileged: needs `grant = ["budget"]`.
pub mod budget {
    pub use super::bindings::overseer::agent::budget::{
        AgentBudget, BudgetCaps, budgets, caps, set,
    };
}

#[cfg(feature = "calculator")]
pub mod calculator;

#[cfg(feature = "research")]
pub mod research;

#[cfg(feature = "answers")]
pub mod answer;

/// Publish `payload` (a JSON document) on `topic`; subscribed agents receive it.
pub fn emit(topic: &str, payload: &str) -> Result<(), Error> {
    runtime::emit(topic, payload)
}

/// A value from the `[config]` table of the agent's manifest.
pub fn config(key: &str) -> Option<String> {
    runtime::config(key)
}

/// A value from the `[config]` table parsed as `T` (surrounding blanks ignored); `None` when
/// it is missing or does not parse.
pub fn config_parsed<T: std::str::FromStr>(key: &str) -> Option<T> {
    runtime::config(key).and_then(|v| v.trim().parse().ok())
}

/// Milliseconds since the Unix epoch, as the host sees it.
pub fn now_ms() -> u64 {
    runtime::now_ms()
}

/// Record a named measurement, exported by the host as a metric.
pub fn metric(name: &str, value: f64) {
    runtime::metric(name, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_carry_their_message() {
        assert_eq!(
            Error::invalid_input("bad"),
            Error::InvalidInput("bad".to_string())
        );
        assert_eq!(Error::denied("no").message(), "no");
        assert_eq!(Error::unavailable("later").message(), "later");
        assert_eq!(Error::failed(String::from("boom")).message(), "boom");
    }
}
