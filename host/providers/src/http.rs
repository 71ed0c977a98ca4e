//! Outbound HTTP for agents granted `http`: the host makes the request with `reqwest`, only to
//! the origins (`scheme://host:port`) the agent's manifest allows, with a deadline and a cap on
//! the answer's size, and without following redirects (each hop would need its own check).

use std::time::Duration;

use reqwest::Url;

use crate::error::Error;

/// Longest a request may take: an API that has not answered by then is down for the agent's
/// purposes, and the agent's own deadline is usually a few seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer handed to an agent; the rest is refused rather than buffered. Four times the
/// largest value an agent may hand the host: room for a page of market data or a news feed.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Headers an agent may not set (nor any `proxy-*`).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
];

/// A request an agent asks the host to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wall clock for the request; [`DEFAULT_TIMEOUT`] when absent or larger.
    pub timeout_ms: Option<u32>,
}

/// The answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The HTTP client agents' requests go through.
pub struct Outbound {
    client: reqwest::Client,
}

impl Outbound {
    pub fn new() -> Result<Outbound, Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Unavailable(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Outbound { client })
    }

    /// Send `request` if its origin is in `allow`.
    pub async fn fetch(
        &self,
        allow: &[String],
        request: HttpRequest,
    ) -> Result<HttpResponse, Error> {
        let url = Url::parse(&request.url)
            .map_err(|e| Error::InvalidInput(format!("url {:?}: {e}", request.url)))?;
        if !allowed(allow, &url) {
            return Err(Error::Denied(format!(
                "{} is not in the manifest's http_allow",
                origin(&url)
            )));
        }
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .ok()
            .filter(|m| ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&m.as_str()))
            .ok_or_else(|| {
                Error::InvalidInput(format!("method {:?} is not supported", request.method))
            })?;
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(DEFAULT_TIMEOUT)
            .min(DEFAULT_TIMEOUT);
        let mut builder = self.client.request(method, url.clone()).timeout(timeout);
        for (name, value) in &request.headers {
            // The origin is the URL's: a `Host` of the agent's choosing would reach another site
            // behind an allowed address, and framing is the client's to set.
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                return Err(Error::InvalidInput(format!(
                    "header {name:?} is set by the host"
                )));
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body);
        }
        let unavailable =
            |e: reqwest::Error| Error::Unavailable(format!("{} did not answer: {e}", origin(&url)));
        let mut response = builder.send().await.map_err(|e| {
            if e.is_builder() {
                Error::InvalidInput(format!("the request is malformed: {e}"))
            } else {
                unavailable(e)
            }
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_string(), v.to_string()))
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Error::Failed(format!(
                    "the answer of {} is larger than {MAX_RESPONSE_BYTES} bytes",
                    origin(&url)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// `scheme://host:port` of a URL, the port spelled out.
fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Whether the origin of `url` is one of `allow`.
pub fn allowed(allow: &[String], url: &Url) -> bool {
    let wanted = origin(url);
    allow.iter().any(|entry| {
        Url::parse(entry)
            .map(|allowed| origin(&allowed).eq_ignore_ascii_case(&wanted))
            .unwrap_or(false)
    })
}

/// Check an `http_allow` entry: `http` or `https`, a host, an optional port, nothing else.
pub fn check_allow_entry(entry: &str) -> Result<(), String> {
    let url = Url::parse(entry).map_err(|e| format!("{entry:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{entry:?}: only http and https origins"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{entry:?}: no host"));
    }
    // A pattern is not an origin: `*` in a host would be compared as text and match nothing,
    // or, read by a later matcher as a wildcard, everything.
    if url.host_str().is_some_and(|h| h.contains('*')) || entry.contains('*') {
        return Err(format!(
            "{entry:?}: name one origin; wildcards are not allowed"
        ));
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{entry:?}: give an origin, scheme://host:port, without a path"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_by_scheme_host_and_port() {
        let allow = vec![
            "http://127.0.0.1:8080".to_string(),
            "https://api.example.com".to_string(),
        ];
        let yes = |u: &str| allowed(&allow, &Url::parse(u).unwrap());
        assert!(yes("http://127.0.0.1:8080/v1/x?y=1"));
        assert!(yes("https://API.example.com/anything"));
        assert!(yes("https://api.example.com:443/"));
        assert!(!yes("http://127.0.0.1:8081/"));
        assert!(!yes("https://127.0.0.1:8080/"));
        assert!(!yes("http://api.example.com/"));
        assert!(!yes("https://api.example.com.evil.test/"));
    }

    #[test]
    fn allow_entries_are_origins() {
        assert!(check_allow_entry("https://api.example.com").is_ok());
        assert!(check_allow_entry("http://127.0.0.1:9000").is_ok());
        for bad in [
            "api.example.com",
            "ftp://x.test",
            "https://x.test/path",
            "https://user@x.test",
            "http://*",
            "https://*.example.com",
            "https://api.example.com:*",
        ] {
            assert!(check_allow_entry(bad).is_err(), "{bad}");
        }
    }
}
