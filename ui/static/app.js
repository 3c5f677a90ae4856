// mstream dashboard: a small single-page app over the REST API (no build step).
//
// Views (hash routes):
//   #/                 overview: every job (state, times, live counters) and every service
//   #/jobs/<name>      one job: pipeline, counters, checkpoints, stop / restart / delete
//   #/new-job          create a job from a JSON connector definition
//   #/new-service      create a service from a JSON service definition
//   #/resources        browse a service's resources: samples and fields
//   #/playground       run a transform script on a sample, keep test cases
//   #/cluster          instances sharing MongoDB state stores, and the job leases
//
// All API data is put into the page with textContent (never innerHTML), so nothing the API
// returns can inject markup. Services arrive with their secrets already masked.

const POLL_MS = 2000;
const TOKEN_KEY = "mstream.api-token";
const HISTORY_POINTS = 40; // throughput samples kept per job for the sparklines
const STOPPABLE = new Set(["created", "starting", "running", "retrying"]);
const DELETABLE = new Set(["stopped", "completed", "failed"]);

/**
 * A `?token=` in the address (the link mstream prints when it generated a token) goes to
 * sessionStorage and is stripped from the address bar, so it stays out of the history,
 * bookmarks and screenshots.
 */
function adoptTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
}
adoptTokenFromUrl();

// ---------------------------------------------------------------------------------------
// DOM helpers

/**
 * Create an element. `attrs` keys: `class`, `text`, `on<event>` (listener), boolean
 * properties (`disabled`, `hidden`, `checked`, ...), anything else becomes an attribute.
 * Children may be nodes, strings, or null/false (skipped); arrays are flattened.
 */
