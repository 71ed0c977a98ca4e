//! The Polygon and Alpaca clients against loopback fakes that answer with the services'
//! documented JSON, errors included: 401, 403, 422, 429 with `Retry-After`, and bodies that
//! are not the documented shape.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use crate::Secret;
use crate::alpaca::{Alpaca, NewOrder};
use crate::polygon::Polygon;
use crate::rest::RestError;

/// A request's query pairs.
type QueryPairs = Vec<(String, String)>;

#[derive(Clone, Default)]
struct Fake {
    limited: Arc<AtomicU32>,
    orders: Arc<std::sync::Mutex<Vec<Value>>>,
    /// The query of every financials request.
    financials: Arc<std::sync::Mutex<Vec<QueryPairs>>>,
}

/// Polygon's financials of AAPL, FY2009 to FY2012, as the service answers them (one without
/// a filing date); shared with the daemon's tests.
const FINANCIALS: &str = include_str!("../tests/fixtures/polygon-financials.json");

/// Every filing of the fixture, whatever the filters: the client must keep to its as-of.
async fn polygon_financials(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(query): Query<QueryPairs>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer pk") {
        return polygon_error(StatusCode::UNAUTHORIZED, "error", "Unknown API Key");
    }
    let ticker = query
        .iter()
        .find(|(k, _)| k == "ticker")
        .map(|(_, v)| v.clone());
    fake.financials.lock().unwrap().push(query);
    match ticker.as_deref() {
        Some("AAPL") => (
            StatusCode::OK,
            [("content-type", "application/json")],
            FINANCIALS,
        )
            .into_response(),
        Some(_) => Json(json!({ "results": [], "status": "OK", "request_id": "e", "count": 0 }))
            .into_response(),
        None => polygon_error(StatusCode::BAD_REQUEST, "error", "ticker is required"),
    }
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn polygon_error(status: StatusCode, field: &str, message: &str) -> Response {
    let body = json!({ "status": "ERROR", "request_id": "a1b2c3", field: message });
    (status, Json(body)).into_response()
}

async fn aggregates(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Path((ticker, from, to)): Path<(String, String, String)>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer pk") {
        return polygon_error(StatusCode::UNAUTHORIZED, "error", "Unknown API Key");
    }
    match ticker.as_str() {
        "FORBID" => polygon_error(
            StatusCode::FORBIDDEN,
            "message",
            "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing",
        ),
        "LIMIT" if fake.limited.fetch_add(1, Ordering::SeqCst) < 2 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            Json(json!({ "status": "ERROR", "request_id": "r", "error": "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue." })),
        )
            .into_response(),
        "ALWAYS" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            Json(json!({ "status": "ERROR", "error": "You've exceeded the maximum requests per minute" })),
        )
            .into_response(),
        "LONGWAIT" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3600")], "slow down").into_response(),
        "BAD" => (StatusCode::OK, "{\"results\": [{\"t\": \"noon\", \"o\": 1}]}").into_response(),
        "HTML" => (StatusCode::OK, "<html>maintenance</html>").into_response(),
        _ => Json(json!({
            "ticker": ticker,
            "queryCount": 2,
            "resultsCount": 2,
            "adjusted": true,
            "results": [
                // 2024-01-02 and 2024-01-03, midnight in New York (05:00 UTC).
                { "v": 82488674.0, "vw": 185.9465, "o": 187.15, "c": 185.64, "h": 188.44, "l": 183.885, "t": 1704171600000i64, "n": 1008871 },
                { "v": 58414460.0, "vw": 184.3226, "o": 184.22, "c": 184.25, "h": 185.88, "l": 183.43, "t": 1704258000000i64, "n": 656853 }
            ],
            "status": "OK",
            "request_id": format!("{from}..{to}"),
            "count": 2
        }))
        .into_response(),
    }
}

