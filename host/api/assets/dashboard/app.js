// The overseer dashboard: one page per view, every datum from the daemon's API with the token
// kept in this tab's session, every action a normal API call. No framework, no build step.
"use strict";

const TOKEN_KEY = "overseer-token";
const page = document.getElementById("page");
const login = document.getElementById("login");

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
}

class Unauthorized extends Error {}

// A whole list: the daemon answers lists a page at a time (`limit`, `after`, `next`); this
// follows `next` and answers the first page with `key` holding every item.
async function all(path, key) {
  const join = path.includes("?") ? "&" : "?";
  const first = await api(`${path}${join}limit=1000`);
  let page = first;
  const items = (first[key] || []).slice();
  while (page.next) {
    page = await api(`${path}${join}limit=1000&after=${encodeURIComponent(page.next)}`);
    items.push(...(page[key] || []));
  }
  return Object.assign({}, first, { [key]: items, next: null });
}

async function api(path, options = {}) {
  // Without a token the daemon may still answer reads (`--public-read`); a 401 asks for it.
  const headers = Object.assign(token() ? { Authorization: `Bearer ${token()}` } : {}, options.headers || {});
  if (options.body !== undefined && typeof options.body !== "string") {
    options.body = JSON.stringify(options.body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    showLogin("The daemon refused the token: give it again.");
    throw new Unauthorized();
  }
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch (_) { /* text answers (reports in Markdown) */ }
  if (!response.ok) {
    const error = body && body.error ? `${body.error.code}: ${body.error.message}` : `${response.status}`;
    throw new Error(error);
  }
  return body;
}

function showLogin(message) {
  login.hidden = false;
  page.hidden = true;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

document.getElementById("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  login.hidden = true;
  page.hidden = false;
  render();
  stream();
});

function table(headers, rows, attrs = () => "") {
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${
    rows.map((r, i) => `<tr ${attrs(i)}>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")
  }</tbody></table>`;
}

// Actions: every button names its API call in data attributes; the page re-renders after.
async function act(button) {
  const { method, path, body, confirm: question, reason } = button.dataset;
  if (question && !window.confirm(question)) return;
  let payload = body ? JSON.parse(body) : undefined;
  if (reason) {
    const input = document.getElementById(reason);
    payload = Object.assign(payload || {}, { reason: input ? input.value : "" });
  }
  button.disabled = true;
  try {
    const answer = await api(path, { method: method || "POST", body: payload });
    flash(`done: ${method || "POST"} ${path}`, answer);
  } catch (e) {
    if (!(e instanceof Unauthorized)) flash(`failed: ${e.message}`);
  }
  await render();
}

function flash(message) {
  const note = document.getElementById("flash") || document.createElement("p");
  note.id = "flash";
  note.textContent = message;
  document.body.insertBefore(note, page);
}

page.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-path]");
  if (button) act(button);
  const more = e.target.closest("button[data-page]");
  if (more) { offsets[more.dataset.page] = Number(more.dataset.offset); render(); }
});

function button(label, path, extra = {}) {
  const data = Object.entries(extra).map(([k, v]) => ` data-${k}="${esc(typeof v === "string" ? v : JSON.stringify(v))}"`).join("");
  return `<button data-path="${esc(path)}"${data}>${esc(label)}</button>`;
}

const offsets = {};

function pager(name, offset, size, total) {
  const parts = [];
  if (offset > 0) parts.push(`<button data-page="${name}" data-offset="${Math.max(0, offset - size)}">previous</button>`);
  if (offset + size < total) parts.push(`<button data-page="${name}" data-offset="${offset + size}">next</button>`);
  return `<p class="pager">${offset + 1}–${Math.min(total, offset + size)} of ${total} ${parts.join(" ")}</p>`;
}

const charts = [];

function chart(id, labels, datasets, type = "line") {
  if (typeof Chart === "undefined") return;
  const canvas = document.getElementById(id);
  if (!canvas) return;
  charts.push(new Chart(canvas, {
    type,
    data: { labels, datasets },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { x: { ticks: { maxTicksLimit: 12 } } } },
  }));
}

// Pages.
const PAGE = 100;

