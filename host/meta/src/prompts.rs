//! The prompt registry: named prompts, versioned like code, labelled `production` and
//! `candidate`, served per call and scored by the outcome each use was for; and A/B
//! experiments between versions that promote a winner only when the evidence says so.
//!
//! - A prompt is `OWNER.KEY`. Version 1 is seeded from the owner's manifest (`[prompts.KEY]`)
//!   the first time the owner asks for it, or written through the API. The prompt's variables
//!   and their types are fixed by version 1; a later version's templates may name only them.
//! - An agent asks for a prompt for one experiment unit (a symbol, a task). It gets the
//!   `production` version, or, while an experiment runs, the variant of its unit: the unit's
//!   SHA-256 with the experiment's seed, placed on the traffic split, so the same unit always
//!   gets the same variant and a run is reproducible by its seed.
//! - Each use is kept; the agent reports a score, a success or both, once.
//! - An experiment looks at its outcomes each time every variant has another `min_samples` of
//!   them, at most `max_looks` times. Each look compares every challenger with the control
//!   (variant 0): Wilson intervals and the pooled two-proportion z-test for a success rate,
//!   Welch's t-test for a mean score. The level of each test is `alpha / (max_looks ×
//!   challengers)`: alpha spent evenly over the looks and the comparisons (Bonferroni). We
//!   chose it over an O'Brien–Fleming boundary or an SPRT because it holds for any schedule of
//!   looks and any number of arms, needs no assumption about the effect size, and the looks
//!   are taken when outcomes arrive, which the agents and not we decide; it costs power
//!   against the sharper boundaries. The simulated false-positive rate is printed by
//!   `experiment`'s tests.
//! - A significant challenger is promoted through governance (a `promote_prompt` decision,
//!   applied at once by the policy), so a promotion is on the trail beside every other
//!   decision. A significant control, or looks run out, promote nothing.
//! - Every version, label change, promotion and rollback is on the audit trail; `rollback`
//!   puts `production` back on the version it labelled before.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use overseer_kernel::Kernel;
use overseer_kernel::capability::prompts::{own_key, parse_variables};
use overseer_kernel::capability::{CallContext, Provider};
use overseer_kernel::prompt::{PromptSpec, VarType};
use overseer_sandbox::{GuestError, ServedPrompt};
use overseer_store::{
    ExperimentRecord, NewPromptUse, NewPromptVersion, PromptLabelRecord, PromptUseRecord,
    PromptVersionRecord, audit,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::experiment::{StoppingRule, Verdict, two_proportion_p, welch_p, wilson};
use crate::loops::Overseer;

/// The author of the versions an owner's manifest declares.
const MANIFEST: &str = "manifest";

/// The reason a rollback's label setting carries.
const ROLLBACK: &str = "rollback";

/// The labels a version may carry.
pub const LABELS: &[&str] = &["production", "candidate"];

/// Fewest outcomes per arm before a look: below it the tests' normal approximations are too
/// far off (a z-test on 5 against 5 is anti-conservative).
pub const MIN_SAMPLES: u64 = 10;

/// Most variants in one experiment.
pub const MAX_VARIANTS: usize = 8;

/// Uses read per prompt for its catalog entry.
const CATALOG_USES: u32 = 2000;

/// Why a prompt or an experiment request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("no prompt {0:?}")]
    NotFound(String),
    #[error("prompt {name:?} has no version {version}")]
    NoVersion { name: String, version: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Template(String),
    #[error("no experiment {0}")]
    NoExperiment(i64),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Store(#[from] overseer_store::Error),
}

impl PromptError {
    /// The stable code the API reports.
    pub fn code(&self) -> &'static str {
        match self {
            PromptError::NotFound(_) => "prompt_not_found",
            PromptError::NoVersion { .. } => "version_not_found",
            PromptError::Invalid(_) => "invalid_request",
            PromptError::Template(_) => "invalid_template",
            PromptError::NoExperiment(_) => "experiment_not_found",
            PromptError::Denied(_) => "denied",
            PromptError::Conflict(_) => "conflict",
            PromptError::Store(_) => "store_error",
        }
    }

    fn guest(self) -> GuestError {
        match self {
            PromptError::Store(e) => GuestError::Unavailable(e.to_string()),
            PromptError::Denied(m) => GuestError::Denied(m),
            other => GuestError::InvalidInput(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, PromptError>;

/// A prompt as `GET /v1/prompts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PromptSummary {
    /// `OWNER.KEY`.
    pub name: String,
    /// The agent it belongs to.
    pub owner: String,
    /// Each variable's type, by name, as its first version fixed them.
    pub variables: BTreeMap<String, VarType>,
    /// How many versions it has.
    pub versions: usize,
    /// The version each label (`production`, `candidate`) points at now.
    pub labels: BTreeMap<String, u32>,
}

/// One prompt, as `GET /v1/prompts/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PromptDetail {
    /// `OWNER.KEY`.
    pub name: String,
    /// The agent it belongs to.
    pub owner: String,
    /// The version each label (`production`, `candidate`) points at now.
    pub labels: BTreeMap<String, u32>,
    /// Oldest first.
    pub versions: Vec<PromptVersionRecord>,
    /// Every setting of its labels, oldest first.
    pub label_history: Vec<PromptLabelRecord>,
}

/// A new version as a person or an agent writes it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewPromptVersion)]
pub struct NewVersion {
    /// The system message; may name variables too.
    #[serde(default)]
    pub system: String,
    /// The user message.
    pub template: String,
    /// The variables, only for a prompt's first version (they are the prompt's).
    #[serde(default)]
    pub variables: Option<BTreeMap<String, VarType>>,
    /// The owner agent, only for a prompt's first version (default: the name's prefix).
    #[serde(default)]
    pub owner: Option<String>,
    /// What changed, for the record.
    #[serde(default)]
    pub note: String,
    /// `candidate` (default) or `production`; a first version is always `production`.
    #[serde(default)]
    pub label: Option<String>,
}

/// What an experiment compares, and when it may stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub prompt: String,
    /// The versions compared; the first is the control. The same version twice is an A/A test.
    pub variants: Vec<u32>,
    /// The share of units each variant gets (any positive weights); equal by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<f64>>,
    pub metric: ExperimentMetric,
    /// Outcomes per variant before the first look, and between looks.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// The false-positive rate allowed over the whole experiment.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default = "default_max_looks")]
    pub max_looks: u32,
    /// Seeds the assignment of units to variants.
    #[serde(default)]
    pub seed: u64,
}

fn default_min_samples() -> u64 {
    100
}

fn default_alpha() -> f64 {
    0.05
}

fn default_max_looks() -> u32 {
    5
}

/// What an experiment measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentMetric {
    /// The share of uses reported a success (Wilson intervals, two-proportion z-test).
    Success,
    /// The mean reported score (Welch's t-test).
    Score,
}

impl ExperimentMetric {
    /// Whether `used` was reported with this metric.
    fn observed(self, used: &PromptUseRecord) -> bool {
        match self {
            ExperimentMetric::Success => used.success.is_some(),
            ExperimentMetric::Score => used.score.is_some(),
        }
    }
}

/// One variant's outcomes so far.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Arm {
    pub variant: u32,
    pub version: u32,
    /// Outcomes reported.
    pub n: u64,
    pub successes: u64,
    /// Successes over outcomes, with its Wilson interval at the experiment's alpha.
    pub rate: Option<f64>,
    /// The success rate's Wilson interval at the experiment's level, low and high.
    #[schema(value_type = Option<Vec<f64>>, min_items = 2, max_items = 2)]
    pub interval: Option<(f64, f64)>,
    pub mean_score: Option<f64>,
    /// The p-value against the control (none for the control).
    pub p_value: Option<f64>,
}