async fn polygon_news(Query(query): Query<Vec<(String, String)>>) -> Response {
    if !query.iter().any(|(k, v)| k == "ticker" && !v.is_empty()) {
        return polygon_error(StatusCode::BAD_REQUEST, "error", "ticker is required");
    }
    Json(json!({
        "results": [{
            "id": "8ec638777ca03b553ae516761c2a22ba2fdd2f37befae3ab6fdab74e9e5193eb",
            "publisher": { "name": "Benzinga", "homepage_url": "https://www.benzinga.com/" },
            "title": "Apple beats on services revenue",
            "author": "Reporter",
            "published_utc": "2024-06-24T18:33:53Z",
            "article_url": "https://www.benzinga.com/news/1",
            "tickers": ["AAPL", "MSFT"],
            "description": "Services revenue rose.",
            "keywords": ["earnings"],
            "insights": [
                { "ticker": "AAPL", "sentiment": "positive", "sentiment_reasoning": "Strong services." },
                { "ticker": "MSFT", "sentiment": "negative", "sentiment_reasoning": "Competition." }
            ]
        }],
        "status": "OK",
        "request_id": "831afdb0b8078549fed053476984947a",
        "count": 1
    }))
    .into_response()
}

fn alpaca_error(status: StatusCode, code: u64, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn alpaca_auth(headers: &HeaderMap) -> Option<Response> {
    let key = headers.get("apca-api-key-id").and_then(|v| v.to_str().ok());
    let secret = headers
        .get("apca-api-secret-key")
        .and_then(|v| v.to_str().ok());
    match (key, secret) {
        (Some("kid"), Some("sec")) | (Some("readonly"), Some("sec")) => None,
        _ => Some(alpaca_error(
            StatusCode::UNAUTHORIZED,
            40110000,
            "request is not authorized",
        )),
    }
}

async fn alpaca_bars(
    headers: HeaderMap,
    Path(symbol): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(denied) = alpaca_auth(&headers) {
        return denied;
    }
    let page = query
        .iter()
        .find(|(k, _)| k == "page_token")
        .map(|(_, v)| v.as_str());
    let (bars, next) = match page {
        None => (
            json!([{ "t": "2024-01-02T05:00:00Z", "o": 187.15, "h": 188.44, "l": 183.885, "c": 185.64, "v": 82488674, "n": 1008871, "vw": 185.9465 }]),
            json!("cDI="),
        ),
        Some(_) => (
            json!([{ "t": "2024-01-03T05:00:00Z", "o": 184.22, "h": 185.88, "l": 183.43, "c": 184.25, "v": 58414460, "n": 656853, "vw": 184.3226 }]),
            Value::Null,
        ),
    };
    Json(json!({ "bars": bars, "symbol": symbol, "next_page_token": next })).into_response()
}

async fn alpaca_news(headers: HeaderMap) -> Response {
    if let Some(denied) = alpaca_auth(&headers) {
        return denied;
    }
    Json(json!({
        "news": [{
            "id": 24803233,
            "headline": "Apple shares rise",
            "author": "Benzinga Newsdesk",
            "created_at": "2021-12-31T11:08:42Z",
            "updated_at": "2021-12-31T11:08:43Z",
            "summary": "Shares rose.",
            "content": "",
            "url": "https://www.benzinga.com/news/2",
            "images": [],
            "symbols": ["AAPL"],
            "source": "benzinga"
        }],
        "next_page_token": "MTY0MDk0ODkyMjAwMDAwMDAwMHwyNDgwMzIzMw=="
    }))
    .into_response()
}

async fn alpaca_account(headers: HeaderMap) -> Response {
    if let Some(denied) = alpaca_auth(&headers) {
        return denied;
    }
    Json(json!({
        "id": "904837e3-3b76-47ec-b432-046db621571b",
        "account_number": "PA3717PJAYWN",
        "status": "ACTIVE",
        "currency": "USD",
        "cash": "98031.51",
        "portfolio_value": "100012.3",
        "equity": "100012.3",
        "buying_power": "196043.02",
        "long_market_value": "1980.79",
        "short_market_value": "0",
        "pattern_day_trader": false
    }))
    .into_response()
}

async fn alpaca_positions(headers: HeaderMap) -> Response {
    if let Some(denied) = alpaca_auth(&headers) {
        return denied;
    }
    Json(json!([{
        "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
        "symbol": "AAPL",
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "qty": "10",
        "avg_entry_price": "185.50",
        "side": "long",
        "market_value": "1980.79",
        "cost_basis": "1855.0",
        "unrealized_pl": "125.79",
        "unrealized_plpc": "0.0678",
        "current_price": "198.079",
        "lastday_price": "197.0",
        "change_today": "0.0055"
    }]))
    .into_response()
}

fn order_json(body: &Value, id: &str) -> Value {
    json!({
        "id": id,
        "client_order_id": body["client_order_id"],
        "created_at": "2024-01-03T15:00:00.123456Z",
        "updated_at": "2024-01-03T15:00:00.123456Z",
        "submitted_at": "2024-01-03T15:00:00.123456Z",
        "filled_at": null,
        "asset_class": "us_equity",
        "symbol": body["symbol"],
        "qty": body.get("qty").cloned().unwrap_or(Value::Null),
        "notional": body.get("notional").cloned().unwrap_or(Value::Null),
        "filled_qty": "0",
        "filled_avg_price": null,
        "order_class": "",
        "order_type": body["type"],
        "type": body["type"],
        "side": body["side"],
        "time_in_force": body["time_in_force"],
        "limit_price": body.get("limit_price").cloned().unwrap_or(Value::Null),
        "status": "accepted",
        "extended_hours": false
    })
}

async fn alpaca_submit(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(denied) = alpaca_auth(&headers) {
        return denied;
    }
    if headers.get("apca-api-key-id").and_then(|v| v.to_str().ok()) == Some("readonly") {
        return alpaca_error(StatusCode::FORBIDDEN, 40310000, "insufficient buying power");
    }
    if body["qty"]
        .as_str()
        .is_some_and(|q| q.parse::<f64>().map_or(true, |q| q <= 0.0))
    {
        return alpaca_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            40010001,
            "qty must be > 0",
        );
    }
    let mut orders = fake.orders.lock().unwrap();
    if orders
        .iter()
        .any(|o| o["client_order_id"] == body["client_order_id"])
    {
        return alpaca_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            40010001,
            "client_order_id must be unique",
        );
    }
    let order = order_json(
        &body,
        &format!("61e69015-8549-4bfd-b9c3-01e75843f47{}", orders.len()),
    );
    orders.push(order.clone());
    Json(order).into_response()
}