function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (["disabled", "hidden", "checked", "required", "open"].includes(key)) {
      el[key] = Boolean(value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Set text only when it changed (keeps screen readers and selections calm). */
function setText(el, text) {
  const value = String(text ?? "");
  if (el.textContent !== value) el.textContent = value;
}

const numberFormat = new Intl.NumberFormat();
const rateFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

function fmtNumber(n) {
  return typeof n === "number" ? numberFormat.format(n) : "–";
}

function fmtRate(n) {
  return typeof n === "number" ? `${rateFormat.format(n)} ev/s` : "–";
}

/** A Unix time (seconds) as local date and time; "–" when absent. */
function fmtTime(unix) {
  if (typeof unix !== "number") return "–";
  return new Date(unix * 1000).toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** A Unix time as a local time of day (the date only when it is not today). */
function fmtClock(unix) {
  if (typeof unix !== "number") return "–";
  const date = new Date(unix * 1000);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : fmtTime(unix);
}

/** A <time> element for a Unix time, with the ISO form in `datetime`. */
function timeEl(unix) {
  const el = h("time");
  updateTime(el, unix);
  return el;
}

function updateTime(el, unix) {
  setText(el, fmtTime(unix));
  if (typeof unix === "number") el.setAttribute("datetime", new Date(unix * 1000).toISOString());
  else el.removeAttribute("datetime");
}

/** While a job is retrying: its attempt, when the next one starts and the error. */
function retryText(job) {
  const retry = job.state === "retrying" ? job.retry : null;
  if (!retry) return "";
  const wait = Math.max(0, Math.round(retry.next_try_at - Date.now() / 1000));
  return `attempt ${retry.attempt} of ${retry.of}, next in ${wait}s: ${retry.last_error}`;
}

/** The badge that shows a job state (text, not colour alone). */
function stateBadge(state) {
  const el = h("span", { class: "badge" });
  updateBadge(el, state);
  return el;
}

function updateBadge(el, state) {
  const value = state || "unknown";
  el.className = `badge state-${value}`;
  el.dataset.state = value;
  setText(el, value);
}

function formatJson(value) {
  return JSON.stringify(value, null, 2);
}

/** A short text for any option value (objects as compact JSON). */
function valueText(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// ---------------------------------------------------------------------------------------
// Notices (action results) and the connection indicator

const noticesEl = () => document.getElementById("notices");

/**
 * Show a message at the top of the page. Errors stay until dismissed (role="alert");
 * other messages fade after a few seconds (role="status").
 */
function notify(message, kind = "ok", fields = null) {
  const box = h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("p", { class: "notice-text", text: message }),
    fieldList(fields),
    h("button", {
      type: "button",
      class: "link notice-close",
      "aria-label": "Dismiss message",
      text: "×",
      onclick: () => box.remove(),
    }),
  );
  noticesEl().append(box);
  if (kind !== "error") setTimeout(() => box.remove(), 6000);
  return box;
}

function clearNotices() {
  noticesEl().replaceChildren();
}

/** A list of field errors ({"sinks[0].output_encoding": "..."}), or null. */
function fieldList(fields) {
  if (!fields || typeof fields !== "object" || !Object.keys(fields).length) return null;
  return h(
    "ul",
    { class: "field-errors" },
    Object.entries(fields).map(([field, problem]) =>
      h("li", {}, h("code", { text: field }), ": ", String(problem)),
    ),
  );
}

let connectionState = "";

function setConnection(state) {
  if (state === connectionState) return;
  connectionState = state;
  const el = document.getElementById("conn");
  const labels = {
    live: "Live",
    lost: "Connection lost, retrying…",
    auth: "Token needed",
  };
  el.className = `conn conn-${state}`;
  setText(el, labels[state] || "");
}

function markUpdated() {
  setText(
    document.getElementById("updated"),
    `Updated ${new Date().toLocaleTimeString()}`,
  );
}

// ---------------------------------------------------------------------------------------
// API client: JSON in and out, bearer token on 401

/** An error answer of the API: {"error": {"status", "message", "fields"?}}. */
class ApiError extends Error {
  constructor(status, message, fields = null) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

let serverOffsetMs = 0; // server clock minus this browser's, when they differ by > 2 s

/**
 * Heartbeat ages are differences between the server's clock and now: the HTTP `Date`
 * header (whole seconds) corrects a browser clock that is clearly off, and is ignored
 * otherwise (its rounding would make the ages jitter).
 */
function noteServerClock(header) {
  const server = header ? Date.parse(header) : NaN;
  if (Number.isNaN(server)) return;
  const offset = server - Date.now();
  serverOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
}

/** Now, in Unix seconds, on the server's clock. */
function serverNow() {
  return (Date.now() + serverOffsetMs) / 1000;
}

/** How long ago a Unix time was, as "4s ago" / "3m ago" ("in 5s" for a future time). */
function fmtAgo(unix) {
  if (typeof unix !== "number") return "–";
  const seconds = Math.round(serverNow() - unix);
  const span = (s) => (s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`);
  return seconds >= 0 ? `${span(seconds)} ago` : `in ${span(-seconds)}`;
}

/** Where a job runs in cluster mode ("on node-1", "on node-0, node-1"); "" otherwise. */
function placementText(job) {
  if (!job || !("instance" in job) || !job.instance) return "";
  const owners = Array.isArray(job.instances) && job.instances.length ? job.instances : [job.instance];
  return `on ${[...new Set(owners)].join(", ")}`;
}

let tokenPrompt = null; // the open token dialog's promise, shared by concurrent requests
let tokenDeclined = false; // the user cancelled: don't ask again until they choose to

/**
 * Call the API. Paths are relative ("jobs"), so the dashboard also works behind a proxy
 * under a path prefix. On 401 the token dialog is shown (once, however many requests
 * failed) and the request is repeated with the new token.
 */
async function api(method, path, body) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      setConnection("lost");
      throw new ApiError(0, "The mstream service does not answer (network error).");
    }
    if (response.status === 401) {
      setConnection("auth");
      // A token that another request already replaced: just try again with the new one.
      if (token && sessionStorage.getItem(TOKEN_KEY) !== token) continue;
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      if (!tokenDeclined && (await askToken(token ? "That token was refused." : ""))) continue;
      throw new ApiError(401, "The API needs a bearer token.");
    }
    setConnection("live");
    noteServerClock(response.headers.get("Date"));
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = data && data.error;
      throw new ApiError(
        response.status,
        (error && error.message) || `${response.status} ${response.statusText}`,
        error && error.fields,
      );
    }
    return data;
  }
  throw new ApiError(401, "The API needs a bearer token.");
}

/**
 * Follow a Server-Sent Events endpoint with fetch (EventSource cannot send the token):
 * calls onEntry(data) for every `log` event until signal aborts. Reconnects after a
 * dropped connection, 2 s later.
 */
async function followEvents(path, onEntry, signal) {
  while (!signal.aborted) {
    try {
      const token = sessionStorage.getItem(TOKEN_KEY);
      const headers = { Accept: "text/event-stream" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const response = await fetch(path, { headers, signal, cache: "no-store" });
      if (!response.ok || !response.body) throw new Error(`${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = pending.indexOf("\n\n")) >= 0) {
          const frame = pending.slice(0, cut);
          pending = pending.slice(cut + 2);
          const lines = frame.split("\n");
          const event = (lines.find((l) => l.startsWith("event: ")) || "event: message").slice(7);
          const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (event === "log" && data) onEntry(JSON.parse(data));
        }
      }
    } catch (err) {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** The job's kept dead letters: reasons grouped, the newest listed, replay and discard. */
function deadLetterPanel(jobName, onChange) {
  const summary = h("p", { class: "hint", id: "dead-letter-summary" });
  const groups = h("ul", { class: "reasons", id: "dead-letter-reasons" });
  const body = h("tbody");
  const table = h("table", { class: "grid", id: "dead-letters-table" },
    h("thead", {}, h("tr", {},
      ["Id", "Time", "Stage", "Step", "Reason", "Payload", ""].map((t) => h("th", { scope: "col", text: t })))),
    body);
  const replayAll = h("button", { type: "button", id: "replay-dead-letters", text: "Replay all" });
  const discardAll = h("button", { type: "button", id: "discard-dead-letters", class: "danger", text: "Discard all" });
  const result = h("p", { class: "hint", id: "replay-result", role: "status" });
  const path = `jobs/${seg(jobName)}/dead-letters`;

  async function run(label, method, sub, body) {
    replayAll.disabled = discardAll.disabled = true;
    try {
      const answer = await api(method, sub ? `${path}/${sub}` : path, body);
      if (label === "replay") {
        setText(result, `Replayed ${answer.replayed}: ${answer.delivered} delivered, ` +
          `${answer.rejected_again} refused again${answer.error ? ` (stopped: ${answer.error})` : ""}; ` +
          `${answer.remaining} kept.`);
      } else setText(result, `Discarded ${answer.discarded}.`);
      await refresh();
      onChange();
    } catch (err) {
      setText(result, `${label} failed: ${err.message}`);
    } finally {
      replayAll.disabled = discardAll.disabled = false;
    }
  }
  replayAll.addEventListener("click", () => run("replay", "POST", "replay", {}));
  discardAll.addEventListener("click", async () => {
    if (await confirmAction("Discard dead letters", `Discard every kept dead letter of "${jobName}"?`, "Discard")) {
      run("discard", "DELETE");
    }
  });

  async function refresh() {
    const page = await api("GET", `${path}?limit=50`);
    const items = page.dead_letters || [];
    setText(summary, page.total ? `${page.total} kept` + (page.dropped ? `, ${page.dropped} older ones dropped` : "") : "None kept.");
    const counts = new Map();
    for (const r of items) {
      const key = `${r.stage}: ${r.reason.slice(0, 120)}`;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    groups.replaceChildren(...[...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => h("li", { text: `${n} × ${k}` })));
    table.hidden = !items.length;
    replayAll.hidden = discardAll.hidden = !items.length;
    body.replaceChildren(...items.map((r) =>
      h("tr", { "data-dead-letter": String(r.id) },
        td("Id", String(r.id)), td("Time", timeEl(r.time)), td("Stage", r.stage), td("Step", r.step || ""),
        td("Reason", h("span", { class: "mono", text: r.reason })),
        td("Payload", h("code", { text: valueText(r.payload).slice(0, 200) })),
        td("", h("button", { type: "button", class: "small", text: "Replay",
          onclick: () => run("replay", "POST", "replay", { ids: [r.id] }) })))));
  }
  return {
    element: h("div", {}, summary, groups, h("div", { class: "actions" }, replayAll, discardAll), result,
      h("div", { class: "table-wrap" }, table)),
    refresh,
  };
}

/** A live log panel: the newest entries of a job, following as they are logged. */
function logPanel(jobName, keep = 200) {
  const list = h("ol", { class: "log", id: "job-log", "aria-live": "polite" });
  const empty = h("p", { class: "empty", text: "No log lines for this job yet." });
  let controller = null;
  function add(entry) {
    empty.hidden = true;
    const stamp = entry.timestamp ? entry.timestamp.slice(11, 23) : "";
    list.append(
      h("li", { class: `log-${entry.level}`, "data-id": String(entry.id) },
        h("time", { text: stamp }), " ",
        h("span", { class: "log-level", text: entry.level.toUpperCase() }), " ",
        h("span", { class: "log-message", text: entry.message })),
    );
    while (list.children.length > keep) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }
  return {
    element: h("div", {}, empty, list),
    start() {
      controller = new AbortController();
      followEvents(`logs/stream?job_name=${encodeURIComponent(jobName)}&initial=50`, add, controller.signal);
    },
    stop() {
      if (controller) controller.abort();
    },
  };
}

/**
 * Show the token dialog; resolves true when a token was entered, false when cancelled.
 * The token goes to sessionStorage and the input is cleared, so it is not left in the DOM.
 */
function askToken(problem = "") {
  if (tokenPrompt) return tokenPrompt;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  const cancel = document.getElementById("token-cancel");
  error.hidden = !problem;
  setText(error, problem);
  input.value = "";
  tokenPrompt = new Promise((resolve) => {
    const finish = (ok) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      input.value = "";
      if (dialog.open) dialog.close();
      tokenPrompt = null;
      tokenDeclined = !ok;
      if (!ok) showTokenNeeded();
      resolve(ok);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) {
        error.hidden = false;
        setText(error, "Enter the token.");
        input.focus();
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, value);
      finish(true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel); // Escape key
  });
  dialog.showModal();
  input.focus();
  return tokenPrompt;
}

/** After a cancelled token dialog: a notice with a button to open it again. */
function showTokenNeeded() {
  if (document.getElementById("token-needed")) return;
  const box = notify("This service needs an API token to show its data.", "error");
  box.id = "token-needed";
  box.insertBefore(
    h("button", {
      type: "button",
      class: "primary",
      text: "Enter token",
      onclick: async () => {
        box.remove();
        tokenDeclined = false;
        if (await askToken()) refreshNow();
      },
    }),
    box.querySelector(".notice-close"),
  );
}

/** A service's jobs, services... by name: path segment, encoded. */
function seg(name) {
  return encodeURIComponent(name);
}

// ---------------------------------------------------------------------------------------
// Throughput history (for the sparklines), kept in memory per job

const throughput = new Map();

function recordThroughput(job) {
  const rate = job.counters && job.counters.throughput_per_sec;
  if (typeof rate !== "number") return;
  const points = throughput.get(job.name) || [];
  points.push(rate);
  if (points.length > HISTORY_POINTS) points.shift();
  throughput.set(job.name, points);
}

/** An inline SVG line of the recent throughput of `name` (decorative: the number is shown). */
function sparkline(name, width = 96, height = 24) {
  const points = throughput.get(name) || [];
  const svg = h("svg:svg", {
    class: "spark",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    "aria-hidden": "true",
    focusable: "false",
  });
  svg.append(h("svg:line", { class: "spark-base", x1: 0, x2: width, y1: height - 1, y2: height - 1 }));
  if (points.length < 2) return svg;
  const max = Math.max(...points, 1);
  const step = width / (HISTORY_POINTS - 1);
  const offset = width - step * (points.length - 1);
  const coords = points
    .map((p, i) => `${(offset + i * step).toFixed(1)},${(height - 2 - (p / max) * (height - 4)).toFixed(1)}`)
    .join(" ");
  svg.append(h("svg:polyline", { points: coords, fill: "none", "stroke-width": "1.5" }));
  return svg;
}

/**
 * The last hour of a job as inline SVG: throughput (events/s, solid) and lag (seconds,
 * dashed), each scaled to its own maximum, which the legend states.
 */
function historyChart(points, width = 640, height = 160) {
  const svg = h("svg:svg", {
    class: "history-chart",
    id: "history-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "Throughput and lag over the last hour",
  });
  const pad = 4;
  svg.append(h("svg:line", { class: "chart-base", x1: 0, x2: width, y1: height - pad, y2: height - pad }));
  const now = Date.now() / 1000;
  const x = (t) => width - ((now - t) / 3600) * width;
  const series = (index, maxValue, cls) => {
    const coords = points
      .filter((p) => now - p[0] <= 3600)
      .map((p) => `${x(p[0]).toFixed(1)},${(height - pad - (p[index] / maxValue) * (height - 2 * pad)).toFixed(1)}`);
    if (coords.length > 1) svg.append(h("svg:polyline", { class: cls, points: coords.join(" "), fill: "none" }));
  };
  const maxRate = Math.max(1, ...points.map((p) => p[1]));
  const maxLag = Math.max(1, ...points.map((p) => p[2]));
  series(1, maxRate, "chart-rate");
  series(2, maxLag, "chart-lag");
  const legend = h("p", { class: "hint", id: "history-legend" },
    `Solid: events/s (top = ${fmtRate(maxRate)}); dashed: lag in seconds (top = ${fmtRate(maxLag)}); ` +
    `${points.length} point${points.length === 1 ? "" : "s"}, one every 10 s, last 60 min.`);
  return h("div", {}, svg, legend);
}

// ---------------------------------------------------------------------------------------
// Keyed table rows: update cells in place so that focus and selections survive polling

/**
 * Make `tbody` hold one row per item, in order. `build(item)` returns a new <tr> (it may
 * keep references on the row), `update(tr, item)` refreshes it.
 */
function syncRows(tbody, items, key, build, update) {
  const existing = new Map([...tbody.rows].map((tr) => [tr.dataset.key, tr]));
  let previous = null;
  for (const item of items) {
    const k = key(item);
    let tr = existing.get(k);
    if (tr) existing.delete(k);
    else {
      tr = build(item);
      tr.dataset.key = k;
    }
    update(tr, item);
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (tr !== wanted) tbody.insertBefore(tr, wanted);
    previous = tr;
  }
  for (const tr of existing.values()) tr.remove();
}

/**
 * A table cell with a label for the narrow (stacked) layout; the content is wrapped so that
 * the label and the content are the cell's only two grid items there.
 */
function td(label, ...children) {
  return cell("td", label, null, ...children);
}

function cell(tag, label, cls, ...children) {
  const attrs = { "data-label": label, class: cls };
  if (tag === "th") attrs.scope = "row";
  return h(tag, attrs, h("div", { class: "cell" }, ...children));
}

// ---------------------------------------------------------------------------------------
// Confirmation dialog

function confirmAction(title, text, action = "Delete") {
  const dialog = document.getElementById("confirm-dialog");
  setText(document.getElementById("confirm-title"), title);
  setText(document.getElementById("confirm-text"), text);
  setText(document.getElementById("confirm-yes"), action);
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });
}

// ---------------------------------------------------------------------------------------
// Overview

function overviewView() {
  let services = [];
  const jobsBody = h("tbody");
  const servicesBody = h("tbody");
  const jobsEmpty = h("p", { class: "empty", hidden: true },
    "No jobs yet. ", h("a", { href: "#/new-job", text: "Create a job" }), ".");
  const servicesEmpty = h("p", { class: "empty", hidden: true },
    "No services yet. ", h("a", { href: "#/new-service", text: "Create a service" }), ".");
  const summary = h("p", { class: "summary", id: "job-summary" });
  const loadError = h("div", { class: "error-box", role: "alert", hidden: true });

  const jobsTable = h(
    "table",
    { class: "grid", id: "jobs-table", "aria-labelledby": "jobs-heading" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Job", "State", "Started", "Stopped", "Events in", "Events out", "Errors",
          "Dead-lettered", "Throughput"].map((label) =>
          h("th", { scope: "col", class: /Events|Errors|Dead|Throughput/.test(label) ? "num" : null, text: label }),
        ),
      ),
    ),
    jobsBody,
  );

  const servicesTable = h(
    "table",
    { class: "grid", id: "services-table", "aria-labelledby": "services-heading" },
    h(
      "thead",
      {},
      h("tr", {}, ["Service", "Provider", "Origin", "Used by", "Settings", "Actions"].map(
        (label) => h("th", { scope: "col", text: label }),
      )),
    ),
    servicesBody,
  );

  function buildJobRow(job) {
    const cells = {
      link: h("a", { href: `#/jobs/${seg(job.name)}`, class: "job-link" }),
      where: h("span", { class: "where", hidden: true }),
      badge: stateBadge(job.state),
      reason: h("span", { class: "reason" }),
      started: h("time"),
      stopped: h("time"),
      in: h("span"),
      out: h("span"),
      errors: h("span"),
      dead: h("span"),
      rate: h("span", { class: "rate" }),
      spark: h("span", { class: "spark-box" }),
    };
    const tr = h(
      "tr",
      { class: "job-row", "data-job": job.name },
      cell("th", "Job", null, cells.link, cells.where),
      td("State", cells.badge, cells.reason),
      td("Started", cells.started),
      td("Stopped", cells.stopped),
      cell("td", "Events in", "num counter-in", cells.in),
      cell("td", "Events out", "num counter-out", cells.out),
      cell("td", "Errors", "num counter-errors", cells.errors),
      cell("td", "Dead-lettered", "num counter-dead", cells.dead),
      cell("td", "Throughput", "num counter-rate", cells.spark, cells.rate),
    );
    tr.cells_ = cells;
    return tr;
  }

  function updateJobRow(tr, job) {
    const c = tr.cells_;
    const counters = job.counters || {};
    setText(c.link, job.name);
    const where = placementText(job);
    setText(c.where, where);
    c.where.hidden = !where;
    updateBadge(c.badge, job.state);
    const why = retryText(job) || job.reason || (job.state === "failed" ? counters.last_error : null);
    setText(c.reason, why || "");
    c.reason.hidden = !why;
    updateTime(c.started, job.started_at);
    updateTime(c.stopped, job.stopped_at);
    setText(c.in, fmtNumber(counters.events_in));
    setText(c.out, fmtNumber(counters.events_out));
    setText(c.errors, fmtNumber(counters.errors));
    setText(c.dead, fmtNumber(counters.dead_lettered));
    setText(c.rate, fmtRate(counters.throughput_per_sec));
    c.errors.classList.toggle("warn", counters.errors > 0);
    c.dead.classList.toggle("warn", counters.dead_lettered > 0);
    c.spark.replaceChildren(sparkline(job.name));
  }

  function buildServiceRow(service) {
    const cells = {
      name: h("span", { class: "service-name" }),
      provider: h("span", { class: "tag" }),
      origin: h("span"),
      usedBy: h("span"),
      settings: h("dl", { class: "kv" }),
      error: h("p", { class: "field-error", role: "alert", hidden: true }),
      remove: h("button", { type: "button", class: "danger small", text: "Delete" }),
    };
    cells.remove.addEventListener("click", () => deleteService(tr.dataset.key, cells));
    const tr = h(
      "tr",
      { class: "service-row", "data-service": service.name },
      cell("th", "Service", null, cells.name),
      td("Provider", cells.provider),
      td("Origin", cells.origin),
      td("Used by", cells.usedBy),
      td("Settings", h("details", {}, h("summary", { text: "Show" }), cells.settings)),
      td("Actions", cells.remove, cells.error),
    );
    tr.cells_ = cells;
    return tr;
  }

  function updateServiceRow(tr, service) {
    const c = tr.cells_;
    setText(c.name, service.name);
    setText(c.provider, service.provider);
    setText(c.origin, service.origin || "–");
    const users = service.used_by || [];
    const key = users.join("\n");
    if (c.usedBy.dataset.users !== key) {
      c.usedBy.dataset.users = key;
      c.usedBy.replaceChildren(
        ...(users.length
          ? users.flatMap((name, i) => [
              i ? ", " : "",
              h("a", { href: `#/jobs/${seg(name)}`, text: name }),
            ])
          : [h("span", { class: "muted", text: "no jobs" })]),
      );
    }
    // the provider's options, masked by the API
    const options = Object.entries(service).filter(
      ([k]) => !["name", "provider", "origin", "used_by"].includes(k),
    );
    const optionsKey = JSON.stringify(options);
    if (c.settings.dataset.options !== optionsKey) {
      c.settings.dataset.options = optionsKey;
      c.settings.replaceChildren(
        ...options.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: valueText(v) })]),
      );
    }
    c.remove.setAttribute("aria-label", `Delete service ${service.name}`);
  }

  async function deleteService(name, cells) {
    cells.error.hidden = true;
    const ok = await confirmAction(
      `Delete service ${name}?`,
      `The service "${name}" will be removed. Jobs that use it must be deleted first.`,
    );
    if (!ok) return;
    cells.remove.disabled = true;
    try {
      await api("DELETE", `services/${seg(name)}`);
      notify(`Service "${name}" deleted.`);
      await refresh();
    } catch (err) {
      // 409 while a job uses it: the API's message names the jobs
      const text = err.status === 409 ? `Cannot delete "${name}": ${err.message}` : err.message;
      setText(cells.error, text);
      cells.error.hidden = false;
      notify(text, "error", err.fields);
    } finally {
      cells.remove.disabled = false;
    }
  }

  async function refresh() {
    const [jobsData, servicesData] = await Promise.all([api("GET", "jobs"), api("GET", "services")]);
    loadError.hidden = true;
    const jobs = jobsData.jobs || [];
    services = servicesData.services || [];
    jobs.forEach(recordThroughput);
    syncRows(jobsBody, jobs, (j) => j.name, buildJobRow, updateJobRow);
    syncRows(servicesBody, services, (s) => s.name, buildServiceRow, updateServiceRow);
    jobsTable.hidden = !jobs.length;
    jobsEmpty.hidden = jobs.length > 0;
    servicesTable.hidden = !services.length;
    servicesEmpty.hidden = services.length > 0;
    const states = {};
    for (const job of jobs) states[job.state] = (states[job.state] || 0) + 1;
    setText(
      summary,
      jobs.length
        ? `${jobs.length} job${jobs.length === 1 ? "" : "s"}: ` +
            Object.entries(states).map(([s, n]) => `${n} ${s}`).join(", ") +
            ` · ${services.length} service${services.length === 1 ? "" : "s"}`
        : `${services.length} service${services.length === 1 ? "" : "s"}`,
    );
  }

  return {
    title: "Overview",
    nav: "overview",
    render() {
      return [
        h("div", { class: "page-head" }, h("h1", { tabindex: "-1", text: "Overview" }), summary),
        loadError,
        h(
          "section",
          { class: "panel", "aria-labelledby": "jobs-heading" },
          h("div", { class: "section-head" },
            h("h2", { id: "jobs-heading", text: "Jobs" }),
            h("a", { href: "#/new-job", class: "button primary", text: "New job" })),
          jobsEmpty,
          h("div", { class: "table-wrap" }, jobsTable),
        ),
        h(
          "section",
          { class: "panel", "aria-labelledby": "services-heading" },
          h("div", { class: "section-head" },
            h("h2", { id: "services-heading", text: "Services" }),
            h("a", { href: "#/new-service", class: "button", text: "New service" })),
          h("p", { class: "hint", text: "Secrets are masked by the service." }),
          servicesEmpty,
          h("div", { class: "table-wrap" }, servicesTable),
        ),
      ];
    },
    refresh,
    showError(err) {
      setText(loadError, `Could not load: ${err.message}`);
      loadError.hidden = false;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Job details

/** The pipeline as boxes: source → middlewares → sinks (sinks side by side). */
function pipelineDiagram(definition, providers) {
  const schemaOf = new Map((definition.schemas || []).map((s) => [s.id, s]));
  let inherited = null; // a step without schema_id inherits the previous step's schema

  function box(role, step, index) {
    const explicit = step.schema_id || null;
    const schema = explicit || inherited;
    if (role !== "sink") inherited = schema;
    const known = new Set(["service_name", "resource", "input_encoding", "output_encoding", "schema_id"]);
    const extras = Object.entries(step).filter(([k]) => !known.has(k));
    const roleLabel = { source: "Source", middleware: "Middleware", sink: "Sink" }[role];
    const encoding = step.input_encoding
      ? `${step.input_encoding} → ${step.output_encoding}`
      : step.output_encoding;
    const rows = [
      ["Provider", providers.get(step.service_name) || "unknown"],
      ["Resource", step.resource || "–"],
      ["Encoding", encoding || "–"],
    ];
    if (schema) {
      const src = schemaOf.get(schema);
      const where = src ? ` (${src.service_name}: ${src.resource})` : "";
      rows.push(["Schema", `${schema}${explicit ? "" : " (inherited)"}${where}`]);
    }
    for (const [k, v] of extras) rows.push([k, valueText(v)]);
    return h(
      "div",
      {
        class: `box box-${role}`,
        "data-role": role,
        "data-service": step.service_name,
        role: "group",
        "aria-label": `${roleLabel}${index === null ? "" : ` ${index + 1}`}: ${step.service_name}`,
      },
      h("p", { class: "box-role", text: index === null ? roleLabel : `${roleLabel} ${index + 1}` }),
      h("p", { class: "box-title", text: step.service_name }),
      h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    );
  }

  const stages = [h("li", { class: "stage" }, box("source", definition.source, null))];
  (definition.middlewares || []).forEach((step, i) => {
    stages.push(h("li", { class: "stage" }, box("middleware", step, i)));
  });
  stages.push(
    h("li", { class: "stage stage-sinks" },
      (definition.sinks || []).map((step, i) => box("sink", step, i))),
  );
  return h("ol", { class: "pipeline", id: "pipeline", "aria-label": "Pipeline, in order" }, stages);
}

/** Batch, checkpoint, dead-letter and schema settings of a definition. */
function settingsBoxes(definition) {
  const batch = definition.batch;
  const checkpoint = definition.checkpoint;
  const dead = definition.dead_letter;
  const card = (title, rows, id) =>
    h(
      "div",
      { class: "setting", id },
      h("h3", { text: title }),
      rows.length
        ? h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]))
        : h("p", { class: "muted", text: "Off" }),
    );
  const schemas = definition.schemas || [];
  return h(
    "div",
    { class: "settings" },
    card(
      "Batching",
      batch
        ? [
            ["Kind", batch.kind || "count"],
            ["Size", fmtNumber(batch.size)],
            ["Max wait", batch.max_wait_ms ? `${fmtNumber(batch.max_wait_ms)} ms` : "–"],
          ]
        : [],
      "setting-batch",
    ),
    card(
      "Checkpoints",
      checkpoint && checkpoint.enabled
        ? [
            ["Enabled", "yes"],
            ["Interval", checkpoint.interval_ms ? `${fmtNumber(checkpoint.interval_ms)} ms` : "–"],
          ]
        : [],
      "setting-checkpoint",
    ),
    card(
      "Dead letter",
      dead
        ? [
            ["Service", dead.service_name],
            ["Resource", dead.resource || "–"],
            ["Encoding", dead.output_encoding || "–"],
          ]
        : [],
      "setting-dead-letter",
    ),
    card(
      "Schemas",
      schemas.map((s) => [s.id, `${s.service_name}: ${s.resource}`]),
      "setting-schemas",
    ),
  );
}

