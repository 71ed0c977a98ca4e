//! The audit trail: an append-only log of what changed the system, each entry chained to the
//! one before by a SHA-256 hash, so that an entry modified, removed or moved after the fact
//! is found by walking the chain ([`verify`]).
//!
//! An entry's hash covers its sequence number, time, actor, action, subject, detail and the
//! previous entry's hash, each length-prefixed (`u64` big-endian) so that no two different
//! entries encode alike. The first entry's previous hash is [`GENESIS`].

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The previous hash of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry about to be appended.
#[derive(Debug, Clone, Copy)]
pub struct NewAudit<'a> {
    /// Who did it: `person` (an API call with the token), `host`, or an agent's name.
    pub actor: &'a str,
    /// What: `activate`, `rollback`, `quarantine`, `release`, `retire`, `edit`,
    /// `risk.halted`, `decision`, `approval`, …
    pub action: &'a str,
    /// What it was done to: an agent, `trading`, a decision's id.
    pub subject: &'a str,
    /// The particulars, as a JSON document; stored and hashed as this exact text.
    pub detail: &'a str,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: u64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    /// The hash of the entry before (`GENESIS` for the first), lower-case hex.
    pub prev_hash: String,
    /// This entry's hash, lower-case hex.
    pub hash: String,
}

/// The hash of an entry with these fields.
pub fn hash(seq: i64, at_ms: u64, entry: &NewAudit<'_>, prev_hash: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(seq.to_be_bytes());
    digest.update(at_ms.to_be_bytes());
    for field in [
        entry.actor,
        entry.action,
        entry.subject,
        entry.detail,
        prev_hash,
    ] {
        digest.update((field.len() as u64).to_be_bytes());
        digest.update(field.as_bytes());
    }
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditRecord {
    /// The hash its fields make.
    pub fn computed_hash(&self) -> String {
        let entry = NewAudit {
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            detail: &self.detail,
        };
        hash(self.seq, self.at_ms, &entry, &self.prev_hash)
    }
}

/// One thing wrong with the trail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The entry where it shows.
    pub seq: i64,
    /// `modified` (its hash does not match its contents), `broken_chain` (its previous
    /// hash is not the hash of the entry before it: one removed, inserted or moved),
    /// `missing` (numbers skipped: entries removed) or `out_of_order`.
    pub problem: &'static str,
    pub message: String,
}

/// What a walk of the trail found.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    /// The last entry's hash: keep it elsewhere to tell later that nothing was cut off the
    /// end, which the chain alone cannot show.
    pub head: String,
    pub problems: Vec<Problem>,
}

/// Walk `entries` (oldest first, the whole trail) and report every entry whose hash, place
/// or link does not hold.
pub fn verify(entries: &[AuditRecord]) -> Verification {
    let mut problems = Vec::new();
    let mut expected_seq = 1;
    let mut previous = GENESIS.to_string();
    for entry in entries {
        if entry.seq > expected_seq {
            problems.push(Problem {
                seq: entry.seq,
                problem: "missing",
                message: format!("entries {expected_seq} to {} are missing", entry.seq - 1),
            });
        } else if entry.seq < expected_seq {
            problems.push(Problem {
                seq: entry.seq,
                problem: "out_of_order",
                message: format!("entry {} comes after entry {}", entry.seq, expected_seq - 1),
            });
        }
        if entry.computed_hash() != entry.hash {
            problems.push(Problem {
                seq: entry.seq,
                problem: "modified",
                message: format!(
                    "entry {}'s contents do not make its hash: it was changed after it was written",
                    entry.seq
                ),
            });
        }
        if entry.prev_hash != previous {
            problems.push(Problem {
                seq: entry.seq,
                problem: "broken_chain",
                message: format!(
                    "entry {} does not follow the entry before it: one was removed, inserted or moved",
                    entry.seq
                ),
            });
        }
        expected_seq = entry.seq + 1;
        previous = entry.hash.clone();
    }
    Verification {
        ok: problems.is_empty(),
        entries: entries.len() as u64,
        head: previous,
        problems,
    }
}

/// Append an entry to `store`'s trail, `detail` as compact JSON. A failure is logged, not
/// returned: what was done stays done, and the log says the trail missed it.
pub async fn record(
    store: &dyn crate::AuditStore,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) {
    let detail = detail.to_string();
    let entry = NewAudit {
        actor,
        action,
        subject,
        detail: &detail,
    };
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(actor, action, subject, error = %e, "the audit trail missed an entry");
    }
}