/// What an experiment has found so far.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Findings {
    pub arms: Vec<Arm>,
    /// The level each comparison of a look is tested at.
    pub level: f64,
    /// Looks taken.
    pub looks: u32,
    pub verdict: Verdict,
    /// The winning variant, when a look found one.
    pub winner: Option<u32>,
}

/// The registry. The Overseer is attached once it exists, for promotions to go through its
/// governance; without one a promotion sets the label itself (still on the trail).
pub struct PromptRegistry {
    kernel: Kernel,
    overseer: OnceLock<Weak<Overseer>>,
    /// One look at a time: two outcomes arriving together never take the same look twice.
    looking: tokio::sync::Mutex<()>,
    /// One seed from a manifest at a time.
    seeding: tokio::sync::Mutex<()>,
}

impl PromptRegistry {
    pub fn new(kernel: Kernel) -> Arc<PromptRegistry> {
        Arc::new(PromptRegistry {
            kernel,
            overseer: OnceLock::new(),
            looking: tokio::sync::Mutex::new(()),
            seeding: tokio::sync::Mutex::new(()),
        })
    }

    /// Send promotions through `overseer`'s governance.
    pub fn attach(&self, overseer: &Arc<Overseer>) {
        let _ = self.overseer.set(Arc::downgrade(overseer));
    }

    fn store(&self) -> &overseer_store::Store {
        &self.kernel.store
    }

    /// Every prompt: its first version (owner, variables) and its labels now.
    pub async fn list(&self) -> Result<Vec<PromptSummary>> {
        let mut out = Vec::new();
        for first in self.store().prompts().await? {
            let versions = self.store().prompt_versions(&first.name).await?;
            let labels = current_labels(&self.store().prompt_labels(&first.name).await?);
            out.push(PromptSummary {
                variables: first
                    .body
                    .get("variables")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default(),
                name: first.name,
                owner: first.owner,
                versions: versions.len(),
                labels,
            });
        }
        Ok(out)
    }

    /// The versions of `name`, oldest first, with its labels now and their history.
    pub async fn show(&self, name: &str) -> Result<PromptDetail> {
        let versions = self.versions(name).await?;
        let history = self.store().prompt_labels(name).await?;
        Ok(PromptDetail {
            name: name.to_string(),
            owner: versions[0].owner.clone(),
            labels: current_labels(&history),
            versions,
            label_history: history,
        })
    }

    async fn versions(&self, name: &str) -> Result<Vec<PromptVersionRecord>> {
        let versions = self.store().prompt_versions(name).await?;
        if versions.is_empty() {
            return Err(PromptError::NotFound(name.to_string()));
        }
        Ok(versions)
    }

    async fn version(&self, name: &str, version: u32) -> Result<PromptVersionRecord> {
        self.versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or(PromptError::NoVersion {
                name: name.to_string(),
                version,
            })
    }

