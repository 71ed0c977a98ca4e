//! One pass over a range of days: for each day the account fills what the day's open fills,
//! values the close, and the stages hear the day's `market.tick` and what they publish from
//! it, as the live bus would deliver it. One instance per stage for the whole pass (or a
//! fresh one per call, to measure what reuse saves); each call has its own fuel and deadline.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use overseer_kernel::registry::Version;
use overseer_market::Bar;
use overseer_sandbox::{Capability, Event, Replay, Services, Session};
use serde_json::json;

use super::book::{Account, Entry, Totals};
use super::services::{
    Emitted, LlmUse, Outside, RunBroker, RunKv, RunLlm, RunMarket, Shared, StageRuntime, lock,
};
use super::{Failure, Setup};
use crate::desk::{Placer, as_of_ms};
use crate::performance::Point;

/// Most events delivered for one bar: a stage that answers its own events forever is
/// stopped here.
pub const MAX_EVENTS_PER_BAR: usize = 1_000;

/// One trading day of the run's symbols, with its `market.tick` payload written once.
#[derive(Debug, Clone)]
pub struct Day {
    pub date: NaiveDate,
    /// `date` as text (`2012-01-03`).
    pub label: String,
    pub bars: BTreeMap<String, Bar>,
    /// `{"as_of": …, "as_of_ms": …, "bars": {symbol: bar}}`, as the live desk publishes it.
    pub tick: Arc<str>,
}

impl Day {
    pub fn new(date: NaiveDate, bars: BTreeMap<String, Bar>) -> Self {
        let tick = json!({ "as_of": date, "as_of_ms": as_of_ms(date), "bars": bars })
            .to_string()
            .into();
        Day {
            date,
            label: date.to_string(),
            bars,
            tick,
        }
    }
}

/// How far a run is, and whether it was asked to stop.
#[derive(Debug, Default)]
pub struct Control {
    /// Bars run so far.
    pub done: AtomicU64,
    pub cancel: std::sync::atomic::AtomicBool,
}

/// A stage: a version of an agent and the configuration it runs with.
#[derive(Clone)]
pub struct Stage {
    pub version: Arc<Version>,
    pub config: BTreeMap<String, String>,
}

/// What one pass produced.
pub struct Pass {
    pub days: Vec<NaiveDate>,
    pub curve: Vec<Point>,
    pub cash: Vec<f64>,
    pub log: Vec<Entry>,
    pub totals: Totals,
    pub llm: LlmUse,
    /// Calls of the subject (its decisions).
    pub decisions: u64,
    /// Calls that answered an error (the run goes on).
    pub errors: u64,
    pub last_error: Option<String>,
    pub logs: Vec<String>,
}

struct Running {
    stage: Stage,
    services: Services,
    session: Option<Session>,
}

