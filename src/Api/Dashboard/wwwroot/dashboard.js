// Nightshift's dashboard: polls the silo's API every second and redraws. No framework, no CDN.
"use strict";

const REFRESH_MS = 1000;
const FAILURES_EVERY_MS = 5000;
const LISTED_BATCHES = 12;

const state = {
  lastEvent: 0,
  batchCards: new Map(),
  poolCards: new Map(),
  failures: new Map(), // batch id -> { failed, at }
};

const $ = (selector, root = document) => root.querySelector(selector);

function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function api(path, init) {
  const response = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" }, ...init });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch { /* not a problem document */ }
    throw new Error(`${response.status} ${detail}`);
  }
  return response.json();
}

const number = value => (value ?? 0).toLocaleString("en-US");

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "—";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

const secondsUntil = iso => iso ? (Date.parse(iso) - Date.now()) / 1000 : null;
const secondsSince = iso => iso ? (Date.now() - Date.parse(iso)) / 1000 : null;

function cost(value) {
  return typeof value === "number" ? `$${value.toFixed(value < 1 ? 4 : 2)}` : "—";
}

function meter(used, budget) {
  if (!budget) return `${number(used)} <span class="empty">(no budget)</span>`;
  const share = Math.min(1, used / budget);
  return `${number(used)} / ${number(budget)}<div class="meter${share > 0.8 ? " high" : ""}"><span style="width:${(share * 100).toFixed(1)}%"></span></div>`;
}