    /// Write a version of `name` by `author`. The first version makes the prompt (and is
    /// labelled `production`); a later one keeps the prompt's variables and is labelled as
    /// asked (`candidate` by default).
    pub async fn write(
        &self,
        name: &str,
        new: NewVersion,
        author: &str,
    ) -> Result<PromptVersionRecord> {
        check_prompt_name(name)?;
        let existing = self.store().prompt_versions(name).await?;
        let (owner, variables) = match existing.first() {
            None => {
                let owner = new
                    .owner
                    .clone()
                    .unwrap_or_else(|| name.split('.').next().unwrap_or(name).to_string());
                overseer_kernel::check_name(&owner)
                    .map_err(|e| PromptError::Invalid(format!("owner: {e}")))?;
                (owner, new.variables.clone().unwrap_or_default())
            }
            Some(first) => {
                // The variables are what the owner passes: its manifest's, as last pushed.
                let current = spec_of(existing.last().unwrap_or(first)).variables;
                let declared = match new.variables.clone() {
                    Some(pushed) if author == MANIFEST => pushed,
                    Some(other) if other != current => {
                        return Err(PromptError::Invalid(format!(
                            "the variables of {name:?} are those its owner passes: leave them out"
                        )));
                    }
                    _ => current,
                };
                if new.owner.as_ref().is_some_and(|o| *o != first.owner) {
                    return Err(PromptError::Invalid(format!(
                        "{name:?} belongs to {}",
                        first.owner
                    )));
                }
                (first.owner.clone(), declared)
            }
        };
        let label = match (&new.label, existing.is_empty()) {
            (_, true) => "production",
            (None, false) => "candidate",
            (Some(label), false) => checked_label(label)?,
        };
        let spec = PromptSpec {
            system: new.system,
            template: new.template,
            variables,
        };
        spec.check()
            .map_err(|e| PromptError::Template(format!("{name}: {e}")))?;
        let mut body = serde_json::to_value(&spec).unwrap_or(Value::Null);
        body["note"] = json!(new.note);
        let record = self
            .store()
            .insert_prompt_version(&NewPromptVersion {
                name,
                owner: &owner,
                author,
                body: &body,
            })
            .await?;
        audit::record(
            &**self.store(),
            author,
            "prompt.version",
            name,
            &json!({ "version": record.version, "note": new.note }),
        )
        .await;
        self.label(name, label, record.version, author, "written")
            .await?;
        Ok(record)
    }

    /// Point `label` of `name` at `version`.
    pub async fn label(
        &self,
        name: &str,
        label: &str,
        version: u32,
        by: &str,
        reason: &str,
    ) -> Result<PromptLabelRecord> {
        let label = checked_label(label)?;
        self.version(name, version).await?;
        let record = self
            .store()
            .set_prompt_label(name, label, version, by, reason)
            .await?;
        audit::record(
            &**self.store(),
            by,
            "prompt.label",
            name,
            &json!({ "label": label, "version": version, "reason": reason }),
        )
        .await;
        Ok(record)
    }

    /// Put `production` back on the version it labelled before its current one.
    pub async fn rollback(&self, name: &str, by: &str) -> Result<PromptLabelRecord> {
        let history = self.store().prompt_labels(name).await?;
        // The production versions as a stack: a rollback pops what it undid, so a second
        // rollback goes further back instead of restoring the version the first took away.
        let mut production: Vec<u32> = Vec::new();
        for l in history.iter().filter(|l| l.label == "production") {
            if l.reason == ROLLBACK {
                while production.last().is_some_and(|v| *v != l.version) {
                    production.pop();
                }
                if production.is_empty() {
                    production.push(l.version);
                }
            } else if production.last() != Some(&l.version) {
                production.push(l.version);
            }
        }
        let Some(&now) = production.last() else {
            return Err(PromptError::NotFound(name.to_string()));
        };
        let Some(&before) = production.iter().rev().find(|v| **v != now) else {
            return Err(PromptError::Conflict(format!(
                "{name:?} has had no production version before {now}"
            )));
        };
        let record = self
            .store()
            .set_prompt_label(name, "production", before, by, ROLLBACK)
            .await?;
        audit::record(
            &**self.store(),
            by,
            "prompt.rollback",
            name,
            &json!({ "from": now, "to": before }),
        )
        .await;
        Ok(record)
    }

    /// The unified diff of two versions' templates.
    pub async fn diff(&self, name: &str, a: u32, b: u32) -> Result<String> {
        let (a, b) = (self.version(name, a).await?, self.version(name, b).await?);
        let text = |v: &PromptVersionRecord| {
            let spec = spec_of(v);
            format!("[system]\n{}\n[template]\n{}\n", spec.system, spec.template)
        };
        Ok(similar::TextDiff::from_lines(&text(&a), &text(&b))
            .unified_diff()
            .header(
                &format!("{name}@{}", a.version),
                &format!("{name}@{}", b.version),
            )
            .to_string())
    }