/// Run `stages` (the first is the subject) over `days`, counting each day done in
/// `control` and stopping at the next bar when it is cancelled.
///
/// # Errors
/// [`Failure`] `look_ahead` naming the bar and who asked; `agent_fault` when a call traps,
/// runs out of fuel, memory or time (the instance is gone; the bar is named);
/// `event_storm` past [`MAX_EVENTS_PER_BAR`]; `busy` when the sandbox has no call slot for
/// a stage; `cancelled`.
pub async fn pass(
    setup: &Setup,
    stages: &[Stage],
    days: &[Day],
    control: &Control,
) -> Result<Pass, Failure> {
    let first = days.first().map_or(NaiveDate::MIN, |d| d.date);
    // A symbol without a bar on the first day is valued at its last close before it.
    let marks: BTreeMap<String, f64> = setup
        .symbols
        .iter()
        .filter_map(|symbol| {
            let bar = setup.data.latest(symbol, first).ok()??;
            Some((symbol.clone(), bar.close))
        })
        .collect();
    let mut symbols = setup.symbols.clone();
    symbols.sort();
    let shared = Arc::new(Shared {
        data: setup.data.clone(),
        symbols,
        day: std::sync::Mutex::new(first),
        account: std::sync::Mutex::new(Account::new(
            setup.initial_cash,
            setup.symbols.clone(),
            setup.risk.clone(),
            setup.costs,
            marks,
        )),
        queue: std::sync::Mutex::new(Vec::new()),
        look_ahead: std::sync::Mutex::new(None),
        logs: std::sync::Mutex::new(VecDeque::new()),
        llm: std::sync::Mutex::new(LlmUse::default()),
        recorder: setup.recorder.clone(),
        prices: setup.prices.clone(),
    });
    let clock = Arc::new(AtomicU64::new(as_of_ms(first)));
    let mut running = Vec::new();
    for (index, stage) in stages.iter().enumerate() {
        let services = services(setup, stage, &shared);
        let session = if setup.fresh_instance_per_call {
            None
        } else {
            let replay = Replay {
                seed: setup.seed.wrapping_add(index as u64),
                clock: clock.clone(),
            };
            let session = setup
                .sandbox
                .replay_session(
                    &stage.version.prepared,
                    &stage.version.resolved.limits,
                    services.clone(),
                    &replay,
                )
                .await
                .map_err(|e| Failure::sandbox(&stage.version, first, &e))?;
            Some(session)
        };
        running.push(Running {
            stage: stage.clone(),
            services,
            session,
        });
    }
    let mut out = Pass {
        days: Vec::with_capacity(days.len()),
        curve: Vec::with_capacity(days.len()),
        cash: Vec::with_capacity(days.len()),
        log: Vec::new(),
        totals: Totals::default(),
        llm: LlmUse::default(),
        decisions: 0,
        errors: 0,
        last_error: None,
        logs: Vec::new(),
    };
    let mut sequence = 0u64;
    // One event and one queue for the whole pass: their buffers are reused.
    let mut event = Event {
        id: String::new(),
        topic: String::new(),
        payload: String::new(),
        source: String::new(),
        at_ms: 0,
    };
    let mut queue: VecDeque<Emitted> = VecDeque::new();
    for day in days {
        if control.cancel.load(Ordering::Relaxed) {
            return Err(Failure::at(
                "cancelled",
                day.date,
                format!("cancelled before the bar of {}", day.date),
            ));
        }
        *lock(&shared.day) = day.date;
        clock.store(as_of_ms(day.date), Ordering::Relaxed);
        {
            let mut account = lock(&shared.account);
            account.open_day(day);
            let (equity, cash, gross) = account.value();
            out.days.push(day.date);
            out.curve.push(Point {
                equity,
                gross_exposure: gross,
            });
            out.cash.push(cash);
        }
        let at_ms = as_of_ms(day.date);
        // As live: the day's fills and the gate's changes, then the tick.
        queue.clear();
        drain(&shared, &mut queue);
        queue.push_back(Emitted {
            source: Cow::Borrowed("market"),
            topic: Cow::Borrowed("market.tick"),
            payload: day.tick.clone(),
        });
        let mut delivered = 0usize;
        while let Some(emitted) = queue.pop_front() {
            for (index, stage) in running.iter_mut().enumerate() {
                let manifest = &stage.stage.version.manifest;
                if stage.stage.version.agent == emitted.source
                    || !manifest.subscribes_to(&emitted.topic)
                {
                    continue;
                }
                delivered += 1;
                if delivered > MAX_EVENTS_PER_BAR {
                    return Err(Failure::at(
                        "event_storm",
                        day.date,
                        format!(
                            "more than {MAX_EVENTS_PER_BAR} events were delivered for the bar of {}",
                            day.date
                        ),
                    ));
                }
                sequence += 1;
                event.id.clear();
                let _ = write!(event.id, "backtest-{sequence}");
                for (to, from) in [
                    (&mut event.topic, &*emitted.topic),
                    (&mut event.payload, &*emitted.payload),
                    (&mut event.source, &*emitted.source),
                ] {
                    to.clear();
                    to.push_str(from);
                }
                event.at_ms = at_ms;
                if index == 0 {
                    out.decisions += 1;
                }
                let answer = match &mut stage.session {
                    Some(session) => session.handle(&event).await,
                    None => {
                        setup
                            .sandbox
                            .handle(
                                &stage.stage.version.prepared,
                                &stage.stage.version.resolved.limits,
                                stage.services.clone(),
                                event.clone(),
                            )
                            .await
                    }
                };
                if let Some(asked) = lock(&shared.look_ahead).take() {
                    return Err(Failure::at(
                        "look_ahead",
                        day.date,
                        format!("look-ahead at the bar of {}: {asked}", day.date),
                    ));
                }
                match answer {
                    Ok(_) => {}
                    Err(overseer_sandbox::Error::Guest(e)) => {
                        out.errors += 1;
                        out.last_error = Some(format!(
                            "{} at the bar of {}: {e}",
                            stage.stage.version.agent, day.date
                        ));
                    }
                    Err(e) => return Err(Failure::sandbox(&stage.stage.version, day.date, &e)),
                }
                drain(&shared, &mut queue);
            }
        }
        control.done.fetch_add(1, Ordering::Relaxed);
    }
    let account = std::mem::replace(
        &mut *lock(&shared.account),
        Account::new(
            0.0,
            Vec::new(),
            setup.risk.clone(),
            setup.costs,
            BTreeMap::new(),
        ),
    );
    out.log = account.log;
    out.totals = account.totals;
    out.llm = *lock(&shared.llm);
    out.logs = lock(&shared.logs).iter().cloned().collect();
    Ok(out)
}

