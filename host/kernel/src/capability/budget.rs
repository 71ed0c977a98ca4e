//! LLM budgets: per agent and for all agents together, per day (UTC), in tokens and in US
//! dollars (at the configured price of each model). Before a completion the host reserves
//! its worst case — the prompt's bytes plus 4 per message and 3 (no token is shorter than a
//! byte; 4 and 3 are the chat format's framing, as OpenAI counts it) and the request's
//! `max_tokens` — under one lock with every other reservation; afterwards it settles the
//! usage the endpoint reported. A call whose worst case does not fit answers `unavailable`
//! naming the budget. Reserving the worst case before, under the lock, is what keeps the
//! spend within the budget however many calls run at once.
//!
//! The `budget` interface reads every agent's budget and sets one within the caps.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use overseer_sandbox::{AgentBudget, BudgetCaps, GuestError};
use overseer_store::{BudgetRecord, Store, now_ms};
use serde::{Deserialize, Serialize};

use super::{CallContext, Provider};

const DAY_MS: u64 = 86_400_000;

/// A model's price, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

/// The LLM budgets' defaults, caps and prices (`[llm_budget]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LlmBudgetConfig {
    /// The budget of an agent nobody set one for.
    pub agent_tokens_per_day: u64,
    pub agent_usd_per_day: f64,
    /// The most any agent's budget may be set to.
    pub max_agent_tokens_per_day: u64,
    pub max_agent_usd_per_day: f64,
    /// What all agents together may spend in a day.
    pub total_tokens_per_day: u64,
    pub total_usd_per_day: f64,
    /// The completion ceiling sent with a request that names none, so its worst case is
    /// known.
    pub default_max_tokens: u32,
    /// Prices per model name.
    pub prices: BTreeMap<String, Price>,
    /// The price of a model not in `prices`: high, so an unknown model is not cheap.
    pub default_price: Price,
}

impl Default for LlmBudgetConfig {
    fn default() -> Self {
        LlmBudgetConfig {
            agent_tokens_per_day: 200_000,
            agent_usd_per_day: 1.0,
            max_agent_tokens_per_day: 2_000_000,
            max_agent_usd_per_day: 10.0,
            total_tokens_per_day: 5_000_000,
            total_usd_per_day: 25.0,
            default_max_tokens: 1024,
            prices: BTreeMap::from([
                (
                    "gpt-4o-mini".to_string(),
                    Price {
                        prompt_per_million: 0.15,
                        completion_per_million: 0.60,
                    },
                ),
                (
                    "gpt-4o".to_string(),
                    Price {
                        prompt_per_million: 2.50,
                        completion_per_million: 10.0,
                    },
                ),
            ]),
            default_price: Price {
                prompt_per_million: 10.0,
                completion_per_million: 30.0,
            },
        }
    }
}

impl LlmBudgetConfig {
    fn price(&self, model: &str) -> Price {
        self.prices
            .get(model)
            .copied()
            .unwrap_or(self.default_price)
    }

    /// The cost of `prompt` and `completion` tokens of `model`, in US dollars.
    pub fn cost(&self, model: &str, prompt: u64, completion: u64) -> f64 {
        let price = self.price(model);
        (prompt as f64 * price.prompt_per_million
            + completion as f64 * price.completion_per_million)
            / 1e6
    }
}

/// Tokens and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Spend {
    pub tokens: u64,
    pub usd: f64,
}

impl Spend {
    fn add(&mut self, other: Spend) {
        self.tokens += other.tokens;
        self.usd += other.usd;
    }

    fn sub(&mut self, other: Spend) {
        self.tokens = self.tokens.saturating_sub(other.tokens);
        self.usd = (self.usd - other.usd).max(0.0);
    }
}

/// One day's books.
#[derive(Debug, Default)]
struct Books {
    /// Days since the Unix epoch (UTC).
    day: u64,
    used: HashMap<String, Spend>,
    reserved: HashMap<String, Spend>,
    budgets: HashMap<String, Spend>,
}

impl Books {
    fn total(map: &HashMap<String, Spend>) -> Spend {
        let mut total = Spend::default();
        for spend in map.values() {
            total.add(*spend);
        }
        total
    }
}

