//! `web-researcher`: reads web pages for the research agents, politely. A request (an
//! invoke, or `research.fetch`) is `{"url": "https://…", "follow": 0}`; the answer is
//! `{url, fetched_ms, status, title, text, links, followed}`, published on `research.page`
//! for a `research.fetch` (with its `task` and `attempt`, and as `{url, error, message}` when
//! the page cannot be had):
//!
//! - pages come through the host's `http` capability, so only the origins of the manifest's
//!   `http_allow` are reached (none by default), and the host's size limit (4 MiB) and
//!   timeout hold; this agent asks for `timeout_ms` (10 s) and sends its own user agent;
//! - one request per host every `min_interval_ms` (1 s): an invoke sooner is `unavailable`,
//!   naming when to retry, and sends nothing; a `research.fetch` waits for its host's turn
//!   (up to 10 s);
//! - each origin's `robots.txt` is read first (and kept an hour), and a path it disallows for
//!   this agent's user agent is refused (RFC 9309, with the `texting_robots` crate; paths
//!   compared with unreserved escapes decoded and slashes collapsed); a robots.txt that cannot
//!   be had disallows everything until it can (the page is `unavailable`, worth asking
//!   again);
//! - once a request has its turn, a page that cannot be read is an answer
//!   `{url, error, message}` (`denied`, `invalid-input`, `unavailable`, `failed`), so the
//!   turn counts and a failing site is not asked again at once; a site answering 429 or
//!   5xx is `unavailable` (worth asking again);
//! - only `text/html` and `text/plain` are read; anything else is `invalid-input`;
//! - the text is the page's visible text (scripts and styles left out), whitespace collapsed,
//!   at most `max_text` characters; links are absolute `http(s)` URLs, each once, parsed with
//!   `scraper` (html5ever) and joined with `url`;
//! - with `follow: N`, up to N linked pages are read in the same call; each one the host or
//!   its robots.txt refuses, or the rate limit holds back, is listed with why.

use overseer_guest::http::{self, Request, Response};
use overseer_guest::{Agent, Error, Event, Info, kv};
use scraper::{Html, Selector};
use serde_json::{Value, json};
use url::Url;

struct WebResearcher;

/// The user agent sent with every request, and the one robots.txt rules are read for.
const USER_AGENT: &str = "overseer-web-researcher/0.1";
/// How long a robots.txt is kept, in milliseconds.
const ROBOTS_TTL_MS: u64 = 3_600_000;
/// Most bytes of a page parsed.
const MAX_PARSED: usize = 1 << 20;
/// Most links a page answers.
const MAX_LINKS: usize = 500;
/// Most pages one call follows.
const MAX_FOLLOW: u64 = 10;
/// Longest wait for a host's turn before reading a page asked for on `research.fetch`, in
/// milliseconds; a longer one is answered `unavailable`.
const MAX_TURN_WAIT_MS: u64 = 10_000;

fn setting(key: &str, default: u64) -> u64 {
    overseer_guest::config_parsed(key).unwrap_or(default)
}

/// A GET of `url` with this agent's user agent and timeout.
fn get(url: &Url) -> Result<Response, Error> {
    http::fetch(&Request {
        method: "GET".to_string(),
        url: url.to_string(),
        headers: vec![("user-agent".to_string(), USER_AGENT.to_string())],
        body: Vec::new(),
        timeout_ms: Some(setting("timeout_ms", 10_000).min(u64::from(u32::MAX)) as u32),
    })
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Most bytes of a robots.txt read (what RFC 9309 asks crawlers to parse at least).
const MAX_ROBOTS_BYTES: usize = 500 << 10;

/// Whether the origin's robots.txt lets this agent read `url`, read as RFC 9309 says: a
/// robots.txt that is missing (4xx) disallows nothing; one that cannot be had (a redirect,
/// 429, 5xx, or no answer) disallows everything: `unavailable`, and asked for again next
/// time. A readable one is kept in kv for an hour.
fn allowed_by_robots(url: &Url, now: u64) -> Result<bool, Error> {
    let origin = origin_of(url);
    let key = format!("robots:{origin}");
    let cached: Option<Value> = kv::get(&key)?.and_then(|v| serde_json::from_str(&v).ok());
    let text = match cached.filter(|c| {
        c["fetched_ms"]
            .as_u64()
            .is_some_and(|at| now < at.saturating_add(ROBOTS_TTL_MS))
    }) {
        Some(c) => c["text"].as_str().unwrap_or_default().to_string(),
        None => {
            let robots = Url::parse(&format!("{origin}/robots.txt"))
                .map_err(|e| Error::invalid_input(format!("{origin}: {e}")))?;
            let text = match get(&robots) {
                Ok(r) if r.status == 200 => {
                    let end = r.body.len().min(MAX_ROBOTS_BYTES);
                    String::from_utf8_lossy(&r.body[..end]).into_owned()
                }
                Ok(r) if (400..500).contains(&r.status) && r.status != 429 => String::new(),
                Ok(r) => {
                    return Err(Error::unavailable(format!(
                        "{origin}/robots.txt answered HTTP {}: nothing is read there until it can be had",
                        r.status
                    )));
                }
                // An origin the host does not allow stays refused.
                Err(e @ (Error::Denied(_) | Error::InvalidInput(_))) => return Err(e),
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "{origin}/robots.txt cannot be had ({}): nothing is read there until it can",
                        e.message()
                    )));
                }
            };
            kv::set(
                &key,
                &json!({ "fetched_ms": now, "text": text }).to_string(),
            )?;
            text
        }
    };
    if text.trim().is_empty() {
        return Ok(true);
    }
    match texting_robots::Robot::new(USER_AGENT, text.as_bytes()) {
        Ok(robot) => Ok(robot.allowed(&normalized(url))),
        // Rules that cannot be read cannot be obeyed: read nothing of the origin.
        Err(_) => Ok(false),
    }
}

