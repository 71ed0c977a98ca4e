//! `researcher`: one component, pushed once per research track. Its `[config]` names the
//! track's specialisation; each run studies the symbols as of the market clock and publishes a
//! structured result on `research.result`. A track runs on its wall-clock schedule
//! (`[triggers] every`), when invoked, and on a `market.tick` once `market_every_days` days
//! of market time have passed since its last run there: on the replayed market, whose days
//! pass in seconds, that scales the track's pace with the market clock. Research tasks are
//! the action executor's to answer, not the tracks'.
//!
//! `{track, specialisation, status, symbols, as_of, thesis, evidence: [{metric, symbol, value,
//! source, as_of}], confidence, horizon, suggested_action, analysis?}`
//!
//! Every number in `evidence` is computed here from the daily bars the market serves, over a
//! window of the last `window` closes (default 253, a year of returns) ending at as-of:
//!
//! - `technical_analysis`: the day's return, RSI 14, the MACD histogram (12/26/9), SMA 20 and
//!   50, Bollinger %B (20, 2σ), from the SDK's calculator (the `ta` crate).
//! - `risk_assessment`: annualised volatility `sd(r) · √252` (sample deviation of the daily
//!   returns `r_t = c_t / c_{t−1} − 1`), max drawdown `max(1 − c_t / max(c_0 … c_t))`, one-day
//!   historical VaR and CVaR at 95 % (the returns sorted ascending, `k = ⌊0.05 n⌋`:
//!   `VaR = −r_(k)`, `CVaR = −mean(r_(0) … r_(k))`), and the Pearson correlation of each pair's
//!   returns on their common days.
//! - `market_analysis`: each symbol's regime (close and SMA 50 against SMA 200), breadth (the
//!   share of symbols above their SMA 50) and the mean 20-day return.
//! - `alpha_hunting`: momentum (the return from 126 to 21 bars ago, the last month skipped)
//!   and mean reversion (the close's z-score against its 20-bar mean and deviation); an edge
//!   is a symbol whose momentum ranks first above 5 %, or whose |z| exceeds 2. The first idea
//!   is checked by a walk-forward backtest of the `rules` strategy (`backtest` interface), and
//!   the result carries that backtest's id and out-of-sample figures as `validation`.
//! - `sentiment_analysis`: the provider's news of the last week and its sentiment scores; the
//!   replayed market has none, and the result says so.
//! - `fundamental_research`: from each symbol's two latest annual filings known at as-of
//!   (`fundamentals` interface: Polygon's financials when the host has a key), revenue and
//!   its growth on the year, net margin, return on equity, liabilities over equity and
//!   diluted EPS; without a provider the result is `unavailable` with the host's reason.
//!
//! With an LLM configured, an `analysis` written from the evidence (and nothing else) is added.

use std::collections::BTreeMap;

use overseer_guest::fundamentals::{self, Filing};
use overseer_guest::research::{SPECIALISATIONS, Series, evidence, is_specialisation};
use overseer_guest::{Agent, Error, Event, Health, Info, calculator, kv, market};
use serde_json::{Value, json};

struct Researcher;

/// Whether a `market.tick` is due a run: `market_every_days` days of market time since the
/// last run on a tick (kept in kv; written only when the run succeeds).
fn tick_due(as_of_ms: u64) -> Result<bool, Error> {
    let every: u64 = overseer_guest::config_parsed("market_every_days").unwrap_or(1);
    let last: Option<u64> = kv::get("last_tick_run")?.and_then(|v| v.parse().ok());
    if last.is_some_and(|last| as_of_ms < last.saturating_add(every.saturating_mul(market::DAY_MS)))
    {
        return Ok(false);
    }
    kv::set("last_tick_run", &as_of_ms.to_string())?;
    Ok(true)
}

/// Fewest closes a study needs.
const MIN_CLOSES: usize = 60;

/// What one run found.
struct Finding {
    /// The backtest that checked an alpha idea.
    validation: Option<Value>,
    thesis: String,
    evidence: Vec<Value>,
    confidence: f64,
    horizon: &'static str,
    suggested_action: String,
}

/// Check an alpha idea with the host's backtester (the `validate_with` agent, `rules` by
/// default): the out-of-sample figures are the evidence; an error is reported, never hidden.
fn validate(rule: &str, symbol: &str, as_of: &str) -> Value {
    overseer_guest::research::validate_rule(rule, symbol, as_of).unwrap_or_else(
        |e| json!({ "rule": rule, "symbol": symbol, "error": e.code(), "message": e.message() }),
    )
}