/// Queue what the account published, then what the stages emitted.
fn drain(shared: &Shared, queue: &mut VecDeque<Emitted>) {
    let published = std::mem::take(&mut lock(&shared.account).published);
    queue.extend(published.into_iter().map(|p| Emitted {
        source: Cow::Borrowed(p.source),
        topic: Cow::Owned(p.topic),
        payload: p.payload.to_string().into(),
    }));
    queue.extend(std::mem::take(&mut *lock(&shared.queue)));
}

/// The services of `stage` in a run: what its manifest grants, served from the run.
fn services(setup: &Setup, stage: &Stage, shared: &Arc<Shared>) -> Services {
    let manifest = &stage.version.manifest;
    let agent = stage.version.agent.clone();
    let runtime = Arc::new(StageRuntime {
        agent: agent.clone(),
        config: stage.config.clone(),
        publish: manifest.capabilities.publish.clone(),
        budgets: setup.budgets.clone(),
        shared: shared.clone(),
    });
    let mut services = Services::new(runtime, Arc::new(RunKv::default()));
    let granted = |interface: &str| manifest.grants(interface);
    if granted("market") {
        services.market = Capability::Served(Arc::new(RunMarket {
            agent: agent.clone(),
            shared: shared.clone(),
        }));
    }
    if granted("broker") {
        services.broker = Capability::Served(Arc::new(RunBroker {
            placer: Placer {
                agent: agent.clone(),
                version: Some(stage.version.number),
                trigger: None,
            },
            shared: shared.clone(),
        }));
    }
    if granted("llm") {
        services.llm = Capability::Served(Arc::new(RunLlm {
            agent: agent.clone(),
            model: match &setup.llm {
                Some(llm) => llm(&stage.version),
                None => Arc::new(super::services::Unconfigured),
            },
            shared: shared.clone(),
        }));
    }
    if granted("http") {
        services.http = Capability::Served(Arc::new(Outside));
    }
    if granted("memory") {
        services.memory = Capability::Served(Arc::new(Outside));
    }
    if granted("source") {
        services.source = Capability::Served(Arc::new(Outside));
    }
    if granted("budget") {
        services.budget = Capability::Served(Arc::new(Outside));
    }
    if granted("fundamentals") {
        services.fundamentals = Capability::Served(Arc::new(Outside));
    }
    if granted("fleet") {
        services.fleet = Capability::Served(Arc::new(Outside));
    }
    if granted("prompts") {
        // The version's own prompts: a backtest replays the version as it was pushed.
        services.prompts = Capability::Served(Arc::new(
            overseer_kernel::capability::prompts::ManifestPrompts {
                agent: agent.clone(),
                manifest: manifest.clone(),
            },
        ));
    }
    if granted("backtest") {
        services.backtest = Capability::Served(Arc::new(super::provider::NoBacktests));
    }
    services
}