// A half-circle gauge: running against maxRunning, with the cap in force marked.
function gauge(running, max, cap) {
  const angle = share => Math.PI * (1 - Math.min(1, Math.max(0, share)));
  const point = share => [50 + 40 * Math.cos(angle(share)), 50 - 40 * Math.sin(angle(share))];
  const [x, y] = point(max ? running / max : 0);
  const [cx, cy] = point(max ? cap / max : 0);
  const over = running > cap;
  return `<svg width="100" height="58" viewBox="0 0 100 58" role="img" aria-label="${running} of ${max} running">
    <path d="M10 50 A40 40 0 0 1 90 50" fill="none" stroke="#2a3550" stroke-width="9"/>
    ${running > 0 ? `<path d="M10 50 A40 40 0 0 1 ${x.toFixed(2)} ${y.toFixed(2)}" fill="none" stroke="${over ? "#ff5d5d" : "#4c9aff"}" stroke-width="9"/>` : ""}
    ${cap < max ? `<circle cx="${cx.toFixed(2)}" cy="${cy.toFixed(2)}" r="4" fill="#ffb84d"/>` : ""}
  </svg>`;
}

function renderPools(pools, history) {
  const root = $("#pools");
  if (pools.length === 0) { root.innerHTML = `<p class="empty">No pool yet.</p>`; state.poolCards.clear(); return; }
  $(".empty", root)?.remove();
  const seen = new Set();
  for (const pool of pools) {
    seen.add(pool.name);
    let card = state.poolCards.get(pool.name);
    if (!card) {
      card = document.createElement("article");
      card.className = "card pool";
      card.dataset.pool = pool.name;
      root.append(card);
      state.poolCards.set(pool.name, card);
    }
    const cooldown = secondsUntil(pool.cooldownUntil);
    const recovering = secondsUntil(pool.recoveringUntil);
    const rate = pool.rateControl;
    const condition = cooldown > 0 ? `<span class="badge cooldown">held ${duration(cooldown)}</span>`
      : recovering > 0 ? `<span class="badge cooldown">recovering ${duration(recovering)}</span>`
      : secondsUntil(rate?.slowStartUntil) > 0 ? `<span class="badge cooldown">slow start</span>`
      : pool.effectiveCap < pool.maxRunning ? `<span class="badge cooldown">cap lowered by 429s</span>`
      : `<span class="badge ok">open</span>`;
    const budget = (b) => b ? ` <span class="empty">(${b.source}, ${number(Math.max(0, Math.floor(b.available)))} of ${number(Math.floor(b.burst))} free)</span>` : "";
    card.dataset.running = pool.running;
    card.dataset.cap = pool.maxRunning;
    card.innerHTML = `
      <h3>${escapeHtml(pool.name)} ${condition}</h3>
      <div class="gauge">${gauge(pool.running, pool.maxRunning, pool.effectiveCap)}
        <div><div class="figure"><span class="running">${number(pool.running)}</span> / ${number(pool.maxRunning)}</div>
        <div class="empty">running / cap${pool.effectiveCap < pool.maxRunning ? ` (now ${pool.effectiveCap})` : ""}</div></div></div>
      <dl>
        <dt>queued</dt><dd class="queued">${number(pool.queued)}</dd>
        <dt>429s / min</dt><dd>${number(history.rateLimitedLastMinute?.[pool.name] ?? 0)} <span class="empty">(${number(pool.rateLimited)} in all)</span></dd>
        <dt>requests / min</dt><dd>${meter(pool.requestsLastMinute, rate?.requests?.perMinute ?? pool.rpm)}${budget(rate?.requests)}</dd>
        <dt>tokens / min</dt><dd>${meter(pool.tokensLastMinute, rate?.tokens?.perMinute ?? pool.tpm)}${budget(rate?.tokens)}</dd>
        ${"cost" in pool ? `<dt>cost</dt><dd>${cost(pool.cost)}</dd>` : ""}
        ${limits(pool.limits)}
        <dt>model</dt><dd>${escapeHtml(pool.provider)} · ${escapeHtml(pool.model)}</dd>
        <dt>batches</dt><dd>${number(pool.batches)}</dd>
        <dt>on silo</dt><dd>${escapeHtml(pool.silo)}</dd>
      </dl>`;
  }
  for (const [name, card] of state.poolCards) {
    if (!seen.has(name)) { card.remove(); state.poolCards.delete(name); }
  }
}

// The teams' and users' limits: running against each, in all and per model.
function limits(stack) {
  const rows = [...Object.entries(stack?.teams ?? {}).map(([name, l]) => ["team", name, l]), ...Object.entries(stack?.users ?? {}).map(([name, l]) => ["user", name, l])];
  if (rows.length === 0) return "";
  const line = ([kind, name, l]) => {
    const models = Object.entries(l.models ?? {}).map(([model, m]) => `${escapeHtml(model)} ${number(l.runningByModel?.[model] ?? 0)}${m.maxRunning != null ? ` / ${number(m.maxRunning)}` : ""}`);
    return `<li>${kind} <strong>${escapeHtml(name)}</strong>: ${number(l.running)}${l.maxRunning != null ? ` / ${number(l.maxRunning)}` : ""} running${models.length ? ` · ${models.join(" · ")}` : ""}${l.weight != null ? ` · weight ${l.weight}` : ""}</li>`;
  };
  return `<dt>limits</dt><dd><ul class="limits">${rows.map(line).join("")}</ul></dd>`;
}

function chart(points) {
  if (!points || points.length < 2) return `<svg class="chart" viewBox="0 0 300 90"><text x="150" y="50" fill="#8c9ab8" font-size="11" text-anchor="middle">collecting…</text></svg>`;
  const max = Math.max(1, ...points.map(p => p.itemsPerSecond));
  const first = Date.parse(points[0].at), span = Math.max(1, Date.parse(points[points.length - 1].at) - first);
  const xy = points.map(p => [((Date.parse(p.at) - first) / span) * 296 + 2, 86 - (p.itemsPerSecond / max) * 80]);
  const line = xy.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`).join(" ");
  return `<svg class="chart" viewBox="0 0 300 90" preserveAspectRatio="none">
    <path d="${line} L${xy[xy.length - 1][0].toFixed(1)} 88 L${xy[0][0].toFixed(1)} 88 Z" fill="#4c9aff33"/>
    <path d="${line}" fill="none" stroke="#4c9aff" stroke-width="1.5" vector-effect="non-scaling-stroke"/>
    <text x="4" y="12" fill="#8c9ab8" font-size="10">${max.toFixed(1)}/s</text></svg>`;
}