async function statusPage() {
  const [agents, system, windows] = await Promise.all([
    all("/v1/agents", "agents"), api("/v1/system"), all("/v1/telemetry?window_ms=3600000", "agents").catch(() => ({ agents: [] })),
  ]);
  const figures = Object.fromEntries((windows.agents || []).map((w) => [w.agent, w]));
  const list = agents.agents || [];
  const offset = offsets.agents || 0;
  const shown = list.slice(offset, offset + PAGE);
  const gib = (b) => (b ? (b / 2 ** 30).toFixed(1) : "?");
  return `<h1>Status</h1>
  <p class="cards">
    <span>CPU ${esc(Number(system.cpu_percent || 0).toFixed(1))}%</span>
    <span>memory ${esc(gib(system.memory?.used_bytes))} of ${esc(gib(system.memory?.total_bytes))} GiB</span>
    <span>disk free ${esc(gib(system.disk?.available_bytes))} GiB</span>
    <span>database ${esc(system.database)}</span>
    <span>${esc(list.length)} agents</span>
  </p>
  ${table(["agent", "state", "version", "health", "calls (1 h)", "error rate", "p50 ms", "p99 ms", "fuel"], shown.map((a) => {
    const w = figures[a.name] || {};
    const health = a.quarantined ? "quarantined" : w.error_rate > 0.2 ? "failing" : w.calls ? "healthy" : "idle";
    return [
      `<a href="#agent/${esc(a.name)}">${esc(a.name)}</a>`, esc(a.state), esc(a.active_version), esc(health),
      esc(w.calls), esc(w.error_rate?.toFixed(3)), esc(w.p50_ms?.toFixed(1)), esc(w.p99_ms?.toFixed(1)), esc(w.fuel),
    ];
  }), (i) => `data-agent="${esc(shown[i].name)}"`)}
  ${pager("agents", offset, PAGE, list.length)}`;
}

async function agentPage(name) {
  const n = encodeURIComponent(name);
  const [agent, versions] = await Promise.all([api(`/v1/agents/${n}`), all(`/v1/agents/${n}/versions`, "versions")]);
  const c = agent.counters || {};
  const rows = (versions.versions || []).slice().reverse().map((v) => [
    esc(v.version), esc(v.state), esc(v.origin), esc((v.digest || "").slice(0, 12)), esc(when(v.created_ms)),
    (v.checks || []).map((k) => `<span class="check ${k.ok === false ? "bad" : ""}" title="${esc(k.detail || k.message || "")}">${esc(k.step)}</span>`).join(" "),
  ]);
  return `<h1>${esc(name)}</h1>
  <p class="cards"><span>state <b id="agent-state">${esc(agent.state)}</b></span>
    <span>active version <b id="active-version">${esc(agent.active_version)}</b></span>
    <span>${agent.quarantined ? "quarantined" : agent.watching ? "watched" : "serving"}</span>
    <span>ok calls ${esc(c.invocations_ok)}</span><span>rollbacks ${esc(c.rollbacks)}</span></p>
  <p>${button("Roll back", `/v1/agents/${n}/rollback`, { confirm: `Roll ${name} back to its previous version?` }).replace("<button", '<button id="rollback"')}
     ${agent.quarantined ? button("Release", `/v1/agents/${n}/release`).replace("<button", '<button id="release"') : ""}</p>
  <h2>Versions</h2>
  ${table(["version", "state", "origin", "digest", "created", "checks"], rows)}`;
}

async function alertsPage(state = "open") {
  const alerts = (await api(`/v1/alerts?state=${state}`)).alerts || [];
  const order = { critical: 0, high: 1, medium: 2, low: 3 };
  alerts.sort((a, b) => (order[a.priority] ?? 9) - (order[b.priority] ?? 9));
  return `<h1>Alerts</h1>
  <p><a href="#alerts/open">open</a> · <a href="#alerts/all">all</a></p>
  ${table(["id", "priority", "type", "agent", "message", "opened", "resolved", ""], alerts.map((a) => [
    esc(a.id), `<span class="p-${esc(a.priority)}">${esc(a.priority)}</span>`, esc(a.kind || a.type), esc(a.agent),
    `${esc(a.message)}<details><summary>evidence</summary><pre>${esc(JSON.stringify(a.evidence, null, 2))}</pre></details>`,
    esc(when(a.opened_ms)), esc(when(a.resolved_ms)),
    a.resolved_ms ? "" : button("Resolve", `/v1/alerts/${a.id}/resolve`),
  ]), (i) => `data-alert="${esc(alerts[i].id)}"`)}`;
}