function jobView(name) {
  let lastDefinition = "";
  let lastJob = null; // the latest GET /jobs/{name} answer
  let busy = false;
  let state = null;

  const heading = h("h1", { tabindex: "-1" }, h("span", { text: name }), " ");
  const badge = stateBadge("unknown");
  const where = h("a", { href: "#/cluster", class: "where", id: "job-instance", hidden: true });
  heading.append(badge, " ", where);
  const reasonBox = h("div", { class: "error-box", id: "job-reason", hidden: true });
  const loadError = h("div", { class: "error-box", role: "alert", hidden: true });

  const stopBtn = h("button", { type: "button", id: "stop-job", text: "Stop" });
  const restartBtn = h("button", { type: "button", id: "restart-job", text: "Restart" });
  const deleteBtn = h("button", {
    type: "button",
    id: "delete-job",
    class: "danger",
    text: "Delete",
    "aria-describedby": "delete-hint",
  });
  const deleteHint = h("span", { id: "delete-hint", class: "hint" });
  const actionError = h("div", { class: "error-box", role: "alert", hidden: true });

  const counterDefs = [
    ["events_in", "Events in", fmtNumber],
    ["events_out", "Events out", fmtNumber],
    ["batches_out", "Batches out", fmtNumber],
    ["errors", "Errors", fmtNumber],
    ["dead_lettered", "Dead-lettered", fmtNumber],
    ["filtered", "Filtered", fmtNumber],
    ["retries", "Retries", fmtNumber],
    ["throughput_per_sec", "Throughput", fmtRate],
    ["last_event_time", "Last event", fmtClock],
  ];
  const counterEls = new Map(counterDefs.map(([key]) => [key, h("dd", { "data-counter": key })]));
  const spark = h("div", { class: "spark-large" });
  const lastError = h("p", { class: "mono" });
  const lastErrorBox = h("div", { class: "panel-note", hidden: true },
    h("h3", { text: "Last error" }), lastError);

  const timeEls = {
    started: h("time", { "data-meta": "started" }),
    stopped: h("time", { "data-meta": "stopped" }),
    restarts: h("dd", { "data-meta": "restarts" }),
    desired: h("dd", { "data-meta": "desired" }),
    origin: h("dd", { "data-meta": "origin" }),
  };

  const pipelineSlot = h("div", { class: "pipeline-slot" });
  const log = logPanel(name);
  const deadLetters = deadLetterPanel(name, () => refreshNow());
  const historySlot = h("div", { class: "history-slot" });
  let historyAt = 0;
  const settingsSlot = h("div");
  const definitionPre = h("pre", { class: "code" });
  const checkpointsBody = h("tbody");
  const checkpointsEmpty = h("p", { class: "empty", text: "No checkpoints yet." });
  const checkpointsTable = h(
    "table",
    { class: "grid", id: "checkpoints-table", "aria-labelledby": "checkpoints-heading" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Saved at" }), h("th", { scope: "col", text: "Position" }))),
    checkpointsBody,
  );

  async function act(label, method, path, done) {
    if (busy) return;
    busy = true;
    actionError.hidden = true;
    updateButtons();
    const status = notify(`${label} "${name}"…`, "info");
    try {
      const result = await api(method, path);
      status.remove();
      done(result);
    } catch (err) {
      status.remove();
      actionError.replaceChildren(
        h("p", { text: `${label} failed: ${err.message}` }),
        fieldList(err.fields) || "",
      );
      actionError.hidden = false;
    } finally {
      busy = false;
      updateButtons();
    }
  }

  stopBtn.addEventListener("click", () =>
    act("Stopping", "POST", `jobs/${seg(name)}/stop`, (job) => {
      apply(job);
      notify(`Job "${name}" stopped.`);
    }),
  );
  restartBtn.addEventListener("click", () =>
    act("Restarting", "POST", `jobs/${seg(name)}/restart`, (job) => {
      apply(job);
      notify(`Job "${name}" restarted.`);
    }),
  );
  deleteBtn.addEventListener("click", async () => {
    const ok = await confirmAction(
      `Delete job ${name}?`,
      `The job "${name}" and its checkpoint history will be deleted.`,
    );
    if (!ok) return;
    act("Deleting", "DELETE", `jobs/${seg(name)}`, () => {
      notify(`Job "${name}" deleted.`);
      location.hash = "#/";
    });
  });

  function updateButtons() {
    stopBtn.disabled = busy || !STOPPABLE.has(state);
    restartBtn.disabled = busy || state === "stopping";
    deleteBtn.disabled = busy || !DELETABLE.has(state);
    setText(deleteHint, deleteBtn.disabled && !busy ? "Stop the job to delete it." : "");
  }

  function apply(job) {
    state = job.state;
    updateBadge(badge, job.state);
    const placement = placementText(job);
    setText(where, placement);
    where.hidden = !placement;
    if (placement) where.setAttribute("aria-label", `Runs ${placement}; see the cluster`);
    updateButtons();
    const retrying = retryText(job);
    const reason = retrying || job.reason;
    reasonBox.hidden = !reason;
    reasonBox.replaceChildren(
      h("strong", {
        text: job.state === "failed" ? "Failed: " : retrying ? "Retrying: " : "Reason: ",
      }),
      reason || "",
    );
    const counters = job.counters || {};
    for (const [key, , format] of counterDefs) setText(counterEls.get(key), format(counters[key]));
    counterEls.get("errors").classList.toggle("warn", counters.errors > 0);
    counterEls.get("dead_lettered").classList.toggle("warn", counters.dead_lettered > 0);
    lastErrorBox.hidden = !counters.last_error;
    setText(lastError, counters.last_error || "");
    recordThroughput(job);
    spark.replaceChildren(sparkline(job.name, 120, 28));
    updateTime(timeEls.started, job.started_at);
    updateTime(timeEls.stopped, job.stopped_at);
    setText(timeEls.restarts, fmtNumber(job.restarts));
    setText(timeEls.desired, job.desired_state || "–");
    setText(timeEls.origin, job.origin === "file" ? "config file" : job.origin || "–");
  }

  async function refresh() {
    const [job, services, history] = await Promise.all([
      api("GET", `jobs/${seg(name)}`),
      api("GET", "services"),
      api("GET", `jobs/${seg(name)}/checkpoints?limit=20`),
      deadLetters.refresh(),
    ]);
    loadError.hidden = true;
    lastJob = job;
    apply(job);
    if (Date.now() - historyAt > 10000) {
      historyAt = Date.now();
      const history = await api("GET", `jobs/${seg(name)}/metrics/history`);
      historySlot.replaceChildren(historyChart(history.points || []));
    }
    if (job.definition) {
      const providers = new Map((services.services || []).map((s) => [s.name, s.provider]));
      const key = JSON.stringify([job.definition, [...providers]]);
      if (key !== lastDefinition) {
        lastDefinition = key;
        pipelineSlot.replaceChildren(pipelineDiagram(job.definition, providers));
        settingsSlot.replaceChildren(settingsBoxes(job.definition));
        setText(definitionPre, formatJson(job.definition));
      }
    }
    const points = [...(history.checkpoints || [])].sort((a, b) => b.created_at - a.created_at);
    checkpointsTable.hidden = !points.length;
    checkpointsEmpty.hidden = points.length > 0;
    checkpointsBody.replaceChildren(
      ...points.map((c) =>
        h("tr", {}, td("Saved at", timeEl(c.created_at)), td("Position", h("code", { text: valueText(c.position) }))),
      ),
    );
  }

  const dl = (pairs) => h("dl", { class: "meta" }, pairs.map(([k, v]) => h("div", {}, h("dt", { text: k }), v)));

  return {
    title: `Job ${name}`,
    nav: "overview",
    render() {
      return [
        h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
          h("a", { href: "#/", text: "Overview" }), " › ", h("span", { "aria-current": "page", text: name })),
        h("div", { class: "page-head" }, heading,
          h("div", { class: "actions", role: "group", "aria-label": "Job actions" },
            stopBtn, restartBtn, deleteBtn, deleteHint)),
        loadError,
        actionError,
        reasonBox,
        h("section", { class: "panel", "aria-labelledby": "counters-heading" },
          h("h2", { id: "counters-heading", text: "Counters" }),
          h("div", { class: "counters-row" },
            h("dl", { class: "counters", id: "job-counters" },
              counterDefs.map(([key, label]) =>
                h("div", { class: `counter counter-${key}` },
                  h("dt", { text: label }), counterEls.get(key), key === "throughput_per_sec" ? spark : null)))),
          lastErrorBox,
          dl([
            ["Started", h("dd", {}, timeEls.started)],
            ["Stopped", h("dd", {}, timeEls.stopped)],
            ["Auto-restarts", timeEls.restarts],
            ["Wanted state", timeEls.desired],
            ["Defined in", timeEls.origin],
          ])),
        h("section", { class: "panel", "aria-labelledby": "history-heading" },
          h("h2", { id: "history-heading", text: "Last hour" }),
          historySlot),
        h("section", { class: "panel", "aria-labelledby": "pipeline-heading" },
          h("h2", { id: "pipeline-heading", text: "Pipeline" }),
          pipelineSlot,
          settingsSlot,
          h("div", { class: "actions definition-actions" },
            h("button", {
              type: "button",
              id: "copy-job",
              text: "Copy as new job",
              onclick: () => {
                if (!lastJob || !lastJob.definition) return;
                jobDraft = { ...lastJob.definition, name: `${name}-copy` };
                location.hash = "#/new-job";
              },
            })),
          h("details", { class: "definition" }, h("summary", { text: "Definition (JSON)" }), definitionPre)),
        h("section", { class: "panel", "aria-labelledby": "checkpoints-heading" },
          h("h2", { id: "checkpoints-heading", text: "Checkpoints (newest first)" }),
          checkpointsEmpty,
          h("div", { class: "table-wrap" }, checkpointsTable)),
        h("section", { class: "panel", "aria-labelledby": "dead-letters-heading" },
          h("h2", { id: "dead-letters-heading", text: "Dead letters" }),
          deadLetters.element),
        h("section", { class: "panel", "aria-labelledby": "log-heading" },
          h("h2", { id: "log-heading", text: "Log (live)" }),
          log.element),
      ];
    },
    mount() {
      log.start();
    },
    unmount() {
      log.stop();
    },
    refresh,
    showError(err) {
      if (err.status === 404) {
        stopBtn.disabled = restartBtn.disabled = deleteBtn.disabled = true;
        setText(loadError, `Job "${name}" does not exist (any more).`);
      } else setText(loadError, `Could not load: ${err.message}`);
      loadError.hidden = false;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Create forms (JSON editors)

const SERVICE_TEMPLATES = {
  generator: { name: "demo-generator", provider: "generator", rate: 100 },
  file: { name: "demo-files", provider: "file", base_dir: "./out" },
  stdout: { name: "console", provider: "stdout" },
  http: { name: "webhook", provider: "http", host: "http://localhost:8080", max_retries: 5 },
  udf: { name: "scripts", provider: "udf", engine: { kind: "lua" }, script_path: "./scripts" },
  kafka: {
    name: "kafka",
    provider: "kafka",
    "bootstrap.servers": "localhost:9092",
    "group.id": "mstream",
  },
  mongodb: {
    name: "mongo",
    provider: "mongodb",
    connection_string: "mongodb://localhost:27017/?replicaSet=rs0",
    db_name: "app",
    write_mode: "insert",
  },
  pubsub: {
    name: "pubsub",
    provider: "pubsub",
    project_id: "my-project",
    auth: { kind: "static_token", env_token_name: "PUBSUB_TOKEN" },
  },
};

let jobDraft = null; // a definition to start the next "new job" form from ("Copy" on a job)

/** An example connector on the embedded providers, using services that exist if possible. */
function exampleJob(services) {
  const pick = (provider, fallback) =>
    (services.find((s) => s.provider === provider) || { name: fallback }).name;
  const endless = services.find((s) => s.provider === "generator" && s.count == null);
  const generator = endless ? endless.name : pick("generator", "demo-generator");
  const fileSink = services.find((s) => s.provider === "file");
  const sink = fileSink
    ? { service_name: fileSink.name, resource: "example.jsonl", output_encoding: "json" }
    : { service_name: pick("stdout", "console"), output_encoding: "json" };
  return {
    name: "example",
    source: { service_name: generator, resource: "users", output_encoding: "json" },
    sinks: [sink],
    batch: { kind: "count", size: 50 },
    checkpoint: { enabled: true },
  };
}

/**
 * A JSON editor form. `submit(body)` posts it; errors (client-side JSON syntax or the
 * API's message and field errors) are shown above the editor.
 */
function jsonForm({ id, label, help, initial, submitLabel, submit, extra = null }) {
  const textarea = h("textarea", {
    id: `${id}-json`,
    class: "code",
    rows: 18,
    spellcheck: "false",
    autocapitalize: "off",
    autocomplete: "off",
    "aria-describedby": `${id}-help ${id}-errors`,
  });
  textarea.value = initial;
  textarea.rows = Math.min(30, Math.max(12, initial.split("\n").length + 1));
  const errors = h("div", { id: `${id}-errors`, class: "error-box", role: "alert", hidden: true });
  const submitBtn = h("button", { type: "submit", class: "primary", id: `${id}-submit`, text: submitLabel });
  const online = h("input", { type: "checkbox", id: `${id}-online` });
  const onlineLabel = h("label", { class: "inline-check", for: `${id}-online` }, online,
    " Check online first (connect to the services; missing topics, collections or hosts are reported)");

  function showErrors(message, fields) {
    errors.replaceChildren(h("p", { class: "error-message", text: message }), fieldList(fields) || "");
    errors.hidden = false;
    errors.scrollIntoView({ block: "nearest" });
  }

  function parse() {
    try {
      return JSON.parse(textarea.value);
    } catch (err) {
      showErrors(`The definition is not valid JSON: ${err.message}`);
      textarea.focus();
      return undefined;
    }
  }

  const form = h(
    "form",
    {
      id,
      class: "panel json-form",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        errors.hidden = true;
        const body = parse();
        if (body === undefined) return;
        submitBtn.disabled = true;
        try {
          await submit(body, online.checked);
        } catch (err) {
          showErrors(err.message, err.fields);
        } finally {
          submitBtn.disabled = false;
        }
      },
    },
    extra,
    h("label", { for: `${id}-json`, text: label }),
    h("p", { class: "hint", id: `${id}-help` }, help),
    errors,
    textarea,
    h(
      "div",
      { class: "actions" },
      submitBtn,
      onlineLabel,
      h("button", {
        type: "button",
        text: "Format JSON",
        onclick: () => {
          const body = parse();
          if (body !== undefined) {
            errors.hidden = true;
            textarea.value = formatJson(body);
          }
        },
      }),
    ),
  );
  // Ctrl/Cmd+Enter submits
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  return { form, textarea };
}

function newJobView() {
  const slot = h("div");
  const hint = h("p", { class: "hint", hidden: true });
  let textarea = null;

  return {
    title: "New job",
    nav: "new-job",
    render() {
      return [
        h("div", { class: "page-head" }, h("h1", { tabindex: "-1", text: "Create a job" })),
        hint,
        slot,
      ];
    },
    async mount() {
      let services = [];
      try {
        services = (await api("GET", "services")).services || [];
      } catch {
        services = [];
      }
      const initial = jobDraft || exampleJob(services);
      jobDraft = null;
      const missing = [initial.source, ...(initial.middlewares || []), ...(initial.sinks || [])]
        .map((s) => s.service_name)
        .filter((n) => !services.some((s) => s.name === n));
      if (missing.length) {
        hint.replaceChildren(
          `The example uses services that do not exist yet (${[...new Set(missing)].join(", ")}). `,
          h("a", { href: "#/new-service", text: "Create a service" }),
          " first, or change the names.",
        );
        hint.hidden = false;
      }
      const editor = jsonForm({
        id: "job-form",
        label: "Connector definition (JSON)",
        help: [
          "The same fields as a [[connectors]] entry of mstream-config.toml: ",
          h("code", { text: "name" }), ", ", h("code", { text: "source" }), ", ",
          h("code", { text: "middlewares" }), ", ", h("code", { text: "sinks" }), ", ",
          h("code", { text: "schemas" }), ", ", h("code", { text: "batch" }), ", ",
          h("code", { text: "checkpoint" }), ", ", h("code", { text: "dead_letter" }),
          ". The job starts at once. Services: ",
          services.length ? services.map((s) => `${s.name} (${s.provider})`).join(", ") : "none yet",
          ".",
        ],
        initial: formatJson(initial),
        submitLabel: "Create and start job",
        submit: async (body, checkOnline) => {
          const job = await api("POST", checkOnline ? "jobs?check=online" : "jobs", body);
          notify(`Job "${job.name}" created.`);
          location.hash = `#/jobs/${seg(job.name)}`;
        },
      });
      textarea = editor.textarea;
      slot.replaceChildren(editor.form);
    },
    focusTarget: () => textarea,
  };
}

function newServiceView() {
  const select = h(
    "select",
    { id: "service-template" },
    Object.keys(SERVICE_TEMPLATES).map((p) => h("option", { value: p, text: p })),
  );
  const editor = jsonForm({
    id: "service-form",
    label: "Service definition (JSON)",
    help: [
      "The same fields as a [[services]] entry of mstream-config.toml: ",
      h("code", { text: "name" }), ", ", h("code", { text: "provider" }),
      " and the provider's options. It is stored encrypted; secrets are never shown again. ",
      "A value \"env:NAME\" is read from the service's environment.",
    ],
    initial: formatJson(SERVICE_TEMPLATES.generator),
    submitLabel: "Create service",
    submit: async (body, checkOnline) => {
      const service = await api("POST", checkOnline ? "services?check=online" : "services", body);
      notify(`Service "${service.name}" created.`);
      location.hash = "#/";
    },
    extra: h(
      "div",
      { class: "field-inline" },
      h("label", { for: "service-template", text: "Start from an example for provider" }),
      select,
    ),
  });
  select.addEventListener("change", () => {
    editor.textarea.value = formatJson(SERVICE_TEMPLATES[select.value]);
  });
  return {
    title: "New service",
    nav: "new-service",
    render() {
      return [h("div", { class: "page-head" }, h("h1", { tabindex: "-1", text: "Create a service" })), editor.form];
    },
  };
}

// ---------------------------------------------------------------------------------------
// Resource browser

function resourcesView() {
  const serviceSel = h("select", { id: "rb-service" });
  const list = h("ul", { class: "resource-list", id: "rb-list" });
  const heading = h("h2", { id: "rb-heading", text: "Pick a resource" });
  const fieldsBody = h("tbody");
  const fields = h("table", { class: "grid", id: "rb-fields", hidden: true },
    h("thead", {}, h("tr", {}, ["Field", "Types", "Present in"].map((t) => h("th", { scope: "col", text: t })))), fieldsBody);
  const samples = h("pre", { class: "code", id: "rb-samples" });
  const problem = h("div", { class: "error-box", role: "alert", hidden: true });

  async function show(resource) {
    problem.hidden = true;
    setText(heading, resource.name);
    const path = `services/${seg(serviceSel.value)}/resources/${encodeURIComponent(resource.name)}`;
    try {
      const answer = await api("GET", `${path}?limit=5`);
      setText(samples, answer.script !== undefined ? answer.script : formatJson(answer.samples));
      fields.hidden = true;
      if (answer.script === undefined) {
        const schema = await api("GET", `${path}/schema?sample_size=100`);
        fieldsBody.replaceChildren(...schema.fields.map((f) =>
          h("tr", {}, td("Field", h("code", { text: f.name })), td("Types", f.types.join(" | ")),
            td("Present in", `${Math.round(f.presence * 100)}% of ${schema.sampled}`))));
        fields.hidden = !schema.fields.length;
      }
    } catch (err) {
      setText(problem, err.message);
      problem.hidden = false;
    }
  }

  async function load() {
    list.replaceChildren();
    if (!serviceSel.value) return;
    try {
      const answer = await api("GET", `services/${seg(serviceSel.value)}/resources`);
      list.replaceChildren(...answer.resources.map((r) =>
        h("li", {}, h("button", { type: "button", class: "link", "data-resource": r.name,
          text: `${r.name} (${r.kind})`, onclick: () => show(r) }))));
    } catch (err) {
      setText(problem, err.message);
      problem.hidden = false;
    }
  }
  serviceSel.addEventListener("change", load);

  return {
    title: "Resources",
    nav: "resources",
    async mount() {
      try {
        const answer = await api("GET", "services");
        const usable = (answer.services || []).filter((s) => ["mongodb", "kafka", "pubsub", "file", "udf"].includes(s.provider));
        serviceSel.replaceChildren(...usable.map((s) => h("option", { value: s.name, text: `${s.name} (${s.provider})` })));
        await load();
      } catch {
        /* the header shows connection problems */
      }
    },
    render() {
      return [
        h("div", { class: "page-head" }, h("h1", { tabindex: "-1", text: "Resources" })),
        h("section", { class: "panel" },
          h("p", { class: "hint", text: "What a service holds, a few sample events (masked, capped; nothing is acknowledged or consumed) and the fields they have — types and presence, never values." }),
          h("div", { class: "field-inline" }, h("label", { for: "rb-service", text: "Service" }), serviceSel),
          list),
        h("section", { class: "panel" }, heading, problem, h("div", { class: "table-wrap" }, fields), samples),
      ];
    },
  };
}

// ---------------------------------------------------------------------------------------
// Transform playground

const PLAYGROUND_SCRIPTS = {
  lua: "function transform(data, attributes)\n  return result(data, attributes)\nend\n",
  rhai: "fn transform(data, attributes) {\n  result(data, attributes)\n}\n",
};

/** Fields added, removed or changed between two documents (top level), for the diff. */
function docDiff(before, after) {
  const rows = [];
  const a = before && typeof before === "object" ? before : {};
  const b = after && typeof after === "object" ? after : {};
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!(key in b)) rows.push(["removed", key, valueText(a[key]), ""]);
    else if (!(key in a)) rows.push(["added", key, "", valueText(b[key])]);
    else if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      rows.push(["changed", key, valueText(a[key]), valueText(b[key])]);
    }
  }
  return rows;
}

