// The Cairn web console: browse and edit v2 keys (compare-and-swap edits, live through a watch), see the members and
// charts from /metrics. Plain DOM code without dependencies; user data only ever reaches the page as text nodes.
"use strict";

const view = document.getElementById("view");
const requestMs = 10000;        // bound on every ordinary request
const watchMs = 60000;          // a quiet watch is re-issued from the same index after this long
const watchRetryMsMax = 5000;   // longest pause between attempts to re-open a dropped watch
const memberStatusMs = 1500;    // bound on asking one member for its status
const refreshMs = 2000;         // members view and metrics sampling period
const samplesMax = 150;         // metrics samples kept: 5 minutes at refreshMs
let leave = () => {};           // stops what the open view started (its watch, its timers)

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value !== false && value != null) el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child != null && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One request; answers {status, body (parsed JSON, else text), headers}. Throws on a network error or timeout. */
async function call(url, { method = "GET", form, json, timeoutMs = requestMs, signal } = {}) {
  const signals = [AbortSignal.timeout(timeoutMs)].concat(signal ? [signal] : []);
  const init = { method, signal: AbortSignal.any(signals), headers: {} };
  if (form) init.body = new URLSearchParams(form);
  if (json) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
  return { status: response.status, body, headers: response.headers };
}

/** `/v2/keys/...` for a key path ("/a/b"), each segment percent-encoded. */
function keyURL(path, params) {
  const query = new URLSearchParams(params || {}).toString();
  return "/v2/keys" + path.split("/").map(encodeURIComponent).join("/") + (query ? "?" + query : "");
}

function keyHash(path) {
  return "#/keys" + path.split("/").map(encodeURIComponent).join("/");
}

/** The key path in a `#/keys/<path>` fragment: "/" for the root. */
function hashPath(rest) {
  const segments = rest.split("/").filter((s) => s !== "").map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  });
  return "/" + segments.join("/");
}

function joinPath(dir, name) {
  return (dir === "/" ? "" : dir) + "/" + name.replace(/^\/+/, "");
}

function baseName(key) {
  return key.slice(key.lastIndexOf("/") + 1);
}

function errorText(answer) {
  const body = answer.body;
  if (body && typeof body === "object") {
    return [body.message, body.cause].filter(Boolean).join(": ") + (body.errorCode ? ` (error ${body.errorCode})` : "");
  }
  return `HTTP ${answer.status}` + (typeof body === "string" && body ? ": " + body.trim() : "");
}

function say(element, text, isError) {
  element.textContent = text;
  element.className = "message" + (isError ? " error" : "");
}

// ---------------------------------------------------------------------------------------------------------- keys