async function governancePage() {
  const decisions = (await api("/v1/decisions?limit=200")).decisions || [];
  let report = "";
  try { report = await api("/v1/reports/latest.md"); } catch (e) { report = `no report yet (${e.message})`; }
  const waiting = decisions.filter((d) => d.state === "awaiting_approval");
  return `<h1>Governance</h1>
  <h2>Awaiting approval</h2>
  ${waiting.length ? table(["id", "title", "actions", "proposer", "reason", ""], waiting.map((d) => [
    esc(d.id), esc(d.body.title), esc(JSON.stringify(d.body.actions)), esc(d.proposer),
    `<input id="reason-${esc(d.id)}" placeholder="reason">`,
    button("Approve", `/v1/decisions/${d.id}/approve`, { reason: `reason-${d.id}` }).replace("<button", `<button id="approve-${esc(d.id)}"`) + " " +
    button("Reject", `/v1/decisions/${d.id}/reject`, { reason: `reason-${d.id}` }).replace("<button", `<button id="reject-${esc(d.id)}"`),
  ]), (i) => `data-decision="${esc(waiting[i].id)}"`) : "<p>none</p>"}
  <h2>Decisions</h2>
  ${table(["id", "title", "policy", "state", "decided by", "outcome", "made"], decisions.map((d) => [
    esc(d.id), esc(d.body.title), esc(d.policy), `<span class="state" data-state-of="${esc(d.id)}">${esc(d.state)}</span>`,
    esc(d.decided_by), esc(d.outcome), esc(when(d.made_ms)),
  ]))}
  <h2>Latest report</h2><pre class="report">${esc(typeof report === "string" ? report : JSON.stringify(report, null, 2))}</pre>`;
}

// A unified diff as two columns: what was, and what is.
function sideBySide(diff) {
  const rows = [];
  for (const line of String(diff || "").split("\n")) {
    if (line.startsWith("---") || line.startsWith("+++")) rows.push([`<b>${esc(line)}</b>`, ""]);
    else if (line.startsWith("@@")) rows.push([`<i>${esc(line)}</i>`, `<i>${esc(line)}</i>`]);
    else if (line.startsWith("-")) rows.push([`<span class="del">${esc(line.slice(1))}</span>`, ""]);
    else if (line.startsWith("+")) rows.push(["", `<span class="add">${esc(line.slice(1))}</span>`]);
    else rows.push([esc(line.slice(1)), esc(line.slice(1))]);
  }
  return `<table class="diff">${rows.map((r) => `<tr><td><pre>${r[0]}</pre></td><td><pre>${r[1]}</pre></td></tr>`).join("")}</table>`;
}

async function changesPage() {
  // The trail is oldest first: read its last page.
  const verify = await api("/v1/audit/verify");
  const total = verify.entries || 0;
  const offset = offsets.changes ?? Math.max(0, total - PAGE);
  const entries = ((await api(`/v1/audit?after=${offset}&limit=${PAGE}`)).entries || []).slice().reverse();
  const kinds = /^(activate|rollback|quarantine|release|retire|edit|decision|prompt|experiment|architect)/;
  const shown = entries.filter((e) => kinds.test(e.action));
  return `<h1>Changes</h1>
  <p>The audit trail's pushes, edits, rollbacks and decisions, newest first (chain ${verify.ok ? "intact" : "<b>broken</b>"}).</p>
  ${table(["#", "when", "actor", "action", "subject", "detail"], shown.map((e) => {
    let detail = e.detail;
    try { detail = JSON.parse(e.detail); } catch (_) { /* kept as text */ }
    const edit = e.action.startsWith("edit") && detail && detail.edit;
    return [esc(e.seq), esc(when(e.at_ms)), esc(e.actor), esc(e.action), esc(e.subject),
      edit ? `<a href="#edit/${esc(e.subject)}/${esc(detail.edit)}">edit ${esc(detail.edit)}</a>` : `<code>${esc(e.detail).slice(0, 160)}</code>`];
  }))}
  ${pager("changes", offset, PAGE, total)}`;
}