/// `url` as robots.txt rules match it: percent-escapes of unreserved characters decoded and
/// repeated slashes in the path collapsed, so `/%70rivate` and `//private` are `/private`.
fn normalized(url: &Url) -> String {
    let mut path = String::new();
    let bytes = url.path().as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match decoded {
            Some(b) => {
                path.push(b as char);
                i += 3;
            }
            None => {
                path.push(bytes[i] as char);
                i += 1;
            }
        }
    }
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    let mut normal = url.clone();
    normal.set_path(&path);
    normal.to_string()
}

/// How long until the host of `url` may be asked again, in milliseconds (0: now).
fn turn_wait_ms(url: &Url, now: u64) -> Result<u64, Error> {
    let key = format!("last:{}", url.host_str().unwrap_or_default());
    let last: Option<u64> = kv::get(&key)?.and_then(|v| v.parse().ok());
    let interval = setting("min_interval_ms", 1_000);
    Ok(last.map_or(0, |last| last.saturating_add(interval).saturating_sub(now)))
}

/// Hold the host to one request every `min_interval_ms`; `unavailable` when too soon.
fn take_turn(url: &Url, now: u64) -> Result<(), Error> {
    let host = url.host_str().unwrap_or_default();
    let wait = turn_wait_ms(url, now)?;
    if wait > 0 {
        let interval = setting("min_interval_ms", 1_000);
        return Err(Error::unavailable(format!(
            "rate limit for {host}: one request every {interval} ms; retry in {wait} ms"
        )));
    }
    kv::set(&format!("last:{host}"), &now.to_string())?;
    Ok(())
}

/// The page at `url`. Malformed or rate-limited requests are errors, and nothing is sent;
/// once this host's turn is taken, every outcome is an answer (`{url, error, message}` when
/// the page cannot be read), so the turn and the robots.txt read are kept.
fn read(url: &Url, now: u64) -> Result<Value, Error> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::invalid_input(format!(
            "{url}: only http and https pages are read"
        )));
    }
    take_turn(url, now)?;
    Ok(fetch_page(url, now).unwrap_or_else(|e| {
        json!({ "url": url.as_str(), "fetched_ms": now, "error": e.code(), "message": e.message() })
    }))
}