function showKeys(path) {
  const state = { path, index: 0, stale: false, stopped: false, controller: null };
  // A hidden page (another tab, or kept in the back-forward cache) lets its watch go: a browser gives a member only
  // 6 connections, and each watching page holds one. It resumes from the last index when shown again.
  const onVisibility = () => { if (document.hidden && state.controller) state.controller.abort(); };
  document.addEventListener("visibilitychange", onVisibility);
  leave = () => {
    state.stopped = true;
    document.removeEventListener("visibilitychange", onVisibility);
    if (state.controller) state.controller.abort();
  };
  const live = h("span", { id: "live", class: "live" }, "connecting");
  const message = h("div", { id: "message", class: "message", role: "status" });
  const listing = h("div", { id: "listing" });
  const editor = h("div", { id: "editor" });
  view.replaceChildren(h("div", { class: "bar" }, crumbs(path), live), message, listing, editor);

  const setLive = (on, text) => { live.textContent = text; live.className = "live " + (on ? "on" : "off"); };

  async function load() {
    const answer = await call(keyURL(path, { sorted: "true" }));
    const index = Number(answer.headers.get("X-Etcd-Index"));
    if (Number.isFinite(index) && index > state.index) state.index = index;
    state.stale = false;
    if (state.stopped) return;
    if (answer.status === 200) render(answer.body.node);
    else if (answer.body && answer.body.errorCode === 100) render(null);
    else say(message, "Could not read " + path + ": " + errorText(answer), true);
  }

  function render(node) {
    if (node && !node.dir) {
      listing.replaceChildren(h("h2", {}, "Key " + node.key), details(node),
        h("div", { class: "panel" },
          h("button", { class: "plain", onclick: () => openEditor(node) }, "Edit"), " ",
          h("button", { class: "danger", onclick: () => remove(node) }, "Delete")));
      return;
    }
    const children = node ? node.nodes || [] : [];
    const rows = children.map((child) => h("tr", { "data-key": child.key },
      h("td", {}, h("a", { href: keyHash(child.key) }, baseName(child.key) + (child.dir ? "/" : ""))),
      h("td", { class: "value" }, child.dir ? "" : child.value),
      h("td", { class: "num" }, child.ttl != null ? child.ttl + " s" : ""),
      h("td", { class: "num" }, child.createdIndex),
      h("td", { class: "num" }, child.modifiedIndex),
      h("td", {}, child.dir ? "" : h("button", { class: "plain", onclick: () => openEditor(child) }, "Edit"), " ",
        h("button", { class: "danger", onclick: () => remove(child) }, "Delete"))));
    listing.replaceChildren(
      h("h2", {}, node ? "Directory " + path : "Nothing at " + path + " yet"),
      h("table", { id: "keys" },
        h("thead", {}, h("tr", {}, ["Key", "Value", "TTL", "Created", "Modified", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "hint" }, "empty")))),
      createForm());
  }

  function details(node) {
    const fields = [["Value", node.value], ["TTL", node.ttl != null ? node.ttl + " s" : "none"],
      ["Expires", node.expiration || "never"], ["Created index", node.createdIndex], ["Modified index", node.modifiedIndex]];
    return h("dl", { class: "panel", id: "details" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  }

  function createForm() {
    const key = h("input", { name: "key", id: "new-key", placeholder: "name", required: true });
    const value = h("textarea", { name: "value", id: "new-value" });
    const ttl = h("input", { name: "ttl", id: "new-ttl", type: "number", min: 1, placeholder: "none", size: 6 });
    const dir = h("input", { name: "dir", type: "checkbox" });
    return h("form", { class: "panel", id: "create", onsubmit: async (event) => {
      event.preventDefault();
      const full = joinPath(path, key.value);
      const params = { prevExist: "false" };
      const form = dir.checked ? { dir: "true" } : { value: value.value };
      if (ttl.value) form.ttl = ttl.value;
      await write(() => call(keyURL(full, params), { method: "PUT", form }),
        (answer) => `Created ${answer.body.node.key} at index ${answer.body.node.modifiedIndex}.`);
      key.value = ""; value.value = "";
    } },
    h("label", {}, "Key in " + path, key), h("label", {}, "Value", value), h("label", {}, "TTL (s)", ttl),
    h("label", {}, "Directory", dir), h("button", { type: "submit" }, "Create"));
  }

  /** The edit form keeps the modified index it was opened at: the save is a compare-and-swap on it. */
  function openEditor(node) {
    const value = h("textarea", { name: "value", id: "edit-value" }, node.value);
    const ttl = h("input", { name: "ttl", id: "edit-ttl", type: "number", min: 1, size: 6,
      value: node.ttl != null ? node.ttl : false, placeholder: "none" });
    const prevIndex = node.modifiedIndex;
    editor.replaceChildren(h("form", { class: "panel", id: "edit", onsubmit: async (event) => {
      event.preventDefault();
      const form = { value: value.value };
      if (ttl.value) form.ttl = ttl.value;
      const ok = await write(() => call(keyURL(node.key, { prevIndex }), { method: "PUT", form }),
        (answer) => `Saved ${node.key} at index ${answer.body.node.modifiedIndex}.`, prevIndex);
      if (ok) editor.replaceChildren();
    } },
    h("label", {}, `Edit ${node.key} (as of index ${prevIndex})`, value), h("label", {}, "TTL (s)", ttl),
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "plain", onclick: () => editor.replaceChildren() }, "Cancel")));
    value.focus();
  }

  async function remove(node) {
    if (!confirm(`Delete ${node.key}${node.dir ? " and everything under it" : ""}?`)) return;
    const params = node.dir ? { dir: "true", recursive: "true" } : { prevIndex: node.modifiedIndex };
    await write(() => call(keyURL(node.key, params), { method: "DELETE" }), () => `Deleted ${node.key}.`, node.modifiedIndex);
  }

  /** Runs a write and reports it; a failed compare says who won, and the user's text stays in the form. */
  async function write(send, success, prevIndex) {
    let answer;
    try { answer = await send(); } catch (error) { say(message, "The request failed: " + error.message, true); return false; }
    if (answer.status === 200 || answer.status === 201) {
      say(message, success(answer), false);
      await load().catch(() => {});
      return true;
    }
    if (answer.body && answer.body.errorCode === 101) {
      const now = answer.headers.get("X-Etcd-Index");
      say(message, `Conflict: another client changed this key after you opened it at index ${prevIndex} (the member ` +
        `answered ${answer.body.cause}, at index ${now}). Your change was not saved. The page shows the current value ` +
        "and your text stays in the form: press Edit to start again from the current value.", true);
      await load().catch(() => {});
    } else {
      say(message, errorText(answer), true);
    }
    return false;
  }

  /** Watches the open path from the last index seen; resumes there after a drop, re-reads when it was cleared. */
  async function watch() {
    let pauseMs = 250;
    while (!state.stopped) {
      if (document.hidden) {
        setLive(false, "paused while hidden");
        await untilVisible();
        continue;
      }
      state.controller = new AbortController();
      // A member that is down refuses at once; a watch still open after a second is taken as established.
      const establishedTimer = setTimeout(() => setLive(true, "live"), 1000);
      try {
        if (state.stale) await load(); // the last read failed: the page may not show the last event yet
        const params = { wait: "true", recursive: "true", waitIndex: state.index + 1 };
        const answer = await call(keyURL(path, params), { timeoutMs: watchMs, signal: state.controller.signal });
        if (state.stopped) return;
        if (answer.status === 200 && answer.body && answer.body.node) {
          state.index = Math.max(state.index, answer.body.node.modifiedIndex);
          state.stale = true;
          await load();
        } else if (answer.body && answer.body.errorCode === 401) {
          state.stale = true;
          await load(); // the index fell out of the member's event history: the re-read gives a current one
        } else if (answer.status !== 200) {
          throw new Error(errorText(answer));
        }
        setLive(true, "live");
        pauseMs = 250;
      } catch (error) {
        if (state.stopped) return;
        if (error.name === "TimeoutError" || document.hidden) continue;
        setLive(false, "reconnecting");
        await sleep(pauseMs);
        pauseMs = Math.min(pauseMs * 2, watchRetryMsMax);
      } finally {
        clearTimeout(establishedTimer);
      }
    }
  }

  load().then(() => { setLive(true, "live"); watch(); },
    (error) => {
      setLive(false, "offline");
      say(message, "Could not read " + path + ": " + error.message, true);
      state.stale = true;
      watch();
    });
}

