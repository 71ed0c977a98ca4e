//! The trading pipeline on the replayed market: ticks, snapshots, signals, orders, fills and
//! memories with no keys and no network; paper fills and costs by hand; the risk gate, the
//! kill switch, look-ahead, and bad input that changes nothing.

use std::time::Duration;

use overseer_tests::{Daemon, eventually, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A daemon whose market clock is stepped by hand (it never starts on its own in tests).
async fn trading_daemon(speed_ms: u64) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market_speed_ms = speed_ms;
    (Daemon::start_with(config).await, dir)
}

fn trading(daemon: &Daemon) -> &overseer_trading::Trading {
    daemon.daemon.state.trading.as_ref().expect("trading is on")
}

async fn count(daemon: &Daemon, path: &str, key: &str) -> usize {
    let (status, body) = daemon.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body[key].as_array().map_or(0, Vec::len)
}

/// Ask the trader fixture to make one call; its answer (`{"ok": …}` or `{"error": …}`).
async fn call(daemon: &Daemon, probe: Value) -> Value {
    let (status, body) = daemon.invoke("trader", probe).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["output"].clone()
}

async fn events(daemon: &Daemon, topic: &str) -> Vec<Value> {
    let (_, body) = daemon
        .get(&format!("/v1/events?topic={topic}&limit=1000"))
        .await;
    body["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_trades_on_the_replayed_market_with_no_keys() {
    let (daemon, _dir) = trading_daemon(150).await;
    for agent in [
        "world-monitor",
        "strategy",
        "trade-executor",
        "rag-playbook",
    ] {
        daemon.push_agent(agent, agent).await;
    }
    trading(&daemon).spawn_clock();
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(60),
        "ticks, snapshots, signals, orders, fills and memories",
        || async {
            let ticks = events(&daemon, "market.tick").await.len();
            let snapshots = events(&daemon, "market.snapshot").await.len();
            let signals = events(&daemon, "trade.signal").await.len();
            let orders = count(&daemon, "/v1/orders", "orders").await;
            let fills = count(&daemon, "/v1/trades", "trades").await;
            let memories = count(&daemon, "/v1/memory?collection=shared/trades", "memories").await;
            (ticks > 0 && snapshots > 0 && signals > 0 && orders > 0 && fills > 0 && memories > 0)
                .then_some(())
        },
    )
    .await;
    println!(
        "pipeline: first fill remembered after {:?}",
        started.elapsed()
    );

    // Every snapshot carries the as-of of the tick it answers, and nothing later.
    let ticks = events(&daemon, "market.tick").await;
    let snapshot = &events(&daemon, "market.snapshot").await[0];
    let as_of = snapshot["as_of_ms"]
        .as_u64()
        .expect("a snapshot has an as-of");
    assert!(ticks.iter().any(|t| t["as_of_ms"].as_u64() == Some(as_of)));
    let payload: Value = serde_json::from_str(snapshot["payload"].as_str().unwrap()).unwrap();
    let day = payload["as_of"].as_str().unwrap();
    for (symbol, s) in payload["symbols"].as_object().unwrap() {
        assert!(s["date"].as_str().unwrap() <= day, "{symbol}: {s}");
        let rsi = s["rsi_14"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&rsi), "{symbol}: {s}");
        assert!(["up", "down", "flat"].contains(&s["trend"].as_str().unwrap()));
        // The snapshot's close is the bar the API serves for that day.
        let (_, bars) = daemon
            .get(&format!(
                "/v1/market/{symbol}/bars?from={day}&to={day}&as_of={day}"
            ))
            .await;
        if let Some(bar) = bars["bars"].as_array().and_then(|b| b.first()) {
            assert_eq!(bar["close"], s["close"], "{symbol}");
        }
    }
    // A fill is remembered with the signal behind it; the portfolio holds what was bought.
    let (_, memories) = daemon.get("/v1/memory?collection=shared/trades").await;
    let memory = &memories["memories"][0];
    assert!(
        memory["text"]
            .as_str()
            .unwrap()
            .contains("Reasoning: score"),
        "{memory}"
    );
    let (_, portfolio) = daemon.get("/v1/portfolio").await;
    assert!(
        portfolio["commissions"].as_f64().unwrap() > 0.0,
        "{portfolio}"
    );
    assert!(portfolio["equity"].as_f64().unwrap() > 0.0);
    // Each order names the executor's version and the signal it answered, down to the
    // strategy version that published it.
    let (_, orders) = daemon.get("/v1/orders").await;
    let signals = events(&daemon, "trade.signal").await;
    let order = &orders["orders"][0];
    assert_eq!(order["agent"], "trade-executor");
    assert_eq!(order["agent_version"], 1);
    let trigger: Value = serde_json::from_str(order["trigger"].as_str().unwrap()).unwrap();
    assert_eq!(trigger["topic"], "trade.signal");
    assert_eq!(trigger["source"], "strategy");
    assert_eq!(trigger["source_version"], 1);
    assert!(
        signals.iter().any(|s| s["id"] == trigger["event"]),
        "the signal is in the event log: {trigger}"
    );
    let (_, performance) = daemon.get("/v1/performance").await;
    let unrealized = &performance["unrealized_by_agent"];
    assert!(
        unrealized["trade-executor"].as_f64().is_some(),
        "open positions are credited to the executor: {performance}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_fill_at_the_next_open_with_costs_and_once_per_client_id() {
    let (daemon, _dir) = trading_daemon(60_000).await;
    let order =
        json!({ "symbol": "AAPL", "side": "buy", "quantity": 10, "client_order_id": "hand-1" });
    let (status, first) = daemon.post("/v1/orders", order.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = daemon.post("/v1/orders", order.to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        first["id"], again["id"],
        "a repeated client order id is the same order"
    );
    assert_eq!(count(&daemon, "/v1/orders", "orders").await, 1);
    assert_eq!(first["status"], "new");

    let submitted = first["submitted"].as_str().unwrap().to_string();
    let next = trading(&daemon).step().await.unwrap().unwrap();
    assert!(next.to_string() > submitted);
    let (_, bars) = daemon
        .get(&format!("/v1/market/AAPL/bars?from={next}&to={next}"))
        .await;
    let open = bars["bars"][0]["open"].as_f64().unwrap();
    // 5 bp of slippage against the buyer and 1 bp of commission, the defaults.
    let price = open * 1.0005;
    let commission = 10.0 * price * 0.0001;
    let (_, orders) = daemon.get("/v1/orders").await;
    let filled = &orders["orders"][0];
    assert_eq!(filled["status"], "filled", "{filled}");
    assert_eq!(filled["filled"], next.to_string());
    assert!(
        (filled["fill_price"].as_f64().unwrap() - price).abs() < 1e-9,
        "{filled}"
    );
    assert!((filled["commission"].as_f64().unwrap() - commission).abs() < 1e-9);
    let (_, portfolio) = daemon.get("/v1/portfolio").await;
    let cash = 100_000.0 - 10.0 * price - commission;
    assert!(
        (portfolio["cash"].as_f64().unwrap() - cash).abs() < 1e-6,
        "{portfolio}"
    );
    assert_eq!(portfolio["positions"][0]["quantity"], 10.0);
    let (_, trades) = daemon.get("/v1/trades").await;
    let slippage = trades["trades"][0]["slippage"].as_f64().unwrap();
    assert!((slippage - 10.0 * (price - open)).abs() < 1e-9);
    assert_eq!(events(&daemon, "trade.executed").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_and_market_ranges_get_clear_errors_and_change_nothing() {
    let (daemon, _dir) = trading_daemon(60_000).await;
    daemon.push_agent("trader", "fixture-trader").await;
    for (order, code) in [
        (
            json!({ "symbol": "AAPL", "side": "buy", "quantity": 0 }),
            "invalid_order",
        ),
        (
            json!({ "symbol": "AAPL", "side": "buy", "quantity": -5 }),
            "invalid_order",
        ),
        (
            json!({ "symbol": "AAPL", "side": "buy", "quantity": 1e300 }),
            "invalid_order",
        ),
        (
            json!({ "symbol": "AAPL", "side": "buy", "notional": 1e15 }),
            "invalid_order",
        ),
        (
            json!({ "symbol": "NOPE", "side": "buy", "quantity": 1 }),
            "unknown_symbol",
        ),
        (
            json!({ "symbol": "AAPL", "side": "buy", "quantity": 1, "type": "limit" }),
            "invalid_order",
        ),
        (
            json!({ "symbol": "AAPL", "side": "buy", "quantity": 1, "notional": 100 }),
            "invalid_order",
        ),
        (
            json!({ "symbol": "AAPL", "side": "hold", "quantity": 1 }),
            "invalid_request",
        ),
        (
            json!({ "symbol": "AAPL", "side": "buy", "quantity": "ten" }),
            "invalid_request",
        ),
    ] {
        let (status, body) = daemon.post("/v1/orders", order.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{order}: {body}");
        assert_eq!(body["error"]["code"], code, "{order}: {body}");
    }
    // What JSON cannot say, an agent can.
    for quantity in ["nan", "inf"] {
        let body = call(&daemon, json!({ "call": "submit", "symbol": "AAPL", "quantity": quantity, "client_order_id": "x" }))
            .await;
        assert_eq!(body["error"], "invalid_input", "{quantity}: {body}");
    }
    let body = call(&daemon, json!({ "call": "submit", "symbol": "AAPL", "quantity": 1, "client_order_id": "has space" }))
        .await;
    assert_eq!(body["error"], "invalid_input", "{body}");

    // Ranges: malformed, backwards, and past as-of (look-ahead) are refused.
    let as_of = call(&daemon, json!({ "call": "as-of" })).await;
    let day = as_of["ok"]["date"].as_str().unwrap().to_string();
    assert_eq!(day, trading(&daemon).as_of().to_string());
    let after = (trading(&daemon).as_of() + chrono::Days::new(1)).to_string();
    for (from, to, says) in [
        ("yesterday", day.as_str(), "not a date"),
        (day.as_str(), "2012-13-45", "not a date"),
        (day.as_str(), "2011-01-03", "after"),
        ("2011-12-01", after.as_str(), "look-ahead"),
    ] {
        let body = call(
            &daemon,
            json!({ "call": "bars", "symbol": "AAPL", "from": from, "to": to }),
        )
        .await;
        assert_eq!(body["error"], "invalid_input", "{from}..{to}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
        let (status, api) = daemon
            .get(&format!("/v1/market/AAPL/bars?from={from}&to={to}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{from}..{to}: {api}");
    }
    let body = call(
        &daemon,
        json!({ "call": "bars", "symbol": "AAPL", "from": "2011-12-01", "to": day }),
    )
    .await;
    let bars = body["ok"].as_array().unwrap();
    assert!(bars.len() > 15);
    assert!(
        bars.iter()
            .all(|b| b["date"].as_str().unwrap() <= day.as_str())
    );
    let body = call(
        &daemon,
        json!({ "call": "bars", "symbol": "NOPE", "from": "2011-12-01", "to": day }),
    )
    .await;
    assert_eq!(body["error"], "invalid_input");

    assert_eq!(count(&daemon, "/v1/orders", "orders").await, 0);
    assert_eq!(count(&daemon, "/v1/risk", "refusals").await, 0);

    // A client order id is its owner's: another caller reusing it gets no order back.
    let mine = json!({ "symbol": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "mine" });
    assert_eq!(
        daemon.post("/v1/orders", mine.to_string()).await.0,
        StatusCode::CREATED
    );
    let body = call(
        &daemon,
        json!({ "call": "submit", "symbol": "AAPL", "quantity": 1, "client_order_id": "mine" }),
    )
    .await;
    assert_eq!(body["error"], "invalid_input", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("another's"),
        "{body}"
    );
    assert_eq!(count(&daemon, "/v1/orders", "orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_gate_refuses_with_its_numbers_and_the_kill_switch_halts() {
    let (daemon, _dir) = trading_daemon(60_000).await;
    let order = |id: &str, notional: f64| {
        json!({ "symbol": "MSFT", "side": "buy", "notional": notional, "client_order_id": id })
            .to_string()
    };
    let (status, body) = daemon.post("/v1/orders", order("big", 30_000.0)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "max_order_notional");
    let (_, risk) = daemon.get("/v1/risk").await;
    assert_eq!(risk["risk"]["state"], "active");
    let refusal = &risk["refusals"][0];
    assert_eq!(refusal["code"], "max_order_notional");
    assert_eq!(refusal["detail"]["limit"], 25_000.0);
    assert!(refusal["detail"]["notional"].as_f64().unwrap() > 29_999.0);
    let refused = events(&daemon, "trade.refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["source"], "risk");

    // An order waiting to fill is cancelled by the kill switch, and nothing passes after it.
    let (status, _) = daemon.post("/v1/orders", order("small", 1_000.0)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, killed) = daemon
        .post("/v1/risk", json!({ "action": "kill" }).to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{killed}");
    assert_eq!(killed["risk"]["state"], "halted");
    let (status, body) = daemon
        .post("/v1/orders", order("after-kill", 1_000.0))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "halted");
    let (_, orders) = daemon.get("/v1/orders").await;
    assert_eq!(orders["orders"][0]["status"], "canceled");
    let (_, resumed) = daemon
        .post("/v1/risk", json!({ "action": "resume" }).to_string())
        .await;
    assert_eq!(resumed["risk"]["state"], "active");
    let (status, _) = daemon.post("/v1/orders", order("resumed", 1_000.0)).await;
    assert_eq!(status, StatusCode::CREATED);

    // The kill file halts trading at the next tick, and the open order with it.
    std::fs::write(daemon.data_dir.join("KILL"), "").unwrap();
    trading(&daemon).step().await.unwrap();
    let (_, risk) = daemon.get("/v1/risk").await;
    assert_eq!(risk["risk"]["state"], "halted", "{risk}");
    assert_eq!(risk["risk"]["kill_switch"], true);
    assert_eq!(
        count(&daemon, "/v1/trades", "trades").await,
        0,
        "the kill came before the fill"
    );
    std::fs::remove_file(daemon.data_dir.join("KILL")).unwrap();

    let (status, body) = daemon
        .post("/v1/risk", json!({ "action": "sideways" }).to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_and_memory_answer_only_what_the_manifest_grants() {
    let (daemon, _dir) = trading_daemon(60_000).await;
    let manifest = "name = \"trader\"\n[capabilities]\ngrant = [\"market\"]\n";
    daemon.push_ok("trader", "fixture-trader", manifest).await;
    for probe in [
        json!({ "call": "account" }),
        json!({ "call": "recall", "collection": "trades", "query": "x" }),
    ] {
        let body = call(&daemon, probe.clone()).await;
        assert_eq!(body["error"], "denied", "{probe}: {body}");
    }
    let body = call(&daemon, json!({ "call": "latest", "symbol": "IBM" })).await;
    assert_eq!(body["ok"], trading(&daemon).as_of().to_string());

    // The broker is privileged: an agent may not speak for the host's topics without it
    // being listed, and only the listed ones.
    let bad = "name = \"trader\"\n[capabilities]\npublish = [\"trade.executed\"]\n";
    let (status, body) = daemon
        .push(
            "trader",
            overseer_tests::component("fixture-trader"),
            Some(bad),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Memory: an agent's own collection, recalled by relevance, never another agent's.
    let manifest = "name = \"trader\"\n[capabilities]\ngrant = [\"memory\"]\n";
    daemon.push_ok("trader", "fixture-trader", manifest).await;
    for text in [
        "AAPL breakout on volume",
        "MSFT earnings miss",
        "AAPL breakout failed, breakout faded",
    ] {
        let body = call(&daemon, json!({ "call": "remember", "collection": "notes", "text": text, "metadata": { "symbol": "AAPL" } }))
            .await;
        assert!(body["ok"].as_u64().is_some(), "{body}");
    }
    let body = call(
        &daemon,
        json!({ "call": "recall", "collection": "notes", "query": "AAPL breakout", "k": 5 }),
    )
    .await;
    let found = body["ok"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{body}");
    assert_eq!(found[0]["text"], "AAPL breakout failed, breakout faded");
    for (probe, says) in [
        (
            json!({ "call": "recall", "collection": "../x", "query": "a" }),
            "collection",
        ),
        (
            json!({ "call": "remember", "collection": "notes", "text": "a", "metadata": [1] }),
            "JSON object",
        ),
        (
            json!({ "call": "remember", "collection": "notes", "text": "  " }),
            "empty",
        ),
    ] {
        let body = call(&daemon, probe.clone()).await;
        assert_eq!(body["error"], "invalid_input", "{probe}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    let (_, listed) = daemon
        .get("/v1/memory?collection=trader/notes&q=earnings")
        .await;
    assert_eq!(listed["memories"].as_array().unwrap().len(), 1, "{listed}");
    let (status, _) = daemon
        .get_anonymous("/v1/memory?collection=trader/notes")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A fake of Alpaca's data and trading APIs: documented shapes, one account, orders kept and
/// filled when the test says so.
mod fake_alpaca {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{delete, get};
    use serde_json::{Value, json};

    #[derive(Clone, Default)]
    pub struct Alpaca {
        pub url: String,
        pub orders: Arc<Mutex<Vec<Value>>>,
    }

    impl Alpaca {
        /// Fill every open order at `price`.
        pub fn fill_all(&self, price: f64) {
            for order in self.orders.lock().unwrap().iter_mut() {
                if order["status"] == "accepted" {
                    order["status"] = json!("filled");
                    order["filled_qty"] = order["qty"].clone();
                    order["filled_avg_price"] = json!(price.to_string());
                    order["filled_at"] = json!("2024-01-03T15:00:00Z");
                }
            }
        }
    }

    /// The 401 Alpaca answers without the test's key; `None` with it.
    fn unauthorized(headers: &HeaderMap) -> Option<Response> {
        let key = headers.get("apca-api-key-id").and_then(|v| v.to_str().ok());
        if key == Some("kid") {
            None
        } else {
            Some(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({ "code": 40110000, "message": "request is not authorized" })),
                )
                    .into_response(),
            )
        }
    }

    async fn bars(headers: HeaderMap, Path(symbol): Path<String>) -> Response {
        if let Some(denied) = unauthorized(&headers) {
            return denied;
        }
        // Every weekday of the last 400 days, a gentle rise from 100.
        let today = chrono::Utc::now().date_naive();
        let bars: Vec<Value> = (0..400u64)
            .rev()
            .filter_map(|back| today.checked_sub_days(chrono::Days::new(back)))
            .filter(|d| overseer_market::calendar::is_trading_day(*d))
            .enumerate()
            .map(|(n, d)| {
                let close = 100.0 + n as f64 * 0.1;
                json!({ "t": format!("{d}T05:00:00Z"), "o": close - 0.05, "h": close + 0.5, "l": close - 0.5, "c": close, "v": 1_000_000, "n": 1000, "vw": close })
            })
            .collect();
        Json(json!({ "bars": bars, "symbol": symbol, "next_page_token": null })).into_response()
    }

    async fn account(headers: HeaderMap) -> Response {
        if let Some(denied) = unauthorized(&headers) {
            return denied;
        }
        Json(json!({ "id": "acct", "status": "ACTIVE", "currency": "USD", "cash": "100000", "equity": "100000", "buying_power": "200000" })).into_response()
    }

    async fn positions(headers: HeaderMap) -> Response {
        if let Some(denied) = unauthorized(&headers) {
            return denied;
        }
        Json(json!([])).into_response()
    }

    async fn submit(
        State(fake): State<Alpaca>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> Response {
        if let Some(denied) = unauthorized(&headers) {
            return denied;
        }
        let mut orders = fake.orders.lock().unwrap();
        if orders
            .iter()
            .any(|o| o["client_order_id"] == body["client_order_id"])
        {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "code": 40010001, "message": "client_order_id must be unique" })),
            )
                .into_response();
        }
        let order = json!({
            "id": format!("904837e3-0000-0000-0000-00000000000{}", orders.len()),
            "client_order_id": body["client_order_id"],
            "created_at": "2024-01-03T14:30:00Z",
            "submitted_at": "2024-01-03T14:30:00Z",
            "filled_at": null,
            "symbol": body["symbol"],
            "qty": body.get("qty").cloned().unwrap_or(Value::Null),
            "notional": body.get("notional").cloned().unwrap_or(Value::Null),
            "filled_qty": "0",
            "filled_avg_price": null,
            "type": body["type"],
            "order_type": body["type"],
            "side": body["side"],
            "time_in_force": body["time_in_force"],
            "limit_price": null,
            "status": "accepted",
        });
        orders.push(order.clone());
        Json(order).into_response()
    }

    async fn by_client_id(
        State(fake): State<Alpaca>,
        headers: HeaderMap,
        Query(query): Query<Vec<(String, String)>>,
    ) -> Response {
        if let Some(denied) = unauthorized(&headers) {
            return denied;
        }
        let id = query
            .iter()
            .find(|(k, _)| k == "client_order_id")
            .map(|(_, v)| v.clone());
        match fake
            .orders
            .lock()
            .unwrap()
            .iter()
            .find(|o| o["client_order_id"].as_str() == id.as_deref())
        {
            Some(order) => Json(order.clone()).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({ "code": 40410000, "message": "order not found" })),
            )
                .into_response(),
        }
    }

    async fn cancel(State(fake): State<Alpaca>, Path(id): Path<String>) -> Response {
        for order in fake.orders.lock().unwrap().iter_mut() {
            if order["id"] == id.as_str() {
                order["status"] = json!("canceled");
            }
        }
        StatusCode::NO_CONTENT.into_response()
    }

    pub async fn start() -> Alpaca {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Alpaca {
            url: format!("http://{}", listener.local_addr().unwrap()),
            ..Alpaca::default()
        };
        let app = axum::Router::new()
            .route("/v2/stocks/{symbol}/bars", get(bars))
            .route(
                "/v1beta1/news",
                get(|| async { Json(json!({ "news": [], "next_page_token": null })) }),
            )
            .route("/v2/account", get(account))
            .route("/v2/positions", get(positions))
            .route("/v2/orders", get(|| async { Json(json!([])) }).post(submit))
            .route("/v2/orders:by_client_order_id", get(by_client_id))
            .route("/v2/orders/{id}", delete(cancel))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_orders_pass_the_gate_and_their_fills_come_back() {
    let alpaca = fake_alpaca::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market = overseer_trading::MarketKind::Alpaca;
    config.trading.broker = overseer_trading::BrokerKind::Alpaca;
    config.trading.alpaca.data_url = alpaca.url.clone();
    config.trading.alpaca.paper_url = alpaca.url.clone();
    config.trading.alpaca.live_url = "http://127.0.0.1:9".to_string();
    config.trading.alpaca.key_id = Some("kid".parse().unwrap());
    config.trading.alpaca.secret = Some("sec".parse().unwrap());
    let daemon = Daemon::start_with(config).await;

    // The live market serves the fetched bars up to the last close, no later.
    let (status, market) = daemon.get("/v1/market").await;
    assert_eq!(status, StatusCode::OK, "{market}");
    let (_, bars) = daemon.get("/v1/market/AAPL/bars").await;
    let last = bars["bars"].as_array().unwrap().last().cloned().unwrap();
    assert!(last["date"].as_str().unwrap() <= market["as_of"].as_str().unwrap());

    // Through the gate to Alpaca's paper endpoint; a refused order never reaches it.
    let order =
        json!({ "symbol": "MSFT", "side": "buy", "quantity": 10, "client_order_id": "live-1" });
    let (status, placed) = daemon.post("/v1/orders", order.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["id"], "alpaca-live-1");
    let big =
        json!({ "symbol": "MSFT", "side": "buy", "notional": 90_000, "client_order_id": "live-2" });
    let (status, refused) = daemon.post("/v1/orders", big.to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(alpaca.orders.lock().unwrap().len(), 1);
    assert_eq!(alpaca.orders.lock().unwrap()[0]["qty"], "10");

    // Alpaca fills it; the next read-back books the fill and publishes it.
    alpaca.fill_all(101.25);
    trading(&daemon).sync().await.unwrap();
    let (_, orders) = daemon.get("/v1/orders").await;
    assert_eq!(orders["orders"][0]["status"], "filled", "{orders}");
    assert_eq!(orders["orders"][0]["fill_price"], 101.25);
    assert_eq!(events(&daemon, "trade.executed").await.len(), 1);

    let (_, portfolio) = daemon.get("/v1/portfolio").await;
    assert_eq!(
        portfolio["equity"], 100_000.0,
        "the account as Alpaca reports it: {portfolio}"
    );

    // Cancelling goes to Alpaca too; the kill switch cancels what is open there.
    let another =
        json!({ "symbol": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "live-3" });
    assert_eq!(
        daemon.post("/v1/orders", another.to_string()).await.0,
        StatusCode::CREATED
    );
    let (status, _) = daemon
        .post("/v1/risk", json!({ "action": "kill" }).to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alpaca.orders.lock().unwrap()[1]["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_trading_needs_the_alpaca_broker_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (market, broker, live, says) in [
        (
            overseer_trading::MarketKind::Replay,
            overseer_trading::BrokerKind::Paper,
            true,
            "needs broker",
        ),
        (
            overseer_trading::MarketKind::Replay,
            overseer_trading::BrokerKind::Alpaca,
            false,
            "live market",
        ),
        (
            overseer_trading::MarketKind::Polygon,
            overseer_trading::BrokerKind::Paper,
            false,
            "OVERSEER_POLYGON_KEY",
        ),
        (
            overseer_trading::MarketKind::Alpaca,
            overseer_trading::BrokerKind::Paper,
            false,
            "OVERSEER_ALPACA_KEY_ID",
        ),
    ] {
        let mut config = test_config(dir.path());
        config.trading.market = market;
        config.trading.broker = broker;
        config.trading.live_trading = live;
        let error = overseer::daemon::open(config).await.err().expect("refused");
        assert!(error.to_string().contains(says), "{error}");
    }
}

/// A fake OpenAI-compatible embeddings endpoint: a word's meaning is one of three axes.
async fn fake_embeddings() -> String {
    async fn embed(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
        let text = body["input"][0].as_str().unwrap_or_default().to_lowercase();
        let axis = |words: &[&str]| words.iter().filter(|w| text.contains(*w)).count() as f64;
        let vector = [
            axis(&["rally", "surge", "soar"]),
            axis(&["crash", "plunge", "slump"]),
            0.1,
        ];
        axum::Json(json!({
            "object": "list",
            "data": [{ "object": "embedding", "index": 0, "embedding": vector }],
            "model": body["model"],
            "usage": { "prompt_tokens": 5, "total_tokens": 5 }
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/v1/embeddings", axum::routing::post(embed));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_embeddings_endpoint_recall_finds_meaning_without_shared_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.embeddings.url = Some(fake_embeddings().await);
    let daemon = Daemon::start_with(config).await;
    let manifest = "name = \"trader\"\n[capabilities]\ngrant = [\"memory\"]\n";
    daemon.push_ok("trader", "fixture-trader", manifest).await;
    for text in [
        "AAPL shares surge after earnings",
        "MSFT slumps on guidance",
        "IBM unchanged",
    ] {
        let body = call(
            &daemon,
            json!({ "call": "remember", "collection": "notes", "text": text }),
        )
        .await;
        assert!(body["ok"].as_u64().is_some(), "{body}");
    }
    // No stored text has the word "rally": only the vectors can find it.
    let body = call(
        &daemon,
        json!({ "call": "recall", "collection": "notes", "query": "rally", "k": 2 }),
    )
    .await;
    let found = body["ok"].as_array().unwrap();
    assert_eq!(
        found[0]["text"], "AAPL shares surge after earnings",
        "{body}"
    );
    // A word in common and the meaning agree: the lexical match ranks first.
    let body = call(
        &daemon,
        json!({ "call": "recall", "collection": "notes", "query": "MSFT plunge", "k": 3 }),
    )
    .await;
    assert_eq!(body["ok"][0]["text"], "MSFT slumps on guidance", "{body}");
    let (_, listed) = daemon
        .get("/v1/memory?collection=trader/notes&q=soar")
        .await;
    assert_eq!(
        listed["memories"][0]["text"], "AAPL shares surge after earnings",
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_follows_every_close_and_attributes_each_trade() {
    let (daemon, _dir) = trading_daemon(60_000).await;
    let order = |side: &str, id: &str| {
        json!({ "symbol": "MSFT", "side": side, "quantity": 50, "client_order_id": id }).to_string()
    };
    assert_eq!(
        daemon
            .post("/v1/orders", order("buy", "2012-01-03-MSFT-buy"))
            .await
            .0,
        StatusCode::CREATED
    );
    trading(&daemon).step().await.unwrap();
    assert_eq!(
        daemon
            .post("/v1/orders", order("sell", "2012-01-04-MSFT-sell"))
            .await
            .0,
        StatusCode::CREATED
    );
    trading(&daemon).step().await.unwrap();
    trading(&daemon).step().await.unwrap();

    let (status, performance) = daemon.get("/v1/performance").await;
    assert_eq!(status, StatusCode::OK, "{performance}");
    let curve = performance["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 3, "one point per close: {performance}");
    let closed = &events(&daemon, "trade.closed").await[0];
    let closed: Value = serde_json::from_str(closed["payload"].as_str().unwrap()).unwrap();
    let pnl = closed["closed"]["pnl"].as_f64().unwrap();
    let trade = &performance["trades"][0];
    assert_eq!(trade["agent"], "api");
    assert_eq!(
        trade["opened_by"], "2012-01-03-MSFT-buy",
        "the order that opened it"
    );
    assert!((trade["pnl"].as_f64().unwrap() - pnl).abs() < 1e-9);
    assert!((performance["realized_by_agent"]["api"].as_f64().unwrap() - pnl).abs() < 1e-9);
    assert!((performance["realized_by_strategy"]["api"].as_f64().unwrap() - pnl).abs() < 1e-9);
    assert_eq!(
        trade["agent_version"],
        Value::Null,
        "the API has no version"
    );
    // Flat after the round trip: the last close's equity is the start plus the P&L.
    let last = curve[2]["equity"].as_f64().unwrap();
    assert!((last - (100_000.0 + pnl)).abs() < 1e-6, "{last} vs {pnl}");
    let (_, trades) = daemon.get("/v1/trades").await;
    let fees: f64 = trades["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["commission"].as_f64().unwrap())
        .sum();
    let metrics = &performance["metrics"];
    assert!(
        (metrics["fees"].as_f64().unwrap() - fees).abs() < 1e-9,
        "{metrics}"
    );
    assert_eq!(metrics["trades"], 1);
    assert_eq!(metrics["periods"], 2);
    let (status, _) = daemon.get("/v1/performance?risk_free=7").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