    /// Render prompt `name` for `agent`'s call on `unit`, recording the use when `record`.
    /// A name of the agent's own manifest is seeded as version 1 the first time.
    pub async fn serve(
        &self,
        call: &CallContext,
        name: &str,
        unit: &str,
        variables: &Value,
        record: bool,
    ) -> Result<ServedPrompt> {
        let own = own_key(&call.agent, name).is_some();
        let full = match own_key(&call.agent, name) {
            Some(key) => format!("{}.{key}", call.agent),
            None => name.to_string(),
        };
        // Another agent's prompt is the Overseer's to read, and its uses never count in that
        // agent's experiments.
        if !own && !call.manifest.grants("fleet") {
            return Err(PromptError::Denied(format!(
                "{full:?} is another agent's prompt: only an agent granted fleet reads it"
            )));
        }
        let declared = own_key(&call.agent, name).and_then(|k| call.manifest.prompts.get(k));
        if !record && let Some(spec) = declared {
            // A shadow run (a check, a canary) tries the version as pushed, and writes nothing.
            let (system, text) = spec
                .render(variables)
                .map_err(|e| PromptError::Invalid(format!("prompt {full:?}: {e}")))?;
            return Ok(ServedPrompt {
                use_id: 0,
                name: full,
                version: 0,
                variant: None,
                system,
                text,
            });
        }
        let mut versions = self.store().prompt_versions(&full).await?;
        if record && let Some(spec) = declared {
            // The manifest's prompt as pushed is a version: seeded on first use, and written
            // again, as production, when a push changes it.
            let pushed = |versions: &[PromptVersionRecord]| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.author == MANIFEST)
                    .is_some_and(|v| spec_of(v) == *spec)
            };
            if !pushed(&versions) {
                let _one = self.seeding.lock().await;
                versions = self.store().prompt_versions(&full).await?;
                if !pushed(&versions) {
                    let note = if versions.is_empty() {
                        "seeded from the manifest"
                    } else {
                        "changed by a push of its manifest"
                    };
                    let new = NewVersion {
                        system: spec.system.clone(),
                        template: spec.template.clone(),
                        variables: Some(spec.variables.clone()),
                        owner: Some(call.agent.clone()),
                        note: note.to_string(),
                        label: Some("production".to_string()),
                    };
                    self.write(&full, new, MANIFEST).await?;
                    // An experiment between versions the owner no longer asks for ends.
                    for running in self
                        .store()
                        .experiments(Some(&full), Some("running"), 10)
                        .await?
                    {
                        self.stop(running.id, MANIFEST).await?;
                    }
                    versions = self.versions(&full).await?;
                }
            }
        }
        if versions.is_empty() {
            return Err(PromptError::NotFound(full));
        }
        let running = if record && own {
            self.store()
                .experiments(Some(&full), Some("running"), 1)
                .await?
                .into_iter()
                .next()
        } else {
            None
        };
        let (version, experiment, variant) = match running.as_ref().and_then(|e| {
            Some((
                e.id,
                serde_json::from_value::<ExperimentSpec>(e.body.clone()).ok()?,
            ))
        }) {
            Some((id, spec)) => {
                let variant = assign(&spec, unit);
                (spec.variants[variant as usize], Some(id), Some(variant))
            }
            None => {
                let labels = current_labels(&self.store().prompt_labels(&full).await?);
                let latest = versions.last().map_or(1, |v| v.version);
                (
                    labels.get("production").copied().unwrap_or(latest),
                    None,
                    None,
                )
            }
        };
        let chosen =
            versions
                .iter()
                .find(|v| v.version == version)
                .ok_or(PromptError::NoVersion {
                    name: full.clone(),
                    version,
                })?;
        let (system, text) = spec_of(chosen)
            .render(variables)
            .map_err(|e| PromptError::Invalid(format!("prompt {full:?}: {e}")))?;
        let use_id = if record {
            self.store()
                .insert_prompt_use(&NewPromptUse {
                    name: &full,
                    version,
                    agent: &call.agent,
                    unit,
                    experiment,
                    variant,
                })
                .await?
        } else {
            0
        };
        Ok(ServedPrompt {
            use_id,
            name: full,
            version,
            variant,
            system,
            text,
        })
    }

    /// Record the outcome of `agent`'s use `id`, and look at its experiment when it is in
    /// one.
    pub async fn report(
        &self,
        agent: &str,
        id: i64,
        score: Option<f64>,
        success: Option<bool>,
    ) -> Result<()> {
        let scored = self
            .store()
            .score_prompt_use(id, agent, score, success)
            .await?
            .ok_or_else(|| {
                PromptError::Invalid(format!("{agent} has no use {id} without an outcome"))
            })?;
        if let Some(experiment) = scored.experiment {
            self.look(experiment).await?;
        }
        Ok(())
    }

    /// Start an experiment; only one runs on a prompt at a time.
    pub async fn start(&self, spec: ExperimentSpec, by: &str) -> Result<ExperimentRecord> {
        let versions = self.versions(&spec.prompt).await?;
        if !(2..=MAX_VARIANTS).contains(&spec.variants.len()) {
            return Err(PromptError::Invalid(format!(
                "an experiment compares 2 to {MAX_VARIANTS} variants"
            )));
        }
        if let Some(v) = spec
            .variants
            .iter()
            .find(|v| !versions.iter().any(|k| k.version == **v))
        {
            return Err(PromptError::NoVersion {
                name: spec.prompt.clone(),
                version: *v,
            });
        }
        if let Some(split) = &spec.split
            && (split.len() != spec.variants.len()
                || split.iter().any(|w| !w.is_finite() || *w <= 0.0))
        {
            return Err(PromptError::Invalid(
                "split: one positive weight per variant".to_string(),
            ));
        }
        if !(spec.alpha > 0.0 && spec.alpha <= 0.5) {
            return Err(PromptError::Invalid(
                "alpha: above 0, at most 0.5".to_string(),
            ));
        }
        if !(1..=100).contains(&spec.max_looks)
            || !(MIN_SAMPLES..=1_000_000).contains(&spec.min_samples)
        {
            return Err(PromptError::Invalid(format!(
                "max_looks: 1 to 100; min_samples: {MIN_SAMPLES} to 1,000,000"
            )));
        }
        if !self
            .store()
            .experiments(Some(&spec.prompt), Some("running"), 1)
            .await?
            .is_empty()
        {
            return Err(PromptError::Conflict(format!(
                "an experiment runs on {:?} already: stop it first",
                spec.prompt
            )));
        }
        let body = serde_json::to_value(&spec).unwrap_or(Value::Null);
        let record = match self.store().insert_experiment(&spec.prompt, &body).await {
            Ok(record) => record,
            // Another start won the race (one running experiment per prompt, by index).
            Err(e) => {
                let running = self
                    .store()
                    .experiments(Some(&spec.prompt), Some("running"), 1)
                    .await?;
                return Err(if running.is_empty() {
                    e.into()
                } else {
                    PromptError::Conflict(format!(
                        "an experiment runs on {:?} already: stop it first",
                        spec.prompt
                    ))
                });
            }
        };
        audit::record(
            &**self.store(),
            by,
            "experiment.start",
            &spec.prompt,
            &json!({ "experiment": record.id, "spec": body }),
        )
        .await;
        Ok(record)
    }

    /// Stop a running experiment by hand: nothing is promoted.
    pub async fn stop(&self, id: i64, by: &str) -> Result<ExperimentRecord> {
        let record = self.experiment(id).await?;
        let findings = self.findings(&record).await?;
        let result = json!(findings);
        let stopped = self
            .store()
            .transition_experiment(id, "running", "stopped", &result)
            .await?
            .ok_or_else(|| {
                PromptError::Conflict(format!("experiment {id} is {}, not running", record.state))
            })?;
        audit::record(
            &**self.store(),
            by,
            "experiment.stop",
            &record.prompt,
            &json!({ "experiment": id }),
        )
        .await;
        Ok(stopped)
    }

    pub async fn experiment(&self, id: i64) -> Result<ExperimentRecord> {
        self.store()
            .experiment(id)
            .await?
            .ok_or(PromptError::NoExperiment(id))
    }

    /// What experiment `record` has found from its outcomes now.
    pub async fn findings(&self, record: &ExperimentRecord) -> Result<Findings> {
        let spec: ExperimentSpec = serde_json::from_value(record.body.clone())
            .map_err(|e| PromptError::Invalid(format!("experiment {}: {e}", record.id)))?;
        let outcomes = self.store().experiment_outcomes(record.id).await?;
        let looks = record
            .result
            .as_ref()
            .and_then(|r| r.get("looks"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        Ok(judge(&spec, &outcomes, looks))
    }

    /// Take the next look at experiment `id` when every variant has enough new outcomes;
    /// promote a significant challenger.
    async fn look(&self, id: i64) -> Result<()> {
        let _one = self.looking.lock().await;
        let record = self.experiment(id).await?;
        if record.state != "running" {
            return Ok(());
        }
        let spec: ExperimentSpec = serde_json::from_value(record.body.clone())
            .map_err(|e| PromptError::Invalid(format!("experiment {id}: {e}")))?;
        let outcomes = self.store().experiment_outcomes(id).await?;
        let taken = record
            .result
            .as_ref()
            .and_then(|r| r.get("looks"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        // Outcomes of the experiment's metric, per arm: a use reported without it does not count.
        let observed = |v: u32| {
            outcomes
                .iter()
                .filter(|u| u.variant == Some(v) && spec.metric.observed(u))
                .count() as u64
        };
        let counts: Vec<u64> = (0..spec.variants.len() as u32).map(observed).collect();
        let fewest = counts.iter().copied().min().unwrap_or(0);
        let due = u32::try_from(fewest / spec.min_samples.max(1))
            .unwrap_or(u32::MAX)
            .min(spec.max_looks);
        // An arm no unit falls in would hold the experiment open for ever: past four times the
        // outcomes its looks need, it ends without a winner.
        let horizon = spec
            .min_samples
            .saturating_mul(u64::from(spec.max_looks))
            .saturating_mul(counts.len() as u64)
            .saturating_mul(4);
        let starved = counts.iter().sum::<u64>() >= horizon && due < spec.max_looks;
        if due <= taken && !starved {
            return Ok(());
        }
        let mut findings = judge(&spec, &outcomes, due.max(taken));
        if starved && findings.verdict == Verdict::Continue {
            findings.verdict = Verdict::NoDifference;
        }
        let to = match (findings.verdict, findings.winner) {
            (Verdict::Continue, _) => "running",
            (Verdict::Winner, Some(w)) if spec.variants[w as usize] != spec.variants[0] => {
                "promoted"
            }
            (Verdict::Winner, _) => "kept",
            (Verdict::NoDifference, _) => "no_difference",
        };
        let result = json!(findings);
        // The promotion first: should it fail, the experiment stays running and the next
        // outcome's look tries again.
        if to == "promoted"
            && let Some(winner) = findings.winner
        {
            self.promote(&spec, id, spec.variants[winner as usize], &findings)
                .await?;
        }
        if self
            .store()
            .transition_experiment(id, "running", to, &result)
            .await?
            .is_none()
        {
            return Ok(());
        }
        if to != "running" {
            audit::record(
                &**self.store(),
                "host",
                &format!("experiment.{to}"),
                &spec.prompt,
                &json!({ "experiment": id, "findings": result }),
            )
            .await;
        }
        Ok(())
    }

    /// Promote `version`: through governance when the Overseer runs (else, or when governance
    /// cannot take the decision, at once, on the trail as the host's).
    async fn promote(
        &self,
        spec: &ExperimentSpec,
        experiment: i64,
        version: u32,
        findings: &Findings,
    ) -> Result<()> {
        if let Some(overseer) = self.overseer.get().and_then(Weak::upgrade) {
            let owner = self.versions(&spec.prompt).await?[0].owner.clone();
            let decision =
                crate::governance::promotion(&spec.prompt, version, experiment, &owner, findings);
            match overseer
                .propose("experiment", "prompt-registry", &decision)
                .await
            {
                Ok(decision) if decision.state == "applied" => return Ok(()),
                // Governance could not take or apply it (the owner is no agent it can measure,
                // a prompt written through the API for an agent since retired): the evidence
                // still stands.
                Ok(decision) => {
                    tracing::warn!(prompt = %spec.prompt, decision = decision.id, state = %decision.state, "promoting without a decision")
                }
                Err(e) => {
                    tracing::warn!(prompt = %spec.prompt, error = %e, "promoting without a decision")
                }
            }
        }
        self.label(
            &spec.prompt,
            "production",
            version,
            "host",
            &format!("won experiment {experiment}"),
        )
        .await
        .map(|_| ())
    }

    /// Every prompt with each version's outcomes, its failing uses and its experiments: what
    /// the prompt engineer reads.
    pub async fn catalog(&self) -> Result<Value> {
        let mut prompts = Vec::new();
        for first in self.store().prompts().await? {
            let name = first.name.clone();
            let versions = self.store().prompt_versions(&name).await?;
            let labels = current_labels(&self.store().prompt_labels(&name).await?);
            let uses = self.store().prompt_uses(&name, CATALOG_USES).await?;
            let experiments = self.store().experiments(Some(&name), None, 5).await?;
            let per_version: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let of: Vec<&PromptUseRecord> =
                        uses.iter().filter(|u| u.version == v.version).collect();
                    let spec = spec_of(v);
                    let (n, successes, rate, mean) = tally(&of);
                    json!({
                        "version": v.version,
                        "author": v.author,
                        "note": v.body.get("note"),
                        "system": spec.system,
                        "template": spec.template,
                        "uses": of.len(),
                        "outcomes": n,
                        "successes": successes,
                        "success_rate": rate,
                        "mean_score": mean,
                    })
                })
                .collect();
            let failures: Vec<Value> = uses
                .iter()
                .filter(|u| u.success == Some(false))
                .take(5)
                .map(|u| json!({ "use": u.id, "version": u.version, "unit": u.unit, "score": u.score }))
                .collect();
            prompts.push(json!({
                "name": name,
                "owner": first.owner,
                "variables": spec_of(&first).variables,
                "labels": labels,
                "versions": per_version,
                "failures": failures,
                "experiments": experiments.iter().map(|e| json!({ "id": e.id, "state": e.state, "variants": e.body.get("variants") })).collect::<Vec<_>>(),
            }));
        }
        Ok(json!({ "prompts": prompts }))
    }
}

/// Outcomes, successes, success rate and mean score of `uses`.
fn tally(uses: &[&PromptUseRecord]) -> (u64, u64, Option<f64>, Option<f64>) {
    let scored: Vec<&&PromptUseRecord> = uses.iter().filter(|u| u.scored_ms.is_some()).collect();
    let with_success: Vec<bool> = scored.iter().filter_map(|u| u.success).collect();
    let successes = with_success.iter().filter(|s| **s).count() as u64;
    let scores: Vec<f64> = scored.iter().filter_map(|u| u.score).collect();
    let rate = (!with_success.is_empty()).then(|| successes as f64 / with_success.len() as f64);
    let mean = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
    (scored.len() as u64, successes, rate, mean)
}

/// The findings of `spec` on `outcomes` at look number `looks`.
fn judge(spec: &ExperimentSpec, outcomes: &[PromptUseRecord], looks: u32) -> Findings {
    let challengers = spec.variants.len().saturating_sub(1).max(1) as f64;
    let rule = StoppingRule {
        alpha: spec.alpha / challengers,
        max_looks: spec.max_looks,
        min_samples: spec.min_samples,
    };
    let arm_of = |v: u32| -> Vec<&PromptUseRecord> {
        outcomes.iter().filter(|u| u.variant == Some(v)).collect()
    };
    let successes = |uses: &[&PromptUseRecord]| {
        let n = uses.iter().filter(|u| u.success.is_some()).count() as u64;
        (
            uses.iter().filter(|u| u.success == Some(true)).count() as u64,
            n,
        )
    };
    let scores =
        |uses: &[&PromptUseRecord]| -> Vec<f64> { uses.iter().filter_map(|u| u.score).collect() };
    let control = arm_of(0);
    let mut arms = Vec::new();
    // Each challenger: its variant, p-value against the control, and whether it did better.
    let mut compared: Vec<(u32, f64, bool)> = Vec::new();
    let mut fewest = u64::MAX;
    for (i, version) in spec.variants.iter().enumerate() {
        let variant = i as u32;
        let uses = arm_of(variant);
        let (n, _, rate, mean) = tally(&uses);
        fewest = fewest.min(uses.iter().filter(|u| spec.metric.observed(u)).count() as u64);
        let (s, trials) = successes(&uses);
        let p = (i > 0).then(|| match spec.metric {
            ExperimentMetric::Success => two_proportion_p(successes(&control), (s, trials)),
            ExperimentMetric::Score => welch_p(&scores(&control), &scores(&uses)),
        });
        if let Some(p) = p {
            let better = match spec.metric {
                ExperimentMetric::Success => {
                    let (cs, cn) = successes(&control);
                    s as f64 / trials.max(1) as f64 > cs as f64 / cn.max(1) as f64
                }
                ExperimentMetric::Score => {
                    let (c, t) = (scores(&control), scores(&uses));
                    let m = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;
                    m(&t) > m(&c)
                }
            };
            compared.push((variant, p, better));
        }
        arms.push(Arm {
            variant,
            version: *version,
            n,
            successes: s,
            rate,
            interval: wilson(s, trials, spec.alpha),
            mean_score: mean,
            p_value: p,
        });
    }
    // The winner is the challenger significantly better than the control with the smallest
    // p-value; the control wins only when every challenger is significantly worse. A
    // challenger significantly worse while another may still win leaves the look open.
    let significant = |p: f64| p < rule.level();
    let better = compared
        .iter()
        .filter(|(_, p, better)| *better && significant(*p))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let all_worse = !compared.is_empty()
        && compared
            .iter()
            .all(|(_, p, better)| !*better && significant(*p));
    let (verdict, winner) = if looks == 0 || fewest < spec.min_samples {
        (Verdict::Continue, None)
    } else if let Some((variant, _, _)) = better {
        (Verdict::Winner, Some(*variant))
    } else if all_worse {
        (Verdict::Winner, Some(0))
    } else if looks >= spec.max_looks {
        (Verdict::NoDifference, None)
    } else {
        (Verdict::Continue, None)
    };
    Findings {
        arms,
        level: rule.level(),
        looks,
        verdict,
        winner,
    }
}

/// The variant of `unit`: its SHA-256 with the seed and the prompt, placed on the split.
fn assign(spec: &ExperimentSpec, unit: &str) -> u32 {
    let mut hash = Sha256::new();
    hash.update(spec.seed.to_le_bytes());
    hash.update(spec.prompt.as_bytes());
    hash.update([0]);
    hash.update(unit.as_bytes());
    let digest = hash.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // 53 bits: a uniform fraction in [0, 1).
    let at = (u64::from_le_bytes(head) >> 11) as f64 / (1u64 << 53) as f64;
    let weights = spec
        .split
        .clone()
        .unwrap_or_else(|| vec![1.0; spec.variants.len()]);
    let total: f64 = weights.iter().sum();
    let mut edge = 0.0;
    for (i, w) in weights.iter().enumerate() {
        edge += w / total;
        if at < edge {
            return i as u32;
        }
    }
    (weights.len() - 1) as u32
}

/// The version each label points at now.
fn current_labels(history: &[PromptLabelRecord]) -> BTreeMap<String, u32> {
    history
        .iter()
        .map(|l| (l.label.clone(), l.version))
        .collect()
}

fn spec_of(version: &PromptVersionRecord) -> PromptSpec {
    serde_json::from_value(json!({
        "system": version.body.get("system").cloned().unwrap_or(json!("")),
        "template": version.body.get("template").cloned().unwrap_or(json!("")),
        "variables": version.body.get("variables").cloned().unwrap_or(json!({})),
    }))
    .unwrap_or_default()
}

fn checked_label(label: &str) -> Result<&'static str> {
    LABELS
        .iter()
        .find(|l| **l == label)
        .copied()
        .ok_or_else(|| PromptError::Invalid(format!("label {label:?}: production or candidate")))
}