function untilVisible() {
  return new Promise((resolve) => {
    const check = () => {
      if (document.hidden) return;
      document.removeEventListener("visibilitychange", check);
      resolve();
    };
    document.addEventListener("visibilitychange", check);
    check();
  });
}

function crumbs(path) {
  const parts = path.split("/").filter(Boolean);
  const links = [h("a", { href: "#/keys/" }, "/")];
  parts.forEach((part, i) => {
    if (i > 0) links.push("/");
    links.push(h("a", { href: keyHash("/" + parts.slice(0, i + 1).join("/")) }, part));
  });
  return h("span", { class: "crumbs" }, links);
}

// ------------------------------------------------------------------------------------------------------- members

/** A member's own view, asked of the member itself (its client URL is another origin: Cairn answers with CORS). */
async function memberStatus(member) {
  const base = (member.clientURLs || [])[0];
  if (!base) return { health: "not started" };
  const [self, health] = await Promise.allSettled([
    call(base + "/ui/api/member", { timeoutMs: memberStatusMs }), call(base + "/health", { timeoutMs: memberStatusMs })]);
  const status = self.status === "fulfilled" && self.value.status === 200 ? self.value.body : {};
  if (health.status !== "fulfilled") status.health = "unreachable";
  else status.health = health.value.body && health.value.body.health === "true" ? "healthy" : "unhealthy";
  return status;
}