async fn alpaca_orders(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    if let Some(denied) = alpaca_auth(&headers) {
        return denied;
    }
    Json(json!(fake.orders.lock().unwrap().clone())).into_response()
}

async fn fake() -> (String, Fake) {
    let state = Fake::default();
    let app = axum::Router::new()
        .route(
            "/v2/aggs/ticker/{ticker}/range/1/day/{from}/{to}",
            get(aggregates),
        )
        .route("/v2/reference/news", get(polygon_news))
        .route("/vX/reference/financials", get(polygon_financials))
        .route("/v2/stocks/{symbol}/bars", get(alpaca_bars))
        .route("/v1beta1/news", get(alpaca_news))
        .route("/v2/account", get(alpaca_account))
        .route("/v2/positions", get(alpaca_positions))
        .route("/v2/orders", post(alpaca_submit).get(alpaca_orders))
        .with_state(state.clone());
    (serve(app).await, state)
}

fn polygon(url: &str, key: &str) -> Polygon {
    Polygon::new(url, &Secret::new(key))
        .unwrap()
        .with_backoff(Duration::from_millis(1))
}

fn alpaca(url: &str, key: &str) -> Alpaca {
    Alpaca::new(url, url, &Secret::new(key), &Secret::new("sec"))
        .unwrap()
        .with_backoff(Duration::from_millis(1))
}

