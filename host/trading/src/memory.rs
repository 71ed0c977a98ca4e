//! The `memory` interface: texts with JSON metadata in the host's database, recalled by BM25
//! relevance (SQLite FTS5; `ts_rank_cd` on PostgreSQL) and filtered by metadata. With an
//! embeddings endpoint configured, each text is stored with its vector and recall is hybrid:
//! half the lexical score (scaled to the best of the answer) and half the cosine similarity
//! to the query's vector, over the lexical matches and the newest texts with vectors. A collection
//! is stored as `<agent>/<name>`, or as `shared/<name>` when the manifest lists the name in
//! `capabilities.shared_memory`: every agent that shares it reads and writes the same texts.

use std::sync::Arc;

use async_trait::async_trait;
use overseer_kernel::capability::{CallContext, Provider};
use overseer_providers::Embeddings;
use overseer_providers::embeddings::{cosine, from_bytes, to_bytes};
use overseer_sandbox::{GuestError, Recalled};
use overseer_store::{MemoryRecord, NewMemory, Store, now_ms};
use serde_json::{Map, Value};

/// The most texts one recall answers.
pub const MAX_RECALL: u32 = 100;

/// Candidates read from the index per text asked for, before the metadata filter.
const CANDIDATES_PER_RESULT: u32 = 10;

/// Texts with vectors compared with the query's, newest first, per recall.
const EMBEDDED_CANDIDATES: u32 = 500;

/// Serves `memory` from the store.
pub struct MemoryProvider {
    store: Store,
    embeddings: Option<Embeddings>,
}

impl MemoryProvider {
    pub fn new(store: Store, embeddings: Option<Embeddings>) -> Self {
        MemoryProvider { store, embeddings }
    }
}

impl Provider<dyn overseer_sandbox::Memory> for MemoryProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Memory> {
        Arc::new(CallMemory {
            store: self.store.clone(),
            embeddings: self.embeddings.clone(),
            agent: call.agent.clone(),
            shared: call.manifest.capabilities.shared_memory.clone(),
            as_of_ms: call.as_of_ms,
            shadow: false,
        })
    }

    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Memory> {
        Arc::new(CallMemory {
            store: self.store.clone(),
            embeddings: self.embeddings.clone(),
            agent: call.agent.clone(),
            shared: call.manifest.capabilities.shared_memory.clone(),
            as_of_ms: call.as_of_ms,
            shadow: true,
        })
    }
}

struct CallMemory {
    store: Store,
    embeddings: Option<Embeddings>,
    agent: String,
    shared: Vec<String>,
    /// The call's market time: what it writes is stamped with it, and it recalls nothing
    /// written as of a later one.
    as_of_ms: Option<u64>,
    shadow: bool,
}

impl CallMemory {
    /// The stored name of `collection` for this agent.
    fn collection(&self, collection: &str) -> Result<String, GuestError> {
        check_collection(collection)?;
        Ok(if self.shared.iter().any(|s| s == collection) {
            format!("shared/{collection}")
        } else {
            format!("{}/{collection}", self.agent)
        })
    }
}

/// A collection name: 1 to 64 lower-case letters, digits, `-` and `_`.
fn check_collection(name: &str) -> Result<(), GuestError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(GuestError::InvalidInput(format!(
            "collection {name:?}: 1 to 64 lower-case letters, digits, - and _"
        )))
    }
}

/// A JSON object, or `{}` for an empty text.
fn object(what: &str, text: &str) -> Result<Map<String, Value>, GuestError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(GuestError::InvalidInput(format!(
            "{what} must be a JSON object"
        ))),
    }
}

fn unavailable(e: overseer_store::Error) -> GuestError {
    GuestError::Unavailable(format!("memory: {e}"))
}