function actions(batch) {
  const live = batch.state === "running" || batch.state === "paused";
  return `${batch.state === "running" ? `<button data-action="pause">Pause</button>` : ""}
    ${batch.state === "paused" ? `<button data-action="resume">Resume</button>` : ""}
    <button data-action="cancel" class="danger"${live ? "" : " disabled"}>Cancel</button>`;
}

function batchCard(id) {
  let card = state.batchCards.get(id);
  if (card) return card;
  card = document.createElement("article");
  card.className = "card batch";
  card.dataset.batchId = id;
  card.innerHTML = `
    <div class="batch-head"><h3>${escapeHtml(id)}</h3><span class="badge state"></span><span class="actions"></span></div>
    <div class="bar"><span class="succeeded"></span><span class="failed"></span><span class="cancelled"></span><span class="running"></span></div>
    <div class="progress-text"></div>
    <div class="batch-body"><dl class="stats"></dl><div><div class="chart-label">throughput, last hour</div><div class="throughput"></div></div></div>
    <details class="failures-box" hidden><summary></summary><ol class="failures"></ol></details>`;
  state.batchCards.set(id, card);
  return card;
}

function renderBatch(batch, history) {
  const card = batchCard(batch.id);
  const c = batch.counts;
  const done = c.succeeded + c.failed + c.cancelled;
  const share = n => batch.total ? `${(n / batch.total * 100).toFixed(2)}%` : "0%";
  card.dataset.state = batch.state;
  card.dataset.done = done;
  card.dataset.total = batch.total;
  const badge = $(".state", card);
  badge.textContent = batch.state;
  badge.className = `badge state ${batch.state}`;
  if ($(".actions", card).dataset.state !== batch.state) {
    $(".actions", card).innerHTML = actions(batch);
    $(".actions", card).dataset.state = batch.state;
  }
  $(".bar .succeeded", card).style.width = share(c.succeeded);
  $(".bar .failed", card).style.width = share(c.failed);
  $(".bar .cancelled", card).style.width = share(c.cancelled);
  $(".bar .running", card).style.width = share(c.running);
  $(".progress-text", card).innerHTML = `<strong class="done">${number(done)}</strong> / ${number(batch.total)} done (${share(done)})`;
  const tokens = `${number(batch.inputTokens)} in · ${number(batch.outputTokens)} out${batch.cachedTokens != null ? ` · ${number(batch.cachedTokens)} cached` : ""}`;
  $(".stats", card).innerHTML = `
    <dt>pool</dt><dd>${escapeHtml(batch.pool)}</dd>
    <dt>states</dt><dd>${number(c.pending)} pending · ${number(c.running)} running · ${number(c.succeeded)} ok · ${number(c.failed)} failed · ${number(c.cancelled)} cancelled</dd>
    <dt>throughput</dt><dd>${batch.itemsPerSecond.toFixed(1)} items/s</dd>
    <dt>ETA</dt><dd>${batch.finishedAt ? `finished ${new Date(batch.finishedAt).toLocaleTimeString()}` : batch.eta ? `${duration(secondsUntil(batch.eta))} (${new Date(batch.eta).toLocaleTimeString()})` : "—"}</dd>
    <dt>elapsed</dt><dd>${duration(((batch.finishedAt ? Date.parse(batch.finishedAt) : Date.now()) - Date.parse(batch.createdAt)) / 1000)}</dd>
    <dt>tokens</dt><dd>${tokens}</dd>
    <dt>cost</dt><dd class="cost">${cost(batch.cost)}</dd>
    ${batch.maybeBilled ? `<dt>maybe billed</dt><dd class="maybe-billed">${number(batch.maybeBilled.calls)} calls cut off · ~${number(batch.maybeBilled.estimatedTokens)} tokens · ${cost(batch.maybeBilled.estimatedCost)}</dd>` : ""}`;
  $(".throughput", card).innerHTML = chart(history.throughput?.[batch.id]);
  const box = $(".failures-box", card);
  box.hidden = c.failed === 0;
  $("summary", box).textContent = `${number(c.failed)} failed — reasons`;
}