/// A worst case held for one call until it settles.
#[derive(Debug)]
pub struct Reservation {
    agent: String,
    day: u64,
    held: Spend,
}

/// One agent's budget, what it used today and what it holds for calls under way.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BudgetView {
    pub agent: String,
    pub budget: Spend,
    pub used: Spend,
    pub reserved: Spend,
}

/// The LLM budgets of every agent. Cheap to share.
pub struct LlmBudgets {
    config: LlmBudgetConfig,
    store: Store,
    books: Mutex<Books>,
    /// One setting at a time: the check of the sum and the write are one step.
    setting: tokio::sync::Mutex<()>,
}

fn today() -> u64 {
    now_ms() / DAY_MS
}

impl LlmBudgets {
    /// The budgets as stored, and today's spend read back from the recorded calls.
    ///
    /// # Errors
    /// The store's.
    pub async fn load(config: LlmBudgetConfig, store: Store) -> overseer_store::Result<Self> {
        let day = today();
        let mut books = Books {
            day,
            ..Books::default()
        };
        for spend in store.llm_spend_since(day * DAY_MS).await? {
            books
                .used
                .entry(spend.agent.clone())
                .or_default()
                .add(Spend {
                    tokens: spend.prompt_tokens + spend.completion_tokens,
                    usd: config.cost(&spend.model, spend.prompt_tokens, spend.completion_tokens),
                });
        }
        for budget in store.llm_budgets().await? {
            books.budgets.insert(
                budget.agent,
                Spend {
                    tokens: budget.tokens_per_day,
                    usd: budget.usd_per_day,
                },
            );
        }
        Ok(LlmBudgets {
            config,
            store,
            books: Mutex::new(books),
            setting: tokio::sync::Mutex::new(()),
        })
    }

    pub fn config(&self) -> &LlmBudgetConfig {
        &self.config
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let day = today();
        if books.day != day {
            books.day = day;
            books.used.clear();
        }
        books
    }

    fn budget_of(&self, books: &Books, agent: &str) -> Spend {
        books.budgets.get(agent).copied().unwrap_or(Spend {
            tokens: self.config.agent_tokens_per_day,
            usd: self.config.agent_usd_per_day,
        })
    }

    /// The worst case of a completion of `messages` (their bytes) asking for at most
    /// `max_tokens`, on `model`.
    pub fn worst_case(&self, model: &str, message_bytes: &[usize], max_tokens: u32) -> Spend {
        let prompt: u64 = message_bytes.iter().map(|b| *b as u64 + 4).sum::<u64>() + 3;
        let completion = u64::from(max_tokens);
        Spend {
            tokens: prompt + completion,
            usd: self.config.cost(model, prompt, completion),
        }
    }

    /// Hold `worst` for a call of `agent`.
    ///
    /// # Errors
    /// The budget (the agent's, or all agents') the call does not fit, said in a sentence.
    pub fn reserve(&self, agent: &str, worst: Spend) -> Result<Reservation, String> {
        let mut books = self.books();
        let budget = self.budget_of(&books, agent);
        let mut mine = books.used.get(agent).copied().unwrap_or_default();
        mine.add(books.reserved.get(agent).copied().unwrap_or_default());
        let mut all = Books::total(&books.used);
        all.add(Books::total(&books.reserved));
        let refuse = |what: &str, spent: u64, plus: u64, limit: u64, unit: &str| {
            format!(
                "llm budget: {what} is spent ({spent} used or held + {plus} for this call > {limit} {unit} a day)"
            )
        };
        if mine.tokens + worst.tokens > budget.tokens {
            return Err(refuse(
                &format!("{agent}'s token budget"),
                mine.tokens,
                worst.tokens,
                budget.tokens,
                "tokens",
            ));
        }
        if mine.usd + worst.usd > budget.usd {
            return Err(format!(
                "llm budget: {agent}'s dollar budget is spent (${:.4} used or held + ${:.4} for this call > ${:.2} a day)",
                mine.usd, worst.usd, budget.usd
            ));
        }
        if all.tokens + worst.tokens > self.config.total_tokens_per_day {
            return Err(refuse(
                "the total token budget",
                all.tokens,
                worst.tokens,
                self.config.total_tokens_per_day,
                "tokens",
            ));
        }
        if all.usd + worst.usd > self.config.total_usd_per_day {
            return Err(format!(
                "llm budget: the total dollar budget is spent (${:.4} used or held + ${:.4} for this call > ${:.2} a day)",
                all.usd, worst.usd, self.config.total_usd_per_day
            ));
        }
        books
            .reserved
            .entry(agent.to_string())
            .or_default()
            .add(worst);
        Ok(Reservation {
            agent: agent.to_string(),
            day: books.day,
            held: worst,
        })
    }