fn fetch_page(url: &Url, now: u64) -> Result<Value, Error> {
    if !allowed_by_robots(url, now)? {
        return Err(Error::denied(format!(
            "{url}: robots.txt disallows it for {USER_AGENT}"
        )));
    }
    let response = get(url)?;
    // The site cannot serve it now: worth asking again later, unlike a 4xx.
    if response.status == 429 || response.status >= 500 {
        return Err(Error::unavailable(format!(
            "{url}: HTTP {} from the site",
            response.status
        )));
    }
    let content_type = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.to_ascii_lowercase())
        .unwrap_or_default();
    let html = content_type.starts_with("text/html");
    if !html && !content_type.starts_with("text/plain") {
        return Err(Error::invalid_input(format!(
            "{url}: {content_type:?} is not a page to read (text/html or text/plain)"
        )));
    }
    let Ok(body) = String::from_utf8(response.body) else {
        return Err(Error::invalid_input(format!(
            "{url}: the page is not UTF-8 text"
        )));
    };
    let max_text = setting("max_text", 100_000) as usize;
    let (title, text, links) = if html {
        extract(&body, url)
    } else {
        (String::new(), collapse(&body), Vec::new())
    };
    let text: String = text.chars().take(max_text).collect();
    Ok(json!({
        "url": url.as_str(),
        "fetched_ms": now,
        "status": response.status,
        "title": title,
        "text": text,
        "links": links,
    }))
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The title, the visible text and the absolute links of an HTML page.
fn extract(body: &str, base: &Url) -> (String, String, Vec<String>) {
    // At most MAX_PARSED bytes are parsed (on a character boundary): a page of tiny tags
    // makes a tree many times its size.
    let mut end = body.len().min(MAX_PARSED);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let document = Html::parse_document(&body[..end]);
    let select = |css: &str| Selector::parse(css).ok();
    let title = select("title")
        .and_then(|s| document.select(&s).next())
        .map(|t| collapse(&t.text().collect::<String>()))
        .unwrap_or_default();
    let mut text = String::new();
    if let Some(body) = select("body").and_then(|s| document.select(&s).next()) {
        for node in body.descendants() {
            let Some(piece) = node.value().as_text() else {
                continue;
            };
            let hidden = node.ancestors().any(|a| {
                a.value().as_element().is_some_and(|e| {
                    matches!(e.name(), "script" | "style" | "noscript" | "template")
                })
            });
            if !hidden {
                text.push_str(piece);
                text.push(' ');
            }
        }
    }
    let mut links: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if let Some(anchors) = select("a[href]") {
        for a in document.select(&anchors) {
            let Some(href) = a.value().attr("href") else {
                continue;
            };
            let Ok(mut link) = base.join(href) else {
                continue;
            };
            link.set_fragment(None);
            let link = link.to_string();
            if link.starts_with("http") && seen.insert(link.clone()) {
                links.push(link);
                if links.len() == MAX_LINKS {
                    break;
                }
            }
        }
    }
    (title, collapse(&text), links)
}

impl Agent for WebResearcher {
    fn describe() -> Info {
        Info {
            name: "web-researcher".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Reads web pages for research: allowed origins only, robots.txt obeyed, one request per host per interval".to_string(),
            subscriptions: vec!["research.fetch".to_string()],
        }
    }

    /// An invoke answers the page or the error. A `research.fetch` waits for the host's
    /// turn and is always answered on `research.page`, an error as `{url, error, message}`,
    /// with the request's `task` and `attempt` carried over, so whoever asked hears back and
    /// can retry.
    fn handle(event: Event) -> Result<String, Error> {
        let request: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("request: {e}")))?;
        let now = overseer_guest::now_ms();
        if event.topic != "research.fetch" {
            return read_request(&request, now).map(|page| page.to_string());
        }
        // Asked by another agent: wait for this host's turn (up to `MAX_TURN_WAIT_MS`)
        // rather than answer that it is too soon.
        let wait = match request["url"].as_str().and_then(|u| Url::parse(u).ok()) {
            Some(url) => turn_wait_ms(&url, now)?,
            None => 0,
        };
        if wait > 0 && wait <= MAX_TURN_WAIT_MS {
            std::thread::sleep(std::time::Duration::from_millis(wait));
        }
        let now = overseer_guest::now_ms();
        let mut page = read_request(&request, now).unwrap_or_else(|e| {
            json!({ "url": request["url"], "fetched_ms": now, "error": e.code(), "message": e.message() })
        });
        for carried in ["task", "attempt"] {
            if let Some(value) = request.get(carried) {
                page[carried] = value.clone();
            }
        }
        let text = page.to_string();
        overseer_guest::emit("research.page", &text)?;
        Ok(text)
    }
}

/// The page `request` asks for, and the pages it follows.
fn read_request(request: &Value, now: u64) -> Result<Value, Error> {
    let url = request["url"]
        .as_str()
        .ok_or_else(|| Error::invalid_input("request: no url"))?;
    let url = Url::parse(url).map_err(|e| Error::invalid_input(format!("{url:?}: {e}")))?;
    let mut page = read(&url, now)?;
    let follow = request["follow"].as_u64().unwrap_or(0).min(MAX_FOLLOW) as usize;
    let links: Vec<String> = page["links"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut followed = Vec::new();
    for link in links.iter().take(follow) {
        let entry = Url::parse(link)
            .map_err(|e| Error::invalid_input(format!("{link}: {e}")))
            .and_then(|next| read(&next, now))
            .map(|mut read| {
                if let Some(fields) = read.as_object_mut() {
                    fields.remove("links");
                }
                read
            })
            .unwrap_or_else(|e| json!({ "url": link, "error": e.code(), "message": e.message() }));
        followed.push(entry);
    }
    page["followed"] = json!(followed);
    Ok(page)
}

overseer_guest::export!(WebResearcher);