async function editPage(agent, id) {
  const edit = await api(`/v1/agents/${encodeURIComponent(agent)}/edits/${encodeURIComponent(id)}`);
  return `<h1>Edit ${esc(id)} of ${esc(agent)}</h1>
  <p class="cards"><span>${esc(edit.state)}</span><span>by ${esc(edit.proposer)}</span><span>version ${esc(edit.version)}</span><span>${esc(edit.stage)} ${esc(edit.message)}</span></p>
  <p>${esc(edit.reason)}</p>
  <h2>Diff</h2>${sideBySide(edit.diff)}
  <h2>Build log</h2><pre>${esc(edit.build_log)}</pre>`;
}

async function performancePage(agent) {
  const [windows, llm, budgets] = await Promise.all([
    all("/v1/telemetry?window_ms=3600000", "agents"), api("/v1/llm"), all("/v1/budgets", "budgets").catch(() => ({ budgets: [] })),
  ]);
  const agents = windows.agents || [];
  const chosen = agent || (agents.slice().sort((a, b) => b.calls - a.calls)[0] || {}).agent;
  const series = chosen ? await api(`/v1/telemetry/${encodeURIComponent(chosen)}?window_ms=3600000&buckets=60`) : { points: [] };
  const points = series.points || [];
  const labels = points.map((p) => when(p.start_ms).slice(11, 16));
  setTimeout(() => {
    chart("latency", labels, [
      { label: "p50 ms", data: points.map((p) => p.p50_ms) },
      { label: "p95 ms", data: points.map((p) => p.p95_ms) },
    ]);
    chart("calls", labels, [
      { label: "calls", data: points.map((p) => p.calls) },
      { label: "failures", data: points.map((p) => p.failures) },
    ], "bar");
    chart("fuel", labels, [{ label: "fuel", data: points.map((p) => p.fuel) }]);
  });
  return `<h1>Performance</h1>
  <p>The last hour, per agent; charts of <b id="perf-agent">${esc(chosen || "no agent")}</b> in minute buckets (pick another below).</p>
  <div class="chart"><canvas id="latency"></canvas></div><div class="chart"><canvas id="calls"></canvas></div><div class="chart"><canvas id="fuel"></canvas></div>
  ${table(["agent", "calls", "failures", "error rate", "p50 ms", "p95 ms", "p99 ms", "fuel", "peak memory"], agents.map((a) => [
    `<a href="#performance/${esc(a.agent)}">${esc(a.agent)}</a>`, esc(a.calls), esc(a.failures), esc(a.error_rate?.toFixed(3)),
    esc(a.p50_ms?.toFixed(1)), esc(a.p95_ms?.toFixed(1)), esc(a.p99_ms?.toFixed(1)), esc(a.fuel), esc(a.peak_memory),
  ]))}
  <h2>LLM</h2><p>${esc(llm.model || "no model configured")}</p>
  ${table(["agent", "calls", "failed", "prompt tokens", "completion tokens", "last"], (llm.usage || []).map((u) => [
    esc(u.agent), esc(u.calls), esc(u.failed), esc(u.prompt_tokens), esc(u.completion_tokens), esc(when(u.last_ms))]))}
  <h2>Budgets today</h2><pre>${esc(JSON.stringify(budgets.budgets || budgets, null, 1)).slice(0, 4000)}</pre>`;
}