/// A prompt's name: `owner.key`, each 1 to 64 of a-z 0-9 _ -.
fn check_prompt_name(name: &str) -> Result<()> {
    let part = |p: &str| {
        (1..=64).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    match name.split_once('.') {
        Some((owner, key)) if part(owner) && part(key) => Ok(()),
        _ => Err(PromptError::Invalid(format!(
            "prompt name {name:?}: OWNER.KEY, each 1 to 64 of a-z 0-9 _ -"
        ))),
    }
}

/// Serves `prompts` from the registry: real calls record their uses; shadow runs render the
/// production version and record nothing.
pub struct PromptsProvider {
    registry: Arc<PromptRegistry>,
}

impl PromptsProvider {
    pub fn new(registry: Arc<PromptRegistry>) -> Self {
        PromptsProvider { registry }
    }
}

impl Provider<dyn overseer_sandbox::Prompts> for PromptsProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Prompts> {
        Arc::new(CallPrompts {
            registry: self.registry.clone(),
            call: call.clone(),
            shadow: false,
        })
    }

    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Prompts> {
        Arc::new(CallPrompts {
            registry: self.registry.clone(),
            call: call.clone(),
            shadow: true,
        })
    }
}

struct CallPrompts {
    registry: Arc<PromptRegistry>,
    call: CallContext,
    shadow: bool,
}