/// The Pearson correlation of the two series' returns on the days both have.
fn correlation(a: &Series, b: &Series) -> Option<f64> {
    let by_day: BTreeMap<&str, f64> = a.bars.iter().map(|x| (x.date.as_str(), x.close)).collect();
    let common: Vec<(f64, f64)> = b
        .bars
        .iter()
        .filter_map(|y| by_day.get(y.date.as_str()).map(|x| (*x, y.close)))
        .collect();
    let xs = calculator::returns(&common.iter().map(|p| p.0).collect::<Vec<_>>());
    let ys = calculator::returns(&common.iter().map(|p| p.1).collect::<Vec<_>>());
    if xs.len() < MIN_CLOSES {
        return None;
    }
    calculator::correlation(&xs, &ys)
}

fn risk(series: &[Series], as_of: &str) -> Finding {
    let mut evidence_out = Vec::new();
    let mut riskiest: Option<(&str, f64)> = None;
    for s in series {
        let closes = s.closes();
        let returns = calculator::returns(&closes);
        let volatility = calculator::std_dev(&returns) * 252f64.sqrt();
        let drawdown = calculator::max_drawdown(&closes);
        let (var, cvar) = calculator::var_cvar(&returns, 0.95).unwrap_or((f64::NAN, f64::NAN));
        let source = s.source();
        for (metric, value) in [
            ("volatility_annualised", volatility),
            ("max_drawdown", drawdown),
            ("var_95_1d", var),
            ("cvar_95_1d", cvar),
        ] {
            evidence_out.push(evidence(metric, &s.symbol, value, &source, as_of));
        }
        if riskiest.is_none_or(|(_, v)| volatility > v) {
            riskiest = Some((&s.symbol, volatility));
        }
    }
    for (i, a) in series.iter().enumerate() {
        for b in &series[i + 1..] {
            if let Some(rho) = correlation(a, b) {
                let pair = format!("{}/{}", a.symbol, b.symbol);
                let source = format!("{} {}", a.source(), b.source());
                evidence_out.push(evidence("correlation", &pair, rho, &source, as_of));
            }
        }
    }
    let (thesis, action) = match riskiest {
        Some((symbol, v)) => (
            format!(
                "{symbol} carries the most risk: {:.1}% annualised volatility",
                v * 100.0
            ),
            format!("size {symbol} positions by its volatility; watch its drawdown"),
        ),
        None => (
            "no symbol has enough history to measure".to_string(),
            "none".to_string(),
        ),
    };
    Finding {
        validation: None,
        thesis,
        evidence: evidence_out,
        confidence: if series.is_empty() { 0.0 } else { 0.8 },
        horizon: "1m",
        suggested_action: action,
    }
}

fn technical(series: &[Series], as_of: &str) -> Finding {
    let mut evidence_out = Vec::new();
    let mut states = Vec::new();
    for s in series {
        let closes = s.closes();
        let source = s.source();
        let close = *closes.last().unwrap_or(&0.0);
        let rsi = calculator::rsi(&closes, 14);
        let macd = calculator::macd(&closes, 12, 26, 9);
        let sma20 = calculator::sma(&closes, 20);
        let sma50 = calculator::sma(&closes, 50);
        let bands = calculator::bollinger(&closes, 20, 2.0);
        let percent_b = bands.map(|b| (close - b.lower) / (b.upper - b.lower));
        let previous = closes.len().checked_sub(2).map(|i| closes[i]);
        for (metric, value) in [
            ("close", Some(close)),
            ("return_1d", previous.map(|p| close / p - 1.0)),
            ("rsi_14", rsi),
            ("macd_histogram", macd.map(|m| m.histogram)),
            ("sma_20", sma20),
            ("sma_50", sma50),
            ("bollinger_percent_b", percent_b),
        ] {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                evidence_out.push(evidence(metric, &s.symbol, value, &source, as_of));
            }
        }
        let state = match rsi {
            Some(r) if r > 70.0 => "overbought",
            Some(r) if r < 30.0 => "oversold",
            _ => match (sma20, sma50) {
                (Some(a), Some(b)) if a > b && close > a => "in an uptrend",
                (Some(a), Some(b)) if a < b && close < a => "in a downtrend",
                _ => "range-bound",
            },
        };
        states.push(format!("{} {state}", s.symbol));
    }
    Finding {
        validation: None,
        thesis: if states.is_empty() {
            "no symbol has enough history to read".to_string()
        } else {
            states.join("; ")
        },
        evidence: evidence_out,
        confidence: if series.is_empty() { 0.0 } else { 0.6 },
        horizon: "1w",
        suggested_action: "compare with the strategy's signals".to_string(),
    }
}