/// The texts of `collection` (its stored name) most relevant to `query`, best first, among
/// those whose metadata holds every key and value of `filter`, and, with `as_of_ms`, none
/// written as of a later market time.
///
/// # Errors
/// The store's.
pub async fn recall(
    store: &Store,
    embeddings: Option<&Embeddings>,
    collection: &str,
    query: &str,
    k: u32,
    filter: &Map<String, Value>,
    as_of_ms: Option<u64>,
) -> overseer_store::Result<Vec<MemoryRecord>> {
    let k = k.min(MAX_RECALL);
    let candidates = if filter.is_empty() && embeddings.is_none() {
        k
    } else {
        k.saturating_mul(CANDIDATES_PER_RESULT).max(100)
    };
    let mut found = store
        .recall(collection, query, candidates, as_of_ms)
        .await?;
    let query_vector = match embeddings {
        Some(e) if !query.trim().is_empty() => match e.embed(query).await {
            Ok(v) => Some(v),
            Err(error) => {
                tracing::warn!(%error, "query not embedded; recall is lexical");
                None
            }
        },
        _ => None,
    };
    if let Some(query_vector) = query_vector {
        let best = found.iter().map(|m| m.rank).fold(0.0f64, f64::max);
        let mut by_id: std::collections::BTreeMap<i64, MemoryRecord> =
            found.into_iter().map(|m| (m.id, m)).collect();
        for memory in store
            .embedded(collection, EMBEDDED_CANDIDATES, as_of_ms)
            .await?
        {
            by_id.entry(memory.id).or_insert(MemoryRecord {
                rank: 0.0,
                ..memory
            });
        }
        found = by_id
            .into_values()
            .map(|mut m| {
                let lexical = if best > 0.0 { m.rank / best } else { 0.0 };
                let semantic = m
                    .embedding
                    .as_deref()
                    .map_or(0.0, |v| cosine(&query_vector, &from_bytes(v)).max(0.0));
                m.rank = 0.5 * lexical + 0.5 * semantic;
                m
            })
            .filter(|m| m.rank > 0.0)
            .collect();
        found.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(b.id.cmp(&a.id)));
    }
    Ok(found
        .into_iter()
        .filter(|memory| matches(&memory.metadata, filter))
        .take(k as usize)
        .collect())
}

fn matches(metadata: &str, filter: &Map<String, Value>) -> bool {
    if filter.is_empty() {
        return true;
    }
    let Ok(Value::Object(metadata)) = serde_json::from_str::<Value>(metadata) else {
        return false;
    };
    filter
        .iter()
        .all(|(key, value)| metadata.get(key) == Some(value))
}

#[async_trait]
impl overseer_sandbox::Memory for CallMemory {
    async fn remember(
        &self,
        collection: &str,
        text: &str,
        metadata: &str,
    ) -> Result<u64, GuestError> {
        let collection = self.collection(collection)?;
        let metadata = Value::Object(object("metadata", metadata)?).to_string();
        if text.trim().is_empty() {
            return Err(GuestError::InvalidInput(
                "nothing to remember: the text is empty".to_string(),
            ));
        }
        if self.shadow {
            return Ok(0);
        }
        let vector = match &self.embeddings {
            Some(e) => match e.embed(text).await {
                Ok(v) => Some(to_bytes(&v)),
                Err(error) => {
                    tracing::warn!(%error, "text remembered without a vector");
                    None
                }
            },
            None => None,
        };
        let id = self
            .store
            .remember(&NewMemory {
                collection: &collection,
                text,
                metadata: &metadata,
                embedding: vector.as_deref(),
                at_ms: now_ms(),
                as_of_ms: self.as_of_ms,
            })
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(id).unwrap_or(0))
    }

    async fn recall(
        &self,
        collection: &str,
        query: &str,
        k: u32,
        filter: &str,
    ) -> Result<Vec<Recalled>, GuestError> {
        let collection = self.collection(collection)?;
        let filter = object("filter", filter)?;
        let found = recall(
            &self.store,
            self.embeddings.as_ref(),
            &collection,
            query,
            k,
            &filter,
            self.as_of_ms,
        )
        .await
        .map_err(unavailable)?;
        Ok(found
            .into_iter()
            .map(|m| Recalled {
                id: u64::try_from(m.id).unwrap_or(0),
                text: m.text,
                metadata: m.metadata,
                score: m.rank,
                at_ms: m.at_ms,
            })
            .collect())
    }

    async fn forget(&self, collection: &str, id: u64) -> Result<(), GuestError> {
        let collection = self.collection(collection)?;
        if self.shadow {
            return Ok(());
        }
        self.store
            .forget(&collection, i64::try_from(id).unwrap_or(i64::MAX))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_every_key_and_value() {
        let filter = object("filter", r#"{"symbol":"AAPL","outcome":"win"}"#).unwrap();
        assert!(matches(
            r#"{"symbol":"AAPL","outcome":"win","pnl":3}"#,
            &filter
        ));
        assert!(!matches(r#"{"symbol":"AAPL","outcome":"loss"}"#, &filter));
        assert!(!matches("not json", &filter));
        assert!(matches("not json", &Map::new()));
        assert!(object("filter", "[1]").is_err());
        assert!(check_collection("trades").is_ok());
        assert!(check_collection("../x").is_err());
        assert!(check_collection("").is_err());
    }
}