function showMembers() {
  let stopped = false, timer = 0;
  leave = () => { stopped = true; clearTimeout(timer); };
  const message = h("div", { id: "message", class: "message", role: "status" });
  const table = h("div", { id: "members" });
  const peerURLs = h("input", { id: "new-peer-urls", size: 40, placeholder: "http://10.0.0.4:2380" });
  const add = h("form", { class: "panel", id: "add-member", onsubmit: async (event) => {
    event.preventDefault();
    const urls = peerURLs.value.split(",").map((u) => u.trim()).filter(Boolean);
    if (!urls.length || !confirm(`Add a member with peer URLs ${urls.join(", ")}?`)) return;
    const answer = await call("/v2/members", { method: "POST", json: { peerURLs: urls } }).catch((e) => ({ body: e.message }));
    if (answer.status === 201) {
      say(message, `Added member ${answer.body.id}: start it with --initial-cluster-state existing.`, false);
      peerURLs.value = "";
    } else say(message, "Add failed: " + errorText(answer), true);
    refresh();
  } }, h("label", {}, "Peer URLs of a new member (comma-separated)", peerURLs), h("button", { type: "submit" }, "Add member"));
  view.replaceChildren(h("h2", {}, "Members"), message, table, add);

  async function removeMember(member) {
    if (!confirm(`Remove member ${member.name || "(unstarted)"} (${member.id}) from the cluster?`)) return;
    const answer = await call("/v2/members/" + member.id, { method: "DELETE" }).catch((e) => ({ body: e.message }));
    if (answer.status === 204) say(message, `Removed member ${member.id}.`, false);
    else say(message, "Remove failed: " + errorText(answer), true);
    refresh();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const [list, leader] = await Promise.all([call("/v2/members"), call("/v2/members/leader")]);
      if (list.status !== 200) throw new Error(errorText(list));
      const leaderID = leader.status === 200 ? leader.body.id : null;
      const members = list.body.members.slice().sort((a, b) => (a.name || "~").localeCompare(b.name || "~"));
      const statuses = await Promise.all(members.map(memberStatus));
      if (stopped) return;
      const rows = members.map((m, i) => h("tr", { "data-member": m.name || m.id },
        h("td", {}, m.name || "(unstarted)", m.id === leaderID ? h("span", { class: "badge" }, "leader") : null),
        h("td", { class: "num" }, m.id),
        h("td", {}, (m.peerURLs || []).join(", ")),
        h("td", {}, (m.clientURLs || []).join(", ")),
        h("td", { class: "num" }, statuses[i].term != null ? statuses[i].term : ""),
        h("td", { class: "num" }, statuses[i].applied != null ? statuses[i].applied : ""),
        h("td", { class: statuses[i].health }, statuses[i].health),
        h("td", {}, h("button", { class: "danger", onclick: () => removeMember(m) }, "Remove"))));
      table.replaceChildren(h("table", {},
        h("thead", {}, h("tr", {}, ["Name", "ID", "Peer URLs", "Client URLs", "Term", "Applied index", "Health", ""]
          .map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
        h("p", { class: "hint" }, leaderID ? "" : "No leader right now (election in progress)."));
    } catch (error) {
      if (!stopped) say(message, "Could not read the members: " + error.message, true);
    }
    if (!stopped) timer = setTimeout(refresh, refreshMs);
  }
  refresh();
}

// ------------------------------------------------------------------------------------------------------- metrics

const samples = [];
let metricsChanged = () => {};

/** Prometheus text: "name{labels}" -> value, comments and malformed lines skipped. */
function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match) values.set(match[1] + (match[2] || ""), Number(match[3]));
  }
  return values;
}

async function sampleMetrics() {
  if (!document.hidden) {
    try {
      const answer = await call("/metrics");
      if (answer.status === 200 && typeof answer.body === "string") {
        const m = parseMetrics(answer.body);
        samples.push({ time: performance.now() / 1000, applied: m.get("etcd_server_proposals_applied_total"),
          gets: m.get('etcd_http_received_total{method="GET"}') || 0,
          fsyncSum: m.get("etcd_disk_wal_fsync_duration_seconds_sum"), fsyncCount: m.get("etcd_disk_wal_fsync_duration_seconds_count"),
          applyLag: m.get("cairn_raft_apply_lag_entries") });
        if (samples.length > samplesMax) samples.shift();
        metricsChanged();
      }
    } catch { /* a missed sample leaves a gap */ }
  }
  setTimeout(sampleMetrics, refreshMs);
}