    /// Release `reservation` and book what the call really used.
    pub fn settle(&self, reservation: Reservation, model: &str, prompt: u64, completion: u64) {
        let mut books = self.books();
        if let Some(held) = books.reserved.get_mut(&reservation.agent) {
            held.sub(reservation.held);
        }
        if reservation.day == books.day {
            let used = Spend {
                tokens: prompt + completion,
                usd: self.config.cost(model, prompt, completion),
            };
            if used.tokens > reservation.held.tokens {
                tracing::warn!(
                    agent = reservation.agent,
                    used = used.tokens,
                    reserved = reservation.held.tokens,
                    "the LLM endpoint reported more tokens than the worst case"
                );
            }
            books.used.entry(reservation.agent).or_default().add(used);
        }
    }

    /// Book `reservation`'s whole worst case as spent: a call whose real usage is unknown.
    pub fn spend_reserved(&self, reservation: Reservation) {
        let mut books = self.books();
        if let Some(held) = books.reserved.get_mut(&reservation.agent) {
            held.sub(reservation.held);
        }
        if reservation.day == books.day {
            books
                .used
                .entry(reservation.agent)
                .or_default()
                .add(reservation.held);
        }
    }

    /// Every agent's budget that is set or spent today, with `agents` named besides.
    pub fn view(&self, agents: &[String]) -> Vec<BudgetView> {
        let books = self.books();
        let mut names: Vec<String> = agents.to_vec();
        names.extend(books.budgets.keys().cloned());
        names.extend(books.used.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|agent| BudgetView {
                budget: self.budget_of(&books, &agent),
                used: books.used.get(&agent).copied().unwrap_or_default(),
                reserved: books.reserved.get(&agent).copied().unwrap_or_default(),
                agent,
            })
            .collect()
    }

    /// What all agents together used today.
    pub fn total_used(&self) -> Spend {
        Books::total(&self.books().used)
    }

    /// Set `agent`'s budget.
    ///
    /// # Errors
    /// `invalid` (a sentence) over a cap, or when the budgets set would sum past the total.
    pub async fn set(&self, agent: &str, tokens: u64, usd: f64) -> Result<BudgetView, SetError> {
        let _one_at_a_time = self.setting.lock().await;
        let c = &self.config;
        if !usd.is_finite() || usd < 0.0 {
            return Err(SetError::Invalid(format!(
                "usd_per_day must be a number ≥ 0, not {usd}"
            )));
        }
        if tokens > c.max_agent_tokens_per_day || usd > c.max_agent_usd_per_day {
            return Err(SetError::Invalid(format!(
                "over the cap of {} tokens and ${:.2} a day per agent",
                c.max_agent_tokens_per_day, c.max_agent_usd_per_day
            )));
        }
        {
            let books = self.books();
            let (mut sum_tokens, mut sum_usd) = (tokens, usd);
            for (name, budget) in &books.budgets {
                if name != agent {
                    sum_tokens += budget.tokens;
                    sum_usd += budget.usd;
                }
            }
            if sum_tokens > c.total_tokens_per_day || sum_usd > c.total_usd_per_day + 1e-9 {
                return Err(SetError::Invalid(format!(
                    "the budgets set would sum to {sum_tokens} tokens and ${sum_usd:.2}, over the total of {} tokens and ${:.2} a day",
                    c.total_tokens_per_day, c.total_usd_per_day
                )));
            }
        }
        self.store
            .set_llm_budget(&BudgetRecord {
                agent: agent.to_string(),
                tokens_per_day: tokens,
                usd_per_day: usd,
            })
            .await
            .map_err(SetError::Store)?;
        self.books()
            .budgets
            .insert(agent.to_string(), Spend { tokens, usd });
        Ok(self
            .view(&[agent.to_string()])
            .into_iter()
            .find(|v| v.agent == agent)
            .unwrap_or(BudgetView {
                agent: agent.to_string(),
                budget: Spend { tokens, usd },
                used: Spend::default(),
                reserved: Spend::default(),
            }))
    }