async function tradingPage() {
  const [portfolio, orders, gate, performance] = await Promise.all([
    api("/v1/portfolio"), api("/v1/orders?limit=50"), api("/v1/risk?limit=20"), api("/v1/performance"),
  ]);
  const curve = performance.curve || [];
  const risk = gate.risk || {};
  setTimeout(() => chart("equity", curve.map((p) => p.day), [
    { label: "equity", data: curve.map((p) => p.equity) },
  ]));
  setTimeout(() => chart("drawdown", curve.map((p) => p.day), [
    { label: "drawdown", data: (performance.drawdown || []).map((d) => -d) },
  ]));
  const m = performance.metrics || {};
  return `<h1>Trading</h1>
  <p class="cards"><span>as of ${esc(portfolio.as_of)}</span><span>equity ${esc(portfolio.equity?.toFixed?.(2))}</span>
    <span>cash ${esc(portfolio.cash?.toFixed?.(2))}</span>
    <span>risk <b id="risk-state">${esc(risk.state)}</b> ${esc(risk.reason)}</span>
    <span>Sharpe ${esc(m.sharpe?.toFixed?.(2))}</span><span>max drawdown ${esc(m.max_drawdown?.toFixed?.(3))}</span>
    ${button("Kill switch", "/v1/risk", { body: { action: "kill" }, confirm: "Halt all trading now?" }).replace("<button", '<button id="kill"')}
    ${button("Resume", "/v1/risk", { body: { action: "resume" } }).replace("<button", '<button id="resume"')}</p>
  <div class="chart"><canvas id="equity"></canvas></div><div class="chart"><canvas id="drawdown"></canvas></div>
  <h2>Positions</h2>${table(["symbol", "quantity", "average price", "price", "market value", "unrealised P&L"], (portfolio.positions || []).map((p) => [
    esc(p.symbol), esc(p.quantity), esc(p.average_price), esc(p.price), esc(p.market_value), esc(p.unrealized_pnl)]))}
  <h2>Orders</h2>${table(["id", "agent", "symbol", "side", "quantity", "status", "filled", "price"], (orders.orders || []).map((o) => [
    esc(o.id), esc(o.agent), esc(o.symbol), esc(o.side), esc(o.quantity), esc(o.status), esc(o.filled_quantity), esc(o.fill_price)]))}
  <h2>Refusals</h2>${table(["agent", "symbol", "side", "code", "message"], (gate.refusals || []).map((r) => [
    esc(r.agent), esc(r.symbol), esc(r.side), esc(r.code), esc(r.message)]))}
  <h2>Backtests</h2>${table(["run"], ((await api("/v1/backtests").catch(() => ({}))).backtests || []).slice(0, 20).map((id) => [
    `<a href="#backtest/${esc(id)}">${esc(id)}</a>`]))}`;
}

async function backtestPage(id) {
  const run = await api(`/v1/backtests/${encodeURIComponent(id)}`);
  const report = run.report || {};
  const curve = report.equity || [];
  setTimeout(() => chart("bt-equity", curve.map((p) => p.day), [
    { label: "equity", data: curve.map((p) => p.equity) },
  ]));
  setTimeout(() => chart("bt-drawdown", curve.map((p) => p.day), [
    { label: "drawdown", data: curve.map((p) => -p.drawdown) },
  ]));
  const m = report.metrics || {};
  const b = report.benchmark || {};
  return `<h1>Backtest ${esc(id)}</h1>
  <p class="cards"><span>${esc(run.state)}</span><span>${esc(report.agent)} v${esc(report.version)}</span>
    <span>${esc((report.symbols || []).join(", "))} ${esc(report.from)} → ${esc(report.to)}</span>
    <span>return ${esc(m.total_return?.toFixed?.(3))} (buy and hold ${esc(b.total_return?.toFixed?.(3))})</span>
    <span>Sharpe ${esc(m.sharpe?.toFixed?.(2))}</span><span>max drawdown ${esc(m.max_drawdown?.toFixed?.(3))}</span>
    <span>${esc(run.error ? JSON.stringify(run.error) : "")}</span></p>
  <div class="chart"><canvas id="bt-equity"></canvas></div><div class="chart"><canvas id="bt-drawdown"></canvas></div>
  <h2>Trade log</h2>${table(["day", "kind", "agent", "symbol", "side", "quantity", "price", "reason"], (report.trades || []).slice(0, 200).map((t) => [
    esc(t.day), esc(t.kind), esc(t.agent), esc(t.symbol), esc(t.side), esc(t.quantity), esc(t.price), esc(t.reason ?? t.code)]))}`;
}