/** Points (seconds ago, value) of a series computed from two consecutive samples (or one, for gauges). */
function series(compute) {
  const points = [];
  const now = samples.length ? samples[samples.length - 1].time : 0;
  for (let i = 1; i < samples.length; i++) {
    const value = compute(samples[i - 1], samples[i], samples[i].time - samples[i - 1].time);
    if (value != null && Number.isFinite(value)) points.push([now - samples[i].time, value]);
  }
  return points;
}

const rate = (field) => (a, b, seconds) => seconds > 0 ? Math.max(0, b[field] - a[field]) / seconds : null;

const charts = [
  { id: "writes", title: "Writes applied / s", unit: "", compute: rate("applied") },
  { id: "reads", title: "GET requests / s (this member)", unit: "", compute: rate("gets") },
  { id: "fsync", title: "WAL fsync latency (mean)", unit: " ms",
    compute: (a, b) => b.fsyncCount > a.fsyncCount ? 1000 * (b.fsyncSum - a.fsyncSum) / (b.fsyncCount - a.fsyncCount) : null },
  { id: "lag", title: "Apply lag (entries)", unit: "", compute: (a, b) => b.applyLag },
];

function drawChart(chart) {
  const width = 300, height = 100, spanS = samplesMax * refreshMs / 1000;
  const points = series(chart.compute);
  const top = Math.max(1, ...points.map((p) => p[1])) * 1.1;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("points", points.map(([ago, v]) => `${(width * (1 - ago / spanS)).toFixed(1)},${(height * (1 - v / top)).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2f6fdb");
  line.setAttribute("stroke-width", "1.5");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  const base = document.createElementNS(svgNS, "line");
  for (const [name, value] of [["x1", 0], ["y1", height], ["x2", width], ["y2", height], ["stroke", "#dde1e8"]]) base.setAttribute(name, value);
  svg.append(base, line);
  if (points.length) {
    const [ago, v] = points[points.length - 1];
    const dot = document.createElementNS(svgNS, "circle");
    for (const [name, value] of [["cx", width * (1 - ago / spanS)], ["cy", height * (1 - v / top)], ["r", 2.5], ["fill", "#2f6fdb"]]) {
      dot.setAttribute(name, value);
    }
    svg.append(dot);
  }
  const latest = points.length ? points[points.length - 1][1] : null;
  const shown = latest == null ? "–" : (latest < 10 ? latest.toFixed(2) : latest.toFixed(0)) + chart.unit;
  return h("div", { class: "chart", id: "chart-" + chart.id }, h("span", { class: "now" }, shown), h("div", {}, chart.title), svg,
    h("div", { class: "hint" }, `last ${spanS / 60} minutes, up to ${(top / 1.1).toPrecision(3)}${chart.unit}`));
}

function showMetrics() {
  const grid = h("div", { class: "charts" });
  const draw = () => grid.replaceChildren(...charts.map(drawChart));
  metricsChanged = draw;
  leave = () => { metricsChanged = () => {}; };
  view.replaceChildren(h("h2", {}, "Metrics of this member"), grid,
    h("p", { class: "hint" }, `Sampled from /metrics every ${refreshMs / 1000} s while the page is open.`));
  draw();
}

// -------------------------------------------------------------------------------------------------------- router

function route() {
  leave();
  leave = () => {};
  const hash = location.hash || "#/keys/";
  for (const name of ["keys", "v3", "members", "metrics"]) {
    document.getElementById("nav-" + name).classList.toggle("on", hash.startsWith("#/" + name));
  }
  if (hash === "#/keys" || hash.startsWith("#/keys/")) showKeys(hashPath(hash.slice("#/keys".length)));
  else if (hash === "#/v3" || hash.startsWith("#/v3/")) showV3Keys(decodeFragment(hash.slice("#/v3".length).replace(/^\//, "")));
  else if (hash === "#/members") showMembers();
  else if (hash === "#/metrics") showMetrics();
  else location.hash = "#/keys/";
}

window.addEventListener("hashchange", route);
route();
sampleMetrics();
call("/ui/api/member").then((answer) => {
  if (answer.status === 200) document.getElementById("served-by").textContent = `served by ${answer.body.name} (${answer.body.id})`;
}).catch(() => {});