function playgroundView() {
  const engine = h("select", { id: "pg-engine" }, ["lua", "rhai"].map((e) => h("option", { value: e, text: e })));
  const script = h("textarea", { id: "pg-script", rows: 10, spellcheck: "false", class: "code" });
  script.value = PLAYGROUND_SCRIPTS.lua;
  const input = h("textarea", { id: "pg-input", rows: 6, spellcheck: "false", class: "code" });
  input.value = '{"email": "john@example.com"}';
  const serviceSel = h("select", { id: "pg-service" });
  const resourceSel = h("select", { id: "pg-resource" });
  const loadBtn = h("button", { type: "button", id: "pg-load", text: "Use a sample" });
  const runBtn = h("button", { type: "button", id: "pg-run", class: "primary", text: "Run" });
  const saveTestBtn = h("button", { type: "button", id: "pg-save-test", text: "Save as test", disabled: true });
  const runTestsBtn = h("button", { type: "button", id: "pg-run-tests", text: "Run tests", disabled: true });
  const suiteName = h("input", { id: "pg-suite-name", value: "playground suite", "aria-label": "Suite name" });
  const saveSuiteBtn = h("button", { type: "button", id: "pg-save-suite", text: "Save suite", disabled: true });
  const output = h("pre", { class: "code", id: "pg-output" });
  const errors = h("div", { class: "error-box", id: "pg-errors", role: "alert", hidden: true });
  const diffBody = h("tbody");
  const diff = h("table", { class: "grid", id: "pg-diff", hidden: true },
    h("thead", {}, h("tr", {}, ["", "Field", "Input", "Output"].map((t) => h("th", { scope: "col", text: t })))), diffBody);
  const tests = h("ol", { id: "pg-tests" });
  const results = h("ul", { id: "pg-results" });
  const cases = [];
  let last = null; // the last successful run: {input, output}

  engine.addEventListener("change", () => {
    if (Object.values(PLAYGROUND_SCRIPTS).includes(script.value)) script.value = PLAYGROUND_SCRIPTS[engine.value];
  });

  async function loadResources() {
    resourceSel.replaceChildren();
    if (!serviceSel.value) return;
    try {
      const answer = await api("GET", `services/${seg(serviceSel.value)}/resources`);
      // a Pub/Sub topic cannot be sampled (only its subscriptions can)
      const provider = serviceSel.selectedOptions[0] && serviceSel.selectedOptions[0].dataset.provider;
      const sampleable = answer.resources.filter((r) => !(provider === "pubsub" && r.kind === "topic"));
      resourceSel.replaceChildren(...sampleable.map((r) => h("option", { value: r.name, text: `${r.name} (${r.kind})` })));
    } catch (err) {
      setText(errors, `Could not list resources: ${err.message}`);
      errors.hidden = false;
    }
  }
  serviceSel.addEventListener("change", loadResources);

  loadBtn.addEventListener("click", async () => {
    errors.hidden = true;
    try {
      const answer = await api("GET", `services/${seg(serviceSel.value)}/resources/${encodeURIComponent(resourceSel.value)}?limit=1`);
      if (!answer.samples || !answer.samples.length) throw new Error("that resource has no events yet");
      input.value = formatJson(answer.samples[0]);
    } catch (err) {
      setText(errors, `Could not load a sample: ${err.message}`);
      errors.hidden = false;
    }
  });

  function renderTests() {
    tests.replaceChildren(...cases.map((c) => h("li", { text: `${c.name}: ${c.assertions.length} assertion(s)` })));
    runTestsBtn.disabled = saveSuiteBtn.disabled = !cases.length;
  }

  runBtn.addEventListener("click", async () => {
    errors.hidden = true;
    let payload;
    try {
      payload = JSON.parse(input.value);
    } catch (err) {
      setText(errors, `The sample is not valid JSON: ${err.message}`);
      errors.hidden = false;
      return;
    }
    try {
      const answer = await api("POST", "transform/run", { script: script.value, engine: engine.value, payload });
      if (answer.errors.length) {
        setText(errors, answer.errors.map((e) => e.message).join("\n"));
        errors.hidden = false;
        last = null;
      }
      const outputDoc = answer.item ? answer.item.document : null;
      setText(output, answer.item ? formatJson(answer.items.length > 1 ? answer.items : answer.item)
        : answer.errors.length ? "" : "(the script dropped the event)");
      if (!answer.errors.length) last = { input: payload, output: outputDoc };
      const rows = answer.item ? docDiff(payload, outputDoc) : [];
      diff.hidden = !rows.length;
      diffBody.replaceChildren(...rows.map(([kind, field, a, b]) =>
        h("tr", { class: `diff-${kind}` }, td("", kind), td("Field", field), td("Input", a), td("Output", b))));
      saveTestBtn.disabled = !last;
    } catch (err) {
      setText(errors, err.message);
      errors.hidden = false;
    }
  });

  saveTestBtn.addEventListener("click", () => {
    if (!last) return;
    const out = last.output;
    const assertions = out && typeof out === "object"
      ? Object.entries(out).map(([path, v]) => ({ path, assert_type: "equals", expected_value: v }))
      : [{ path: "", assert_type: "equals", expected_value: out }];
    cases.push({ name: `case ${cases.length + 1}`, input: last.input, assertions });
    renderTests();
  });

  runTestsBtn.addEventListener("click", async () => {
    try {
      const answer = await api("POST", "transform/test/run", { script: script.value, engine: engine.value, cases });
      results.replaceChildren(
        h("li", { id: "pg-summary", text: `${answer.summary.passed} passed, ${answer.summary.failed} failed` }),
        ...answer.results.map((r) => h("li", { class: r.passed ? "pass" : "fail",
          text: `${r.passed ? "PASS" : "FAIL"} ${r.name}` +
            (r.failures ? `: ${r.failures.map((f) => f.message).join("; ")}` : "") })),
      );
    } catch (err) {
      setText(errors, err.message);
      errors.hidden = false;
    }
  });

  saveSuiteBtn.addEventListener("click", async () => {
    try {
      const saved = await api("POST", "test-suites", {
        name: suiteName.value || "playground suite", engine: engine.value, script: script.value, cases,
      });
      notify(`Test suite "${saved.name}" saved (${saved.id}).`);
    } catch (err) {
      setText(errors, err.message);
      errors.hidden = false;
    }
  });

  return {
    title: "Playground",
    nav: "playground",
    async mount() {
      try {
        const answer = await api("GET", "services");
        const usable = (answer.services || []).filter((s) => ["mongodb", "kafka", "pubsub", "file"].includes(s.provider));
        serviceSel.replaceChildren(...usable.map((s) =>
          h("option", { value: s.name, "data-provider": s.provider, text: `${s.name} (${s.provider})` })));
        await loadResources();
      } catch {
        /* the header shows connection problems */
      }
    },
    render() {
      return [
        h("div", { class: "page-head" }, h("h1", { tabindex: "-1", text: "Transform playground" })),
        h("section", { class: "panel" },
          h("p", { class: "hint", text: "Run a script on a sample under a running job's sandbox limits, see what it changes, keep the run as a test." }),
          h("div", { class: "field-inline" }, h("label", { for: "pg-engine", text: "Engine" }), engine),
          h("label", { for: "pg-script", text: "Script" }), script,
          h("div", { class: "field-inline" },
            h("label", { for: "pg-service", text: "Sample from" }), serviceSel, resourceSel, loadBtn),
          h("label", { for: "pg-input", text: "Sample event (JSON)" }), input,
          h("div", { class: "actions" }, runBtn, saveTestBtn),
          errors,
          h("h2", { text: "Output" }), output,
          h("div", { class: "table-wrap" }, diff)),
        h("section", { class: "panel" },
          h("h2", { text: "Tests" }), tests,
          h("div", { class: "actions" }, runTestsBtn, suiteName, saveSuiteBtn),
          results),
      ];
    },
  };
}