async function researchPage() {
  const [tracks, results, tasks] = await Promise.all([
    all("/v1/research/tracks", "tracks"), api("/v1/research/results?limit=30"), api("/v1/research/tasks?limit=30"),
  ]);
  return `<h1>Research</h1>
  ${table(["track", "agent", "every", "runs", "failures", "last result", "last failure", "next run"], (tracks.tracks || []).map((t) => [
    esc(t.specialisation), esc(t.agent), esc(t.every_ms ? `${t.every_ms / 1000} s` : ""), esc(t.runs_ok), esc(t.version_failures),
    esc(t.last_result ? t.last_result.thesis : ""), esc(t.last_failure ? t.last_failure.message : ""), esc(when(t.next_run_ms))]))}
  <h2>Tasks</h2>
  ${table(["when", "from", "task"], (tasks.tasks || []).map((t) => [
    esc(when(t.at_ms)), esc(t.source), `<code>${esc(JSON.stringify(t.payload ?? t)).slice(0, 300)}</code>`]))}
  <h2>Latest results</h2>
  ${table(["track", "as of", "status", "confidence", "thesis", "evidence"], (results.results || []).map((r) => [
    esc(r.track), esc(r.as_of), esc(r.status), esc(r.confidence), esc(r.thesis),
    `<details><summary>${esc((r.evidence || []).length)} figures</summary><pre>${esc(JSON.stringify(r.evidence, null, 2))}</pre></details>`]))}`;
}

async function promptsPage() {
  const [prompts, experiments] = await Promise.all([all("/v1/prompts", "prompts"), api("/v1/experiments")]);
  return `<h1>Prompts</h1>
  ${table(["prompt", "owner", "versions", "labels"], (prompts.prompts || []).map((p) => [
    esc(p.name), esc(p.owner), esc(p.versions), esc(JSON.stringify(p.labels))]))}
  <h2>Experiments</h2>
  ${table(["id", "prompt", "variants", "state", ""], (experiments.experiments || []).map((e) => [
    esc(e.id), esc(e.prompt), esc(JSON.stringify(e.body.variants)), esc(e.state),
    e.state === "running" ? button("Stop", `/v1/experiments/${e.id}/stop`) : ""]))}`;
}

const PAGES = {
  status: statusPage,
  agent: agentPage,
  alerts: alertsPage,
  governance: governancePage,
  changes: changesPage,
  edit: editPage,
  backtest: backtestPage,
  performance: performancePage,
  trading: tradingPage,
  research: researchPage,
  prompts: promptsPage,
};

let rendering = null;

async function render() {
  const [name, ...args] = (location.hash.slice(1) || "status").split("/").map(decodeURIComponent);
  const view = PAGES[name] || statusPage;
  const started = performance.now();
  const mine = (rendering = Symbol(name));
  try {
    const html = await view(...args);
    if (rendering !== mine) return;
    while (charts.length) charts.pop().destroy();
    page.innerHTML = html;
    page.dataset.page = name;
    page.dataset.renderedMs = String(Math.round(performance.now() - started));
    // Milliseconds from navigation to the first page drawn: what the scale benchmark reads.
    if (!page.dataset.firstRenderMs) page.dataset.firstRenderMs = String(Math.round(performance.now()));
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("here", a.getAttribute("href") === `#${name}`);
  } catch (e) {
    if (!(e instanceof Unauthorized)) page.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

// Pages redrawn when events arrive: not the ones read at leisure (changes, an edit, a
// backtest), and never while the person is typing (a reason, a token).
const LIVE_PAGES = new Set(["status", "agent", "alerts", "governance", "performance", "trading", "research", "prompts"]);

function redrawable() {
  const typing = [...document.querySelectorAll("input")].some((i) => i === document.activeElement || i.value);
  return LIVE_PAGES.has(page.dataset.page) && !typing && login.hidden;
}

// Live updates: the daemon's event stream (read with the token, which EventSource cannot
// send), re-rendering the page a moment after events arrive; polling every 10 s without it.
let live = false;

async function stream() {
  if (live || !token()) return;
  live = true;
  const dot = document.getElementById("live");
  try {
    const response = await fetch("/v1/stream", { headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" } });
    if (!response.ok || !response.body) throw new Error(String(response.status));
    dot.textContent = "●";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (decoder.decode(value, { stream: true }).includes("data:") && !pending) {
        pending = setTimeout(() => { pending = null; if (redrawable()) render(); }, 1000);
      }
    }
  } catch (_) { /* fall back to polling */ }
  dot.textContent = "○";
  live = false;
  setTimeout(stream, 10_000);
}

setInterval(() => { if (!live && redrawable()) render(); }, 10_000);
window.addEventListener("hashchange", () => { offsets.agents = 0; render(); });
render();
stream();