#[tokio::test]
async fn polygon_bars_and_news_read_the_documented_shapes() {
    let (url, _) = fake().await;
    let client = polygon(&url, "pk");
    let bars = client
        .daily_bars("AAPL", date("2024-01-02"), date("2024-01-03"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0].date, date("2024-01-02"));
    assert_eq!((bars[0].open, bars[0].close), (187.15, 185.64));
    assert_eq!(bars[1].date, date("2024-01-03"));
    let since = Utc.with_ymd_and_hms(2024, 6, 20, 0, 0, 0).unwrap();
    let until = Utc.with_ymd_and_hms(2024, 6, 25, 0, 0, 0).unwrap();
    let news = client.news("AAPL", since, until, 10).await.unwrap();
    assert_eq!(news[0].headline, "Apple beats on services revenue");
    assert_eq!(news[0].publisher, "Benzinga");
    assert_eq!(
        news[0].sentiment,
        Some(1.0),
        "the insight of the ticker asked about"
    );
    assert_eq!(news[0].published_ms, 1_719_254_033_000);
    let msft = client.news("MSFT", since, until, 10).await.unwrap();
    assert_eq!(msft[0].sentiment, Some(-1.0));
}

#[tokio::test]
async fn polygon_financials_keep_to_what_was_filed_by_the_day() {
    let (url, fake) = fake().await;
    let client = polygon(&url, "pk");
    let filings = client
        .financials("AAPL", "annual", date("2012-01-03"), 4)
        .await
        .unwrap();
    // FY2012 was filed after the day, FY2009 has no filing date: neither is known.
    let years: Vec<&str> = filings.iter().map(|f| f.fiscal_year.as_str()).collect();
    assert_eq!(years, ["2011", "2010"]);
    let fy2011 = &filings[0];
    assert_eq!(fy2011.filing_date, date("2011-10-26"));
    assert_eq!(fy2011.end_date, Some(date("2011-09-24")));
    assert_eq!(
        (fy2011.timeframe.as_str(), fy2011.fiscal_period.as_str()),
        ("annual", "FY")
    );
    let revenues = fy2011.items.iter().find(|i| i.name == "revenues").unwrap();
    assert_eq!(
        (
            revenues.statement.as_str(),
            revenues.value,
            revenues.unit.as_str()
        ),
        ("income_statement", 108_249_000_000.0, "USD")
    );
    let eps = fy2011
        .items
        .iter()
        .find(|i| i.name == "diluted_earnings_per_share")
        .unwrap();
    assert_eq!((eps.value, eps.unit.as_str()), (27.68, "USD / shares"));
    assert_eq!(fy2011.items.len(), 10);
    let query = fake.financials.lock().unwrap()[0].clone();
    for (key, value) in [
        ("ticker", "AAPL"),
        ("timeframe", "annual"),
        ("filing_date.lte", "2012-01-03"),
        ("order", "desc"),
        ("sort", "filing_date"),
        ("limit", "4"),
    ] {
        assert!(
            query.contains(&(key.to_string(), value.to_string())),
            "{key}: {query:?}"
        );
    }
    assert!(
        client
            .financials("MSFT", "annual", date("2012-01-03"), 4)
            .await
            .unwrap()
            .is_empty()
    );
    let error = polygon(&url, "wrong")
        .financials("AAPL", "annual", date("2012-01-03"), 4)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "provider_unauthorized");
}

