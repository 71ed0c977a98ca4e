//! Embeddings from an OpenAI-compatible endpoint (`POST <url>/embeddings`), for trade
//! memory's cosine ranking. Nothing is downloaded: without an endpoint there are no vectors
//! and memory ranks by BM25 alone.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rest::{Rest, RestError};
use crate::secret::Secret;

/// An embeddings endpoint (`[embeddings]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// Base URL of an OpenAI-compatible API (`https://api.openai.com/v1`); none: no vectors.
    pub url: Option<String>,
    #[serde(skip_serializing)]
    pub key: Option<Secret>,
    pub model: String,
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        EmbeddingsConfig {
            url: None,
            key: None,
            model: "text-embedding-3-small".to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    embedding: Vec<f32>,
}

/// A client of an embeddings endpoint.
#[derive(Clone)]
pub struct Embeddings {
    rest: Rest,
    model: String,
}

impl Embeddings {
    /// A client of `config`'s endpoint, or `None` when none is configured.
    ///
    /// # Errors
    /// A key that cannot be a header.
    pub fn new(config: &EmbeddingsConfig) -> Result<Option<Embeddings>, String> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let auth = config
            .key
            .as_ref()
            .map(|k| format!("Bearer {}", k.expose()));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        Ok(Some(Embeddings {
            rest: Rest::new("embeddings", url, &headers, Duration::from_secs(30))?,
            model: config.model.clone(),
        }))
    }

    /// The vector of `text`.
    ///
    /// # Errors
    /// [`RestError`]; an answer without exactly one non-empty vector is `Malformed`.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, RestError> {
        let answer: Answer = self
            .rest
            .post(
                "/embeddings",
                &json!({ "model": self.model, "input": [text] }),
            )
            .await?;
        match answer.data.into_iter().next() {
            Some(d) if !d.embedding.is_empty() => Ok(d.embedding),
            _ => Err(RestError::Malformed {
                service: "embeddings",
                message: "no vector in the answer".to_string(),
            }),
        }
    }
}

/// `vector` as little-endian f32 bytes, as memory stores it.
pub fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The vector stored as `bytes`.
pub fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The cosine similarity of two vectors, −1 to 1; 0 when their lengths differ or one is
/// zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_and_compare() {
        let v = [1.0f32, -2.5, 0.125];
        assert_eq!(from_bytes(&to_bytes(&v)), v);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-12);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
    }
}