fn market_regime(series: &[Series], as_of: &str) -> Finding {
    let mut evidence_out = Vec::new();
    let (mut above, mut counted, mut moves) = (0usize, 0usize, Vec::new());
    for s in series {
        let closes = s.closes();
        let source = s.source();
        let close = *closes.last().unwrap_or(&0.0);
        let sma50 = calculator::sma(&closes, 50);
        let sma200 = calculator::sma(&closes, 200);
        if let Some(sma50) = sma50 {
            counted += 1;
            if close > sma50 {
                above += 1;
            }
        }
        let regime = match (sma50, sma200) {
            (Some(a), Some(b)) if close > b && a > b => 1.0,
            (Some(a), Some(b)) if close < b && a < b => -1.0,
            _ => 0.0,
        };
        evidence_out.push(evidence("regime", &s.symbol, regime, &source, as_of));
        if closes.len() > 20 {
            let change = close / closes[closes.len() - 21] - 1.0;
            moves.push(change);
            evidence_out.push(evidence("return_20d", &s.symbol, change, &source, as_of));
        }
    }
    let breadth = if counted == 0 {
        0.0
    } else {
        above as f64 / counted as f64
    };
    evidence_out.push(evidence(
        "breadth_above_sma_50",
        "*",
        breadth,
        "bars",
        as_of,
    ));
    let mean_move = if moves.is_empty() {
        0.0
    } else {
        calculator::mean(&moves)
    };
    evidence_out.push(evidence("mean_return_20d", "*", mean_move, "bars", as_of));
    let mood = if counted == 0 {
        "no data"
    } else if breadth > 0.6 {
        "risk-on"
    } else if breadth < 0.4 {
        "risk-off"
    } else {
        "mixed"
    };
    Finding {
        validation: None,
        thesis: format!(
            "{mood}: {above} of {counted} symbols above their 50-day average, {:+.1}% over 20 days on average",
            mean_move * 100.0
        ),
        evidence: evidence_out,
        confidence: if counted == 0 {
            0.0
        } else {
            0.5 + (breadth - 0.5).abs()
        },
        horizon: "1m",
        suggested_action: match mood {
            "risk-on" => "favour the strategy's buys".to_string(),
            "risk-off" => "tighten the risk budget".to_string(),
            _ => "no change".to_string(),
        },
    }
}