impl CallPrompts {
    /// Writing versions and experiments is the Overseer's: it needs the `fleet` grant.
    fn overseer_only(&self) -> std::result::Result<(), GuestError> {
        if !self.call.manifest.grants("fleet") {
            return Err(GuestError::Denied(
                "writing prompts and starting experiments needs the fleet grant".to_string(),
            ));
        }
        if self.shadow {
            return Err(GuestError::Denied(
                "a shadow run changes no prompt".to_string(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl overseer_sandbox::Prompts for CallPrompts {
    async fn get(
        &self,
        name: &str,
        unit: &str,
        variables: &str,
    ) -> std::result::Result<ServedPrompt, GuestError> {
        let variables = parse_variables(variables)?;
        self.registry
            .serve(&self.call, name, unit, &variables, !self.shadow)
            .await
            .map_err(PromptError::guest)
    }

    async fn report(
        &self,
        use_id: i64,
        score: Option<f64>,
        success: Option<bool>,
    ) -> std::result::Result<(), GuestError> {
        if self.shadow || use_id == 0 {
            return Ok(());
        }
        self.registry
            .report(&self.call.agent, use_id, score, success)
            .await
            .map_err(PromptError::guest)
    }

    async fn catalog(&self) -> std::result::Result<String, GuestError> {
        if !self.call.manifest.grants("fleet") {
            return Err(GuestError::Denied(
                "the prompt catalog needs the fleet grant".to_string(),
            ));
        }
        let catalog = self.registry.catalog().await.map_err(PromptError::guest)?;
        Ok(catalog.to_string())
    }

    async fn write(
        &self,
        name: &str,
        system: &str,
        template: &str,
        note: &str,
    ) -> std::result::Result<u32, GuestError> {
        self.overseer_only()?;
        let new = NewVersion {
            system: system.to_string(),
            template: template.to_string(),
            note: note.to_string(),
            ..NewVersion::default()
        };
        // Only a version of a prompt that exists: an agent makes no prompt of its own here.
        self.registry
            .versions(name)
            .await
            .map_err(PromptError::guest)?;
        self.registry
            .write(name, new, &self.call.agent)
            .await
            .map(|v| v.version)
            .map_err(PromptError::guest)
    }

    async fn start_experiment(&self, spec: &str) -> std::result::Result<i64, GuestError> {
        self.overseer_only()?;
        let spec: ExperimentSpec = serde_json::from_str(spec)
            .map_err(|e| GuestError::InvalidInput(format!("not an experiment: {e}")))?;
        self.registry
            .start(spec, &self.call.agent)
            .await
            .map(|e| e.id)
            .map_err(PromptError::guest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(variants: Vec<u32>, seed: u64) -> ExperimentSpec {
        ExperimentSpec {
            prompt: "a.b".to_string(),
            variants,
            split: None,
            metric: ExperimentMetric::Success,
            min_samples: 10,
            alpha: 0.05,
            max_looks: 5,
            seed,
        }
    }

    #[test]
    fn assignment_is_sticky_seeded_and_follows_the_split() {
        let s = spec(vec![1, 2], 7);
        let units: Vec<String> = (0..2000).map(|i| format!("unit-{i}")).collect();
        let first: Vec<u32> = units.iter().map(|u| assign(&s, u)).collect();
        assert_eq!(
            first,
            units.iter().map(|u| assign(&s, u)).collect::<Vec<_>>()
        );
        let share = first.iter().filter(|v| **v == 1).count() as f64 / 2000.0;
        assert!((share - 0.5).abs() < 0.05, "{share}");
        let other: Vec<u32> = units
            .iter()
            .map(|u| assign(&spec(vec![1, 2], 8), u))
            .collect();
        assert_ne!(first, other, "another seed, another assignment");
        let mut skewed = spec(vec![1, 2], 7);
        skewed.split = Some(vec![9.0, 1.0]);
        let share = units.iter().filter(|u| assign(&skewed, u) == 1).count() as f64 / 2000.0;
        assert!((share - 0.1).abs() < 0.03, "{share}");
    }

    fn outcome(variant: u32, success: bool) -> PromptUseRecord {
        PromptUseRecord {
            id: 0,
            name: "a.b".to_string(),
            version: variant + 1,
            agent: "a".to_string(),
            unit: String::new(),
            experiment: Some(1),
            variant: Some(variant),
            used_ms: 0,
            score: None,
            success: Some(success),
            scored_ms: Some(1),
        }
    }

    /// Arms of 200 outcomes with success rates `rates` (in tenths).
    fn arms(rates: &[u64]) -> Vec<PromptUseRecord> {
        rates
            .iter()
            .enumerate()
            .flat_map(|(v, r)| (0..200u64).map(move |i| outcome(v as u32, i % 10 < *r)))
            .collect()
    }

    #[test]
    fn a_significantly_worse_challenger_does_not_hide_a_better_one() {
        let s = spec(vec![1, 2, 3], 0);
        let f = judge(&s, &arms(&[5, 2, 7]), 1);
        assert_eq!((f.verdict, f.winner), (Verdict::Winner, Some(2)), "{f:?}");
        // A worse challenger and an even one: nobody has won yet.
        let f = judge(&s, &arms(&[5, 2, 5]), 1);
        assert_eq!(f.verdict, Verdict::Continue, "{f:?}");
        // Both worse: the control stays.
        let f = judge(&s, &arms(&[5, 2, 2]), 1);
        assert_eq!((f.verdict, f.winner), (Verdict::Winner, Some(0)), "{f:?}");
    }

    #[test]
    fn a_clear_challenger_wins_and_a_worse_one_leaves_the_control() {
        let s = spec(vec![1, 2], 0);
        let mut outcomes: Vec<PromptUseRecord> = (0..100).map(|i| outcome(0, i % 10 < 3)).collect();
        outcomes.extend((0..100).map(|i| outcome(1, i % 10 < 8)));
        let f = judge(&s, &outcomes, 1);
        assert_eq!((f.verdict, f.winner), (Verdict::Winner, Some(1)));
        assert!(f.arms[1].interval.unwrap().0 > f.arms[0].interval.unwrap().1);
        // Not before a look counts.
        assert_eq!(judge(&s, &outcomes, 0).verdict, Verdict::Continue);
        let flipped: Vec<PromptUseRecord> = outcomes
            .iter()
            .map(|u| outcome(1 - u.variant.unwrap(), u.success.unwrap()))
            .collect();
        assert_eq!(judge(&s, &flipped, 1).winner, Some(0));
    }
}