    /// The caps, as the `budget` interface shows them.
    pub fn caps(&self) -> BudgetCaps {
        BudgetCaps {
            agent_tokens_per_day: self.config.max_agent_tokens_per_day,
            agent_usd_per_day: self.config.max_agent_usd_per_day,
            total_tokens_per_day: self.config.total_tokens_per_day,
            total_usd_per_day: self.config.total_usd_per_day,
        }
    }
}

/// Why a budget could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(overseer_store::Error),
}

/// Serves `budget`: reads for everyone granted it, sets only in real calls.
pub struct BudgetProvider {
    budgets: Arc<LlmBudgets>,
}

impl BudgetProvider {
    pub fn new(budgets: Arc<LlmBudgets>) -> Self {
        BudgetProvider { budgets }
    }
}

impl Provider<dyn overseer_sandbox::Budget> for BudgetProvider {
    fn real(&self, _call: &CallContext) -> Arc<dyn overseer_sandbox::Budget> {
        Arc::new(CallBudget {
            budgets: self.budgets.clone(),
            shadow: false,
        })
    }

    fn shadow(&self, _call: &CallContext) -> Arc<dyn overseer_sandbox::Budget> {
        Arc::new(CallBudget {
            budgets: self.budgets.clone(),
            shadow: true,
        })
    }
}

struct CallBudget {
    budgets: Arc<LlmBudgets>,
    shadow: bool,
}

fn agent_budget(view: BudgetView) -> AgentBudget {
    AgentBudget {
        agent: view.agent,
        tokens_per_day: view.budget.tokens,
        usd_per_day: view.budget.usd,
        tokens_used: view.used.tokens,
        usd_used: view.used.usd,
    }
}

#[async_trait]
impl overseer_sandbox::Budget for CallBudget {
    async fn budgets(&self) -> Result<Vec<AgentBudget>, GuestError> {
        let agents = self
            .budgets
            .store
            .agents()
            .await
            .map_err(|e| GuestError::Unavailable(format!("store: {e}")))?
            .into_iter()
            .map(|a| a.name)
            .collect::<Vec<_>>();
        Ok(self
            .budgets
            .view(&agents)
            .into_iter()
            .map(agent_budget)
            .collect())
    }

    fn caps(&self) -> BudgetCaps {
        self.budgets.caps()
    }

    async fn set(
        &self,
        agent: &str,
        tokens_per_day: u64,
        usd_per_day: f64,
    ) -> Result<AgentBudget, GuestError> {
        crate::check_name(agent).map_err(|e| GuestError::InvalidInput(e.to_string()))?;
        if self.shadow {
            let view = self.budgets.view(&[agent.to_string()]);
            return view
                .into_iter()
                .find(|v| v.agent == agent)
                .map(agent_budget)
                .ok_or_else(|| GuestError::InvalidInput(format!("no agent {agent:?}")));
        }
        match self.budgets.set(agent, tokens_per_day, usd_per_day).await {
            Ok(view) => Ok(agent_budget(view)),
            Err(SetError::Invalid(m)) => Err(GuestError::InvalidInput(m)),
            Err(SetError::Store(e)) => Err(GuestError::Unavailable(format!("store: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_case_bounds_prompt_and_completion() {
        let config = LlmBudgetConfig::default();
        let cost = config.cost("gpt-4o-mini", 1_000_000, 1_000_000);
        assert!((cost - 0.75).abs() < 1e-12);
        assert!((config.cost("unknown", 1_000_000, 0) - 10.0).abs() < 1e-12);
    }
}