fn alpha(series: &[Series], as_of: &str) -> Finding {
    let mut evidence_out = Vec::new();
    let mut momentum: Vec<(String, f64)> = Vec::new();
    let mut stretched: Vec<(String, f64)> = Vec::new();
    for s in series {
        let closes = s.closes();
        let source = s.source();
        let n = closes.len();
        if n > 126 {
            let m = closes[n - 22] / closes[n - 127] - 1.0;
            evidence_out.push(evidence("momentum_126_21", &s.symbol, m, &source, as_of));
            momentum.push((s.symbol.clone(), m));
        }
        let last = &closes[n.saturating_sub(20)..];
        let (mean, sd) = (calculator::mean(last), calculator::std_dev(last));
        if sd > 0.0 {
            let z = (closes[n - 1] - mean) / sd;
            evidence_out.push(evidence("zscore_20", &s.symbol, z, &source, as_of));
            if z.abs() > 2.0 {
                stretched.push((s.symbol.clone(), z));
            }
        }
    }
    momentum.retain(|(_, m)| m.is_finite());
    momentum.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut ideas = Vec::new();
    let mut idea: Option<(&'static str, String)> = None;
    if let Some((symbol, m)) = momentum.first().filter(|(_, m)| *m > 0.05) {
        ideas.push(format!(
            "momentum: long {symbol} ({:+.1}% over 126 days to a month ago)",
            m * 100.0
        ));
        idea = Some(("momentum", symbol.clone()));
    }
    for (symbol, z) in &stretched {
        let side = if *z > 0.0 {
            "short-term fade"
        } else {
            "rebound"
        };
        ideas.push(format!("mean reversion: {symbol} {side} (z {z:+.2})"));
        if idea.is_none() && *z < 0.0 {
            idea = Some(("mean_reversion", symbol.clone()));
        }
    }
    let found = !ideas.is_empty();
    let validation = idea.map(|(rule, symbol)| validate(rule, &symbol, as_of));
    Finding {
        validation,
        thesis: if found {
            ideas.join("; ")
        } else {
            "no momentum or mean-reversion edge stands out".to_string()
        },
        evidence: evidence_out,
        confidence: if found { 0.4 } else { 0.1 },
        horizon: "3m",
        suggested_action: if found {
            "backtest the idea before trading it".to_string()
        } else {
            "none".to_string()
        },
    }
}

fn sentiment(symbols: &[String], as_of: &market::AsOfTime) -> Result<Finding, Error> {
    let since = as_of.at_ms.saturating_sub(7 * 24 * 3_600_000);
    let mut evidence_out = Vec::new();
    let mut scored = Vec::new();
    let mut articles = 0usize;
    for symbol in symbols {
        let news = market::news(symbol, since, 50)?;
        articles += news.len();
        let scores: Vec<f64> = news.iter().filter_map(|n| n.sentiment).collect();
        evidence_out.push(evidence(
            "articles_7d",
            symbol,
            news.len() as f64,
            "news",
            &as_of.date,
        ));
        if !scores.is_empty() {
            let mean = calculator::mean(&scores);
            evidence_out.push(evidence(
                "sentiment_mean_7d",
                symbol,
                mean,
                "news",
                &as_of.date,
            ));
            scored.push((symbol.clone(), mean));
        }
    }
    let thesis = if articles == 0 {
        "no news from the market provider this week: nothing to read sentiment from".to_string()
    } else if scored.is_empty() {
        format!("{articles} articles, none scored by the provider")
    } else {
        scored
            .iter()
            .map(|(s, m)| format!("{s} sentiment {m:+.2}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Ok(Finding {
        validation: None,
        thesis,
        evidence: evidence_out,
        confidence: if scored.is_empty() { 0.0 } else { 0.5 },
        horizon: "1w",
        suggested_action: "none".to_string(),
    })
}

/// A figure of a filing by the provider's name for it.
fn item(filing: &Filing, name: &str) -> Option<f64> {
    filing
        .items
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.value)
}

/// Fundamentals from each symbol's two latest annual filings known at as-of: revenue, its
/// growth on the year before, net margin (net income / revenue), return on equity (net
/// income / equity), liabilities over equity and diluted EPS, each sourced to its filing
/// (`filing:AAPL:FY2011:2011-10-26`) and dated by the day it was filed. Without a provider
/// of filings the result is `unavailable`, saying why.
fn fundamental(symbols: &[String]) -> Result<(&'static str, Finding), Error> {
    let mut evidence_out = Vec::new();
    let mut lines = Vec::new();
    for symbol in symbols {
        let filings = match fundamentals::filings(symbol, "annual", 2) {
            Ok(filings) => filings,
            Err(Error::Unavailable(reason) | Error::Denied(reason)) => {
                let finding = Finding {
                    validation: None,
                    thesis: format!("fundamental research is unavailable: {reason}"),
                    evidence: Vec::new(),
                    confidence: 0.0,
                    horizon: "1y",
                    suggested_action: "none".to_string(),
                };
                return Ok(("unavailable", finding));
            }
            Err(e) => return Err(e),
        };
        let Some(latest) = filings.first() else {
            lines.push(format!("{symbol}: no annual filing yet"));
            continue;
        };
        let source = format!(
            "filing:{symbol}:{}{}:{}",
            latest.fiscal_period, latest.fiscal_year, latest.filing_date
        );
        let revenue = item(latest, "revenues");
        let income = item(latest, "net_income_loss");
        let equity = item(latest, "equity");
        let growth = filings
            .get(1)
            .and_then(|prior| item(prior, "revenues"))
            .zip(revenue)
            .map(|(before, now)| now / before - 1.0);
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        for (metric, value) in [
            ("revenue", revenue),
            ("revenue_growth_1y", growth),
            ("net_margin", ratio(income, revenue)),
            ("return_on_equity", ratio(income, equity)),
            (
                "liabilities_to_equity",
                ratio(item(latest, "liabilities"), equity),
            ),
            ("eps_diluted", item(latest, "diluted_earnings_per_share")),
        ] {
            if let Some(value) = value {
                evidence_out.push(evidence(
                    metric,
                    symbol,
                    value,
                    &source,
                    &latest.filing_date,
                ));
            }
        }
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:+.1}%", v * 100.0));
        lines.push(format!(
            "{symbol} {}{}: revenue {} on the year, net margin {}, return on equity {}",
            latest.fiscal_period,
            latest.fiscal_year,
            pct(growth),
            pct(ratio(income, revenue)),
            pct(ratio(income, equity)),
        ));
    }
    let finding = Finding {
        validation: None,
        thesis: lines.join("; "),
        confidence: if evidence_out.is_empty() { 0.0 } else { 0.6 },
        evidence: evidence_out,
        horizon: "1y",
        suggested_action: "weigh growth and margins against the price's trend".to_string(),
    };
    Ok(("ok", finding))
}