// ---------------------------------------------------------------------------------------
// Cluster: the instances sharing the MongoDB state stores, and the job leases

/** A job's link, and the slot when the text is "<job>#<slot>". */
function jobSlotLink(id) {
  const cut = id.lastIndexOf("#");
  const job = cut > 0 ? id.slice(0, cut) : id;
  return h("a", { href: `#/jobs/${seg(job)}`, text: id });
}

/** A yes/no badge in the state colours: text first, colour second. */
function flagBadge(ok, yes, no) {
  return h("span", { class: `badge ${ok ? "state-running" : "state-failed"}`, text: ok ? yes : no });
}

function clusterView() {
  const summary = h("p", { class: "summary", id: "cluster-summary" });
  const loadError = h("div", { class: "error-box", role: "alert", hidden: true });
  const disabled = h("p", { class: "empty", id: "cluster-disabled", hidden: true },
    "This instance runs its jobs alone. Several instances share jobs when ",
    h("code", { text: "[system.checkpoints]" }), " and ", h("code", { text: "[system.job_lifecycle]" }),
    " are in MongoDB.");
  const instancesBody = h("tbody");
  const leasesBody = h("tbody");
  const instancesEmpty = h("p", { class: "empty", hidden: true, text: "No instance has written a heartbeat yet." });
  const leasesEmpty = h("p", { class: "empty", hidden: true, text: "No job holds a lease." });
  const numeric = new Set(["Slot", "Token"]);
  const head = (labels) => h("thead", {}, h("tr", {}, labels.map((t) =>
    h("th", { scope: "col", class: numeric.has(t) ? "num" : null, text: t }))));
  const instancesTable = h("table", { class: "grid", id: "instances-table", "aria-labelledby": "instances-heading" },
    head(["Instance", "Host", "API", "Last heartbeat", "Status", "Jobs held"]), instancesBody);
  const leasesTable = h("table", { class: "grid", id: "leases-table", "aria-labelledby": "leases-heading" },
    head(["Job", "Slot", "Owner", "Token", "State", "Expires", "Lease"]), leasesBody);
  const sections = [
    h("section", { class: "panel", "aria-labelledby": "instances-heading", hidden: true },
      h("h2", { id: "instances-heading", text: "Instances" }),
      instancesEmpty, h("div", { class: "table-wrap" }, instancesTable)),
    h("section", { class: "panel", "aria-labelledby": "leases-heading", hidden: true },
      h("h2", { id: "leases-heading", text: "Leases" }),
      h("p", { class: "hint", text: "A job runs where its lease is held: one slot, or one per replica of a Kafka or Pub/Sub job. The token grows at every takeover; the owner's checkpoint writes carry it." }),
      leasesEmpty, h("div", { class: "table-wrap" }, leasesTable)),
  ];
  let thisInstance = "";

  function buildInstanceRow(member) {
    const cells = {
      id: h("span", { class: "instance-id" }),
      self: h("span", { class: "tag", text: "this one", hidden: true }),
      host: h("span"),
      api: h("span"),
      heartbeat: h("time"),
      status: h("span"),
      jobs: h("span"),
    };
    const tr = h("tr", { "data-instance": member.id },
      cell("th", "Instance", null, cells.id, " ", cells.self),
      td("Host", cells.host), td("API", cells.api), td("Last heartbeat", cells.heartbeat),
      td("Status", cells.status), td("Jobs held", cells.jobs));
    tr.cells_ = cells;
    return tr;
  }

  function updateInstanceRow(tr, member) {
    const c = tr.cells_;
    setText(c.id, member.id);
    c.self.hidden = member.id !== thisInstance;
    setText(c.host, member.host ? `${member.host}${member.pid ? ` (pid ${member.pid})` : ""}` : "–");
    if (c.api.dataset.url !== (member.api_url || "")) {
      c.api.dataset.url = member.api_url || "";
      c.api.replaceChildren(member.api_url
        ? h("a", { href: member.api_url, rel: "noopener noreferrer", text: member.api_url })
        : h("span", { class: "muted", text: "–" }));
    }
    setText(c.heartbeat, fmtAgo(member.heartbeat_at));
    if (typeof member.heartbeat_at === "number") {
      c.heartbeat.setAttribute("datetime", new Date(member.heartbeat_at * 1000).toISOString());
      c.heartbeat.title = fmtTime(member.heartbeat_at);
    }
    const alive = Boolean(member.alive);
    if (c.status.dataset.alive !== String(alive)) {
      c.status.dataset.alive = String(alive);
      c.status.replaceChildren(flagBadge(alive, "alive", "stale"));
    }
    const jobs = member.jobs || [];
    const key = jobs.join("\n");
    if (c.jobs.dataset.jobs !== key) {
      c.jobs.dataset.jobs = key;
      c.jobs.replaceChildren(...(jobs.length
        ? jobs.flatMap((id, i) => [i ? ", " : "", jobSlotLink(id)])
        : [h("span", { class: "muted", text: "none" })]));
    }
  }

  function buildLeaseRow(lease) {
    const cells = {
      job: h("a", { href: `#/jobs/${seg(lease.job)}` }),
      slot: h("span"),
      owner: h("span", { class: "mono" }),
      token: h("span"),
      state: h("span"),
      expires: h("time"),
      live: h("span"),
    };
    const tr = h("tr", { "data-lease": `${lease.job}#${lease.slot}`, "data-job": lease.job },
      cell("th", "Job", null, cells.job),
      cell("td", "Slot", "num", cells.slot), td("Owner", cells.owner), cell("td", "Token", "num", cells.token),
      td("State", cells.state), td("Expires", cells.expires), td("Lease", cells.live));
    tr.cells_ = cells;
    return tr;
  }

  function updateLeaseRow(tr, lease) {
    const c = tr.cells_;
    setText(c.job, lease.job);
    setText(c.slot, String(lease.slot));
    setText(c.owner, lease.owner || "–");
    setText(c.token, fmtNumber(lease.token));
    const state = lease.state || "";
    if (c.state.dataset.state !== state) {
      c.state.dataset.state = state;
      c.state.replaceChildren(state ? stateBadge(state) : h("span", { class: "muted", text: "–" }));
    }
    setText(c.expires, fmtAgo(lease.expires_at));
    if (typeof lease.expires_at === "number") {
      c.expires.setAttribute("datetime", new Date(lease.expires_at * 1000).toISOString());
      c.expires.title = fmtTime(lease.expires_at);
    }
    const live = Boolean(lease.live);
    if (c.live.dataset.live !== String(live)) {
      c.live.dataset.live = String(live);
      c.live.replaceChildren(flagBadge(live, "live", "expired"));
    }
  }

  async function refresh() {
    const data = await api("GET", "cluster");
    loadError.hidden = true;
    const enabled = Boolean(data.enabled);
    thisInstance = data.instance_id || "";
    disabled.hidden = enabled;
    for (const section of sections) section.hidden = !enabled;
    if (!enabled) {
      setText(summary, "");
      return;
    }
    const members = [...(data.instances || [])].sort((a, b) => a.id.localeCompare(b.id));
    const leases = [...(data.leases || [])].sort((a, b) => a.job.localeCompare(b.job) || a.slot - b.slot);
    syncRows(instancesBody, members, (m) => m.id, buildInstanceRow, updateInstanceRow);
    syncRows(leasesBody, leases, (l) => `${l.job}#${l.slot}`, buildLeaseRow, updateLeaseRow);
    instancesTable.hidden = !members.length;
    instancesEmpty.hidden = members.length > 0;
    leasesTable.hidden = !leases.length;
    leasesEmpty.hidden = leases.length > 0;
    const alive = members.filter((m) => m.alive).length;
    const live = leases.filter((l) => l.live).length;
    setText(summary,
      `This is ${thisInstance} · ${alive} of ${members.length} instance${members.length === 1 ? "" : "s"} alive · ` +
      `${live} live lease${live === 1 ? "" : "s"} · lease ${fmtNumber(data.lease_ttl_ms)} ms, ` +
      `heartbeat every ${fmtNumber(data.heartbeat_interval_ms)} ms`);
  }

  return {
    title: "Cluster",
    nav: "cluster",
    render() {
      return [
        h("div", { class: "page-head" }, h("h1", { tabindex: "-1", text: "Cluster" }), summary),
        loadError,
        disabled,
        ...sections,
      ];
    },
    refresh,
    showError(err) {
      setText(loadError, `Could not load: ${err.message}`);
      loadError.hidden = false;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Router and polling

let current = null;
let timer = null;
let generation = 0; // bumps on every route change; stale refreshes are ignored

function viewFor(hash) {
  const path = hash.replace(/^#/, "") || "/";
  const job = path.match(/^\/jobs\/([^/]+)$/);
  if (job) {
    let name;
    try {
      name = decodeURIComponent(job[1]);
    } catch {
      name = job[1];
    }
    return jobView(name);
  }
  if (path === "/new-job") return newJobView();
  if (path === "/new-service") return newServiceView();
  if (path === "/playground") return playgroundView();
  if (path === "/resources") return resourcesView();
  if (path === "/cluster") return clusterView();
  return overviewView();
}

async function navigate() {
  generation += 1;
  if (current && current.unmount) current.unmount();
  const view = viewFor(location.hash);
  current = view;
  const main = document.getElementById("main");
  main.replaceChildren(...view.render());
  document.title = `${view.title} · mstream`;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === view.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // move focus to the new view's heading, for keyboard and screen-reader users
  const heading = main.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  if (view.mount) await view.mount();
  refreshNow();
}

let tickSeq = 0; // only the newest refresh cycle schedules the next one

async function tick() {
  clearTimeout(timer);
  const seq = ++tickSeq;
  const mine = generation;
  const view = current;
  if (view && view.refresh && !document.hidden) {
    try {
      await view.refresh();
      if (mine === generation) markUpdated();
    } catch (err) {
      // 401 (token dialog) and network errors are shown in the header already
      if (mine === generation && err.status !== 401 && err.status !== 0 && view.showError) {
        view.showError(err);
      }
    }
  }
  if (seq === tickSeq) timer = setTimeout(tick, POLL_MS);
}

function refreshNow() {
  clearTimeout(timer);
  tick();
}

window.addEventListener("hashchange", navigate);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refreshNow();
});
navigate();
