// The console's v3 keys view (#/v3/<prefix>): keys by prefix through the v3 JSON gateway, created, edited and deleted
// in transactions that compare the revision the form was opened at, kept live by a v3 watch stream.
"use strict";

const v3KeysMax = 500;          // keys listed at once; the rest are counted, not shown

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: false });

/** Base64 of a string's UTF-8 bytes, as the gateway takes keys and values. */
function toBase64(text) {
  let binary = "";
  for (const byte of textEncoder.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The text of base64 bytes from the gateway (invalid UTF-8 shows as U+FFFD). */
function fromBase64(encoded) {
  const binary = atob(encoded || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return textDecoder.decode(bytes);
}

/** etcd's prefix range: [prefix, prefix with its last byte below 0xff incremented); every key for "". */
function prefixRange(prefix) {
  if (prefix === "") return { key: "AA==", range_end: "AA==" };
  const bytes = Array.from(textEncoder.encode(prefix));
  while (bytes.length && bytes[bytes.length - 1] === 0xff) bytes.pop();
  const range = { key: toBase64(prefix) };
  if (bytes.length) {
    bytes[bytes.length - 1] += 1;
    range.range_end = btoa(String.fromCharCode(...bytes));
  } else {
    range.range_end = "AA==";
  }
  return range;
}

function v3Hash(prefix) {
  return "#/v3/" + encodeURIComponent(prefix);
}

/** A percent-encoded fragment as typed or linked (left as it is when it does not decode). */
function decodeFragment(text) {
  try { return decodeURIComponent(text); } catch { return text; }
}

function v3ErrorText(answer) {
  const body = answer.body;
  if (body && typeof body === "object" && body.error) return `${body.error} (code ${body.code})`;
  return `HTTP ${answer.status}` + (typeof body === "string" && body ? ": " + body.trim() : "");
}

function showV3Keys(prefix) {
  const state = { revision: 0, stopped: false, controller: null };
  leave = () => {
    state.stopped = true;
    if (state.controller) state.controller.abort();
  };
  const live = h("span", { id: "live", class: "live" }, "connecting");
  const message = h("div", { id: "message", class: "message", role: "status" });
  const listing = h("div", { id: "listing" });
  const editor = h("div", { id: "editor" });
  const prefixInput = h("input", { id: "v3-prefix", value: prefix, placeholder: "prefix (empty: every key)" });
  const prefixForm = h("form", { class: "bar", onsubmit: (event) => {
    event.preventDefault();
    location.hash = v3Hash(prefixInput.value);
  } }, h("label", {}, "v3 keys with prefix ", prefixInput), h("button", { type: "submit" }, "Show"), live);
  view.replaceChildren(prefixForm, message, listing, editor);
  const setLive = (on, text) => { live.textContent = text; live.className = "live " + (on ? "on" : "off"); };

  async function load() {
    const answer = await call("/v3/kv/range", { method: "POST",
      json: { ...prefixRange(prefix), limit: v3KeysMax, sort_order: "ASCEND", sort_target: "KEY" } });
    if (state.stopped) return;
    if (answer.status !== 200) return say(message, "Could not read the keys: " + v3ErrorText(answer), true);
    state.revision = Math.max(state.revision, Number(answer.body.header.revision));
    render(answer.body.kvs || [], Number(answer.body.count || 0));
  }

  function render(kvs, count) {
    const rows = kvs.map((kv) => {
      const item = { key: fromBase64(kv.key), value: fromBase64(kv.value), mod: kv.mod_revision };
      return h("tr", { "data-key": item.key },
        h("td", {}, item.key), h("td", { class: "value" }, item.value),
        h("td", { class: "num" }, kv.version), h("td", { class: "num" }, kv.create_revision),
        h("td", { class: "num" }, kv.mod_revision), h("td", { class: "num" }, kv.lease || ""),
        h("td", {}, h("button", { class: "plain", onclick: () => openEditor(item) }, "Edit"), " ",
          h("button", { class: "danger", onclick: () => remove(item) }, "Delete")));
    });
    listing.replaceChildren(
      h("h2", {}, `${count} key${count === 1 ? "" : "s"} with prefix "${prefix}"` +
        (count > kvs.length ? ` (the first ${kvs.length} shown)` : "") + ` at revision ${state.revision}`),
      h("table", { id: "keys" },
        h("thead", {}, h("tr", {}, ["Key", "Value", "Version", "Created", "Modified", "Lease", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "hint" }, "none")))),
      createForm());
  }

  /** Create is a transaction that puts only if the key does not exist (its create revision is 0). */
  function createForm() {
    const key = h("input", { name: "key", id: "new-key", value: prefix, required: true });
    const value = h("textarea", { name: "value", id: "new-value" });
    return h("form", { class: "panel", id: "create", onsubmit: async (event) => {
      event.preventDefault();
      const name = key.value;
      const ok = await transact(name, { target: "CREATE", create_revision: "0" },
        { request_put: { key: toBase64(name), value: toBase64(value.value) } },
        () => `Created ${name}.`, () => `${name} already exists: it was not overwritten.`);
      if (ok) value.value = "";
    } },
    h("label", {}, "Key", key), h("label", {}, "Value", value), h("button", { type: "submit" }, "Create"));
  }

  /** The edit form keeps the revision it was opened at: the save puts only if the key was not changed since. */
  function openEditor(item) {
    const value = h("textarea", { name: "value", id: "edit-value" }, item.value);
    editor.replaceChildren(h("form", { class: "panel", id: "edit", onsubmit: async (event) => {
      event.preventDefault();
      const ok = await transact(item.key, { target: "MOD", mod_revision: item.mod },
        { request_put: { key: toBase64(item.key), value: toBase64(value.value) } },
        () => `Saved ${item.key}.`, conflict(item));
      if (ok) editor.replaceChildren();
    } },
    h("label", {}, `Edit ${item.key} (as of revision ${item.mod})`, value),
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "plain", onclick: () => editor.replaceChildren() }, "Cancel")));
    value.focus();
  }

  async function remove(item) {
    if (!confirm(`Delete ${item.key}?`)) return;
    await transact(item.key, { target: "MOD", mod_revision: item.mod }, { request_delete_range: { key: toBase64(item.key) } },
      () => `Deleted ${item.key}.`, conflict(item));
  }

  function conflict(item) {
    return () => `Conflict: another client changed ${item.key} after you opened it at revision ${item.mod}. ` +
      "Your change was not saved; the page shows the current value and your text stays in the form.";
  }

  /** One compare-and-act transaction; reports success, or the refusal when the compare failed. */
  async function transact(key, compare, operation, success, refused) {
    let answer;
    try {
      answer = await call("/v3/kv/txn", { method: "POST", json: {
        compare: [{ key: toBase64(key), result: "EQUAL", ...compare }], success: [operation] } });
    } catch (error) {
      say(message, "The request failed: " + error.message, true);
      return false;
    }
    if (answer.status !== 200) {
      say(message, v3ErrorText(answer), true);
      return false;
    }
    const succeeded = answer.body.succeeded === true;
    say(message, succeeded ? success() : refused(), !succeeded);
    await load().catch(() => {});
    return succeeded;
  }

  /** Reads the watch stream's lines; any event re-reads the listing. Resumes after a drop from the revision seen. */
  async function watch() {
    let pauseMs = 250;
    while (!state.stopped) {
      state.controller = new AbortController();
      try {
        const response = await fetch("/v3/watch", { method: "POST", signal: state.controller.signal,
          body: JSON.stringify({ create_request: { ...prefixRange(prefix), start_revision: String(state.revision + 1) } }) });
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        setLive(true, "live");
        pauseMs = 250;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let pending = "";
        while (!state.stopped) {
          const { value, done } = await reader.read();
          if (done) break;
          pending += value;
          let end;
          while ((end = pending.indexOf("\n")) >= 0) {
            const line = pending.slice(0, end);
            pending = pending.slice(end + 1);
            const result = JSON.parse(line).result || {};
            if (result.canceled) { await load(); throw new Error("watch cancelled"); }
            if (result.events) await load();
          }
        }
      } catch (error) {
        if (state.stopped) return;
      }
      setLive(false, "reconnecting");
      await sleep(pauseMs);
      pauseMs = Math.min(pauseMs * 2, watchRetryMsMax);
    }
  }

  load().then(() => watch(), (error) => {
    setLive(false, "offline");
    say(message, "Could not read the keys: " + error.message, true);
    watch();
  });
}