#[tokio::test]
async fn polygon_errors_keep_their_code_and_the_services_message() {
    let (url, fake) = fake().await;
    let (from, to) = (date("2024-01-02"), date("2024-01-03"));
    let error = polygon(&url, "wrong")
        .daily_bars("AAPL", from, to)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "provider_unauthorized");
    assert!(error.to_string().contains("Unknown API Key"), "{error}");
    let client = polygon(&url, "pk");
    let error = client.daily_bars("FORBID", from, to).await.unwrap_err();
    assert_eq!(error.code(), "provider_forbidden");
    assert!(error.to_string().contains("not entitled"), "{error}");
    // Two 429s with Retry-After: 0, then the answer.
    let bars = client.daily_bars("LIMIT", from, to).await.unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!(fake.limited.load(Ordering::SeqCst), 3);
    let error = client.daily_bars("ALWAYS", from, to).await.unwrap_err();
    assert!(
        matches!(error, RestError::RateLimited { retry_after: Some(d), .. } if d.is_zero()),
        "{error:?}"
    );
    // A Retry-After past the longest wait is not waited for.
    let started = std::time::Instant::now();
    let error = client.daily_bars("LONGWAIT", from, to).await.unwrap_err();
    assert_eq!(error.code(), "provider_rate_limited");
    assert!(started.elapsed() < Duration::from_secs(5));
    for ticker in ["BAD", "HTML"] {
        let error = client.daily_bars(ticker, from, to).await.unwrap_err();
        assert_eq!(error.code(), "provider_malformed", "{ticker}: {error}");
    }
    // Nobody listening.
    let error = polygon("http://127.0.0.1:9", "pk")
        .daily_bars("AAPL", from, to)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "provider_unavailable");
}

#[tokio::test]
async fn alpaca_data_pages_and_news() {
    let (url, _) = fake().await;
    let client = alpaca(&url, "kid");
    let bars = client
        .daily_bars("AAPL", date("2024-01-02"), date("2024-01-03"))
        .await
        .unwrap();
    assert_eq!(
        bars.iter().map(|b| b.date).collect::<Vec<_>>(),
        [date("2024-01-02"), date("2024-01-03")]
    );
    let since = Utc.with_ymd_and_hms(2021, 12, 30, 0, 0, 0).unwrap();
    let until = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
    let news = client.news("AAPL", since, until, 10).await.unwrap();
    assert_eq!(news[0].id, "24803233");
    assert_eq!(news[0].sentiment, None);
    let error = alpaca(&url, "nobody")
        .daily_bars("AAPL", date("2024-01-02"), date("2024-01-03"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "provider_unauthorized");
    assert!(error.to_string().contains("request is not authorized"));
}

#[tokio::test]
async fn alpaca_trading_reads_decimal_strings_and_refuses_a_repeated_client_order_id() {
    let (url, fake) = fake().await;
    let client = alpaca(&url, "kid");
    let account = client.account().await.unwrap();
    assert_eq!((account.cash, account.equity), (98031.51, 100012.3));
    let positions = client.positions().await.unwrap();
    assert_eq!(
        (positions[0].qty, positions[0].avg_entry_price),
        (10.0, 185.5)
    );
    let order = NewOrder {
        symbol: "AAPL",
        side: "buy",
        amount: 5.0,
        notional: false,
        order_type: "limit",
        limit_price: Some(180.5),
        time_in_force: "day",
        client_order_id: "2024-01-03-AAPL-buy",
    };
    let placed = client.submit(&order).await.unwrap();
    assert_eq!(
        (placed.qty, placed.limit_price, placed.status.as_str()),
        (Some(5.0), Some(180.5), "accepted")
    );
    assert_eq!(
        fake.orders.lock().unwrap()[0]["qty"],
        "5",
        "money and quantities go as decimal strings"
    );
    let error = client.submit(&order).await.unwrap_err();
    assert!(
        matches!(&error, RestError::Invalid { status: 422, message, .. } if message.contains("must be unique")),
        "{error:?}"
    );
    let zero = NewOrder {
        amount: 0.0,
        client_order_id: "z",
        ..order.clone()
    };
    assert_eq!(
        client.submit(&zero).await.unwrap_err().code(),
        "provider_invalid"
    );
    let error = alpaca(&url, "readonly")
        .submit(&NewOrder {
            client_order_id: "r",
            ..order
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "provider_forbidden");
    assert_eq!(client.orders(true, 10).await.unwrap().len(), 1);
}