fn symbols(requested: Option<&Value>) -> Vec<String> {
    let listed: Vec<String> = match requested.and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => overseer_guest::config("symbols")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if listed.is_empty() {
        market::symbols()
    } else {
        listed
    }
}

impl Agent for Researcher {
    fn describe() -> Info {
        Info {
            name: "researcher".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A research track: studies the market in its specialisation and publishes results with their evidence".to_string(),
            subscriptions: vec!["market.tick".to_string()],
        }
    }

    /// Unhealthy when its configuration names no specialisation it knows: such a track is
    /// refused at push instead of failing every run.
    fn health() -> Health {
        let specialisation = overseer_guest::config("specialisation").unwrap_or_default();
        if is_specialisation(&specialisation) {
            Health {
                ok: true,
                detail: format!("studies {specialisation}"),
            }
        } else {
            Health {
                ok: false,
                detail: format!(
                    "config specialisation {specialisation:?} is not one of {}",
                    SPECIALISATIONS.join(", ")
                ),
            }
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let specialisation = overseer_guest::config("specialisation").unwrap_or_default();
        if !is_specialisation(&specialisation) {
            return Err(Error::invalid_input(format!(
                "config specialisation {specialisation:?} is not one of {}",
                SPECIALISATIONS.join(", ")
            )));
        }
        let request: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
        if event.topic == "market.tick" && !tick_due(market::as_of().at_ms)? {
            return Ok(json!({ "skipped": "not due on this tick" }).to_string());
        }
        let track = overseer_guest::config("track").unwrap_or_else(|| specialisation.clone());
        let window: usize = overseer_guest::config_parsed("window")
            .unwrap_or(253)
            .clamp(MIN_CLOSES, 2000);
        let asked = (event.topic != "market.tick")
            .then(|| request.get("symbols"))
            .flatten();
        let symbols = symbols(asked);
        let known = market::symbols();
        if let Some(unknown) = symbols.iter().find(|s| !known.contains(s)) {
            return Err(Error::invalid_input(format!("unknown symbol {unknown:?}")));
        }
        let as_of = market::as_of();
        let (status, finding) = match specialisation.as_str() {
            "sentiment_analysis" => ("ok", sentiment(&symbols, &as_of)?),
            "fundamental_research" => fundamental(&symbols)?,
            other => {
                let series =
                    overseer_guest::research::load(&symbols, &as_of.date, window, MIN_CLOSES)?;
                let finding = match other {
                    "risk_assessment" => risk(&series, &as_of.date),
                    "technical_analysis" => technical(&series, &as_of.date),
                    "market_analysis" => market_regime(&series, &as_of.date),
                    _ => alpha(&series, &as_of.date),
                };
                ("ok", finding)
            }
        };
        let mut result = json!({
            "track": track,
            "specialisation": specialisation,
            "status": status,
            "symbols": symbols,
            "as_of": as_of.date,
            "thesis": finding.thesis,
            "evidence": finding.evidence,
            "confidence": finding.confidence,
            "horizon": finding.horizon,
            "suggested_action": finding.suggested_action,
        });
        if let Some(validation) = &finding.validation {
            result["validation"] = validation.clone();
        }
        if status == "ok" {
            let subject = format!(
                "Specialisation: {specialisation}. Thesis: {}",
                finding.thesis
            );
            // The result stands without a written analysis: a model that fails is logged.
            match overseer_guest::research::analysis(
                &subject,
                &json!(finding.evidence),
                as_of.at_ms,
            ) {
                Ok(Some(written)) => {
                    if let Some(fields) = result.as_object_mut() {
                        fields.extend(written);
                    }
                }
                Ok(None) => {}
                Err(e) => overseer_guest::log::warn(&format!("no analysis: {}", e.message())),
            }
        }
        let text = result.to_string();
        overseer_guest::emit("research.result", &text)?;
        overseer_guest::metric("evidence", finding.evidence.len() as f64);
        Ok(text)
    }
}

overseer_guest::export!(Researcher);