async function refreshFailures(batch) {
  const known = state.failures.get(batch.id);
  if (batch.counts.failed === 0 || (known && (known.failed === batch.counts.failed || Date.now() - known.at < FAILURES_EVERY_MS))) return;
  state.failures.set(batch.id, { failed: batch.counts.failed, at: Date.now() });
  const failures = await api(`/v1/batches/${encodeURIComponent(batch.id)}/failures?limit=20`);
  const card = state.batchCards.get(batch.id);
  if (!card) return;
  $(".failures", card).innerHTML = failures.map(f =>
    `<li><code>${escapeHtml(f.customId)}</code>${f.statusCode ? ` (${f.statusCode})` : ""}: ${escapeHtml(f.error ?? "no reason recorded")}</li>`).join("");
}

function renderBatches(batches, history) {
  const root = $("#batches");
  if (batches.length === 0) { root.innerHTML = `<p class="empty">No batch yet.</p>`; state.batchCards.clear(); return; }
  $(".empty", root)?.remove();
  const order = batches.map(b => b.id);
  for (const batch of batches) renderBatch(batch, history);
  for (const [id, card] of state.batchCards) {
    if (!order.includes(id)) { card.remove(); state.batchCards.delete(id); }
  }
  order.forEach((id, i) => { if (root.children[i] !== state.batchCards.get(id)) root.insertBefore(state.batchCards.get(id), root.children[i] ?? null); });
}

function renderSilos(silos) {
  $("#silos tbody").innerHTML = silos.length === 0 ? `<tr><td colspan="6" class="empty">No silo.</td></tr>` : silos.map(s => `
    <tr data-silo="${escapeHtml(s.address)}"><td>${escapeHtml(s.siloName ?? s.address)}</td>
    <td><span class="badge ${escapeHtml(s.status)}">${s.status === "active" ? "alive" : escapeHtml(s.status)}</span></td>
    <td>${s.status === "dead" ? "—" : duration(secondsSince(s.iAmAliveTime + (s.iAmAliveTime.endsWith("Z") ? "" : "Z"))) + " ago"}</td>
    <td>${number(s.itemsInFlight)}</td>
    <td>${s.status === "dead" ? "—" : duration(secondsSince(s.startTime + (s.startTime.endsWith("Z") ? "" : "Z")))}</td>
    <td>${escapeHtml(s.hostName)}</td></tr>`).join("");
}

function renderEvents(events) {
  if (events.length === 0) return;
  state.lastEvent = events[events.length - 1].sequence;
  const list = $("#events");
  $(".empty", list)?.remove();
  for (const e of events) {
    const item = document.createElement("li");
    item.innerHTML = `<time>${new Date(e.at).toLocaleTimeString()}</time><span class="badge kind ${escapeHtml(e.kind)}">${escapeHtml(e.kind)}</span>${escapeHtml(e.message)}`;
    list.prepend(item);
  }
  while (list.children.length > 200) list.lastElementChild.remove();
}

async function refresh() {
  const status = $("#status");
  try {
    const [silos, pools, page, events, history] = await Promise.all([
      api("/v1/silos"), api("/v1/pools"), api(`/v1/batches?limit=${LISTED_BATCHES}`),
      api(`/v1/events?after=${state.lastEvent}`), api("/v1/dashboard/history"),
    ]);
    const batches = await Promise.all(page.items.map(b => api(`/v1/batches/${encodeURIComponent(b.id)}`)));
    renderPools(pools, history);
    renderBatches(batches, history);
    renderSilos(silos);
    renderEvents(events);
    await Promise.all(batches.map(refreshFailures));
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove("error");
  } catch (error) {
    status.textContent = `not updated: ${error.message}`;
    status.classList.add("error");
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

$("#batches").addEventListener("click", async event => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest("[data-batch-id]").dataset.batchId;
  const action = button.dataset.action;
  if (action === "cancel" && !confirm(`Cancel batch ${id}? Its calls in flight are aborted.`)) return;
  button.disabled = true;
  try {
    renderBatch(await api(`/v1/batches/${encodeURIComponent(id)}/${action}`, { method: "POST" }), { throughput: {} });
  } catch (error) {
    $("#status").textContent = `${action} failed: ${error.message}`;
    $("#status").classList.add("error");
    button.disabled = false;
  }
});

refresh();
