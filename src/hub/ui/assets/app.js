// The live view: one state object, replaced by each `snapshot` event and
// changed by the deltas of each `deltas` event from /ui/events, rendered whole into the
// sections the server rendered first. Text from the swarm only ever goes
// in through textContent, never as markup.
"use strict";

const COLUMN_ROWS = 200;
const LOG_ROWS = 200;
const LEVELS = ["DEBUG", "INFO", "WARN", "ERROR"];
const LIMITS = { landings: 50, feed: 100, log: 500 };

let state = null;
let status = null;
let logFloor = localStorage.getItem("bones.logFloor") || "INFO";
let scheduled = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

// a table cell cut to its column's width, the whole text in its tooltip
function cell(text, attrs) {
  return el("td", Object.assign({ title: text }, attrs || {}), text);
}

function column(task) {
  if (task.status === "claimed") return "claimed";
  if (task.status === "closed") return "closed";
  const status = (id) => (state.tasks[id] ? state.tasks[id].status : null);
  const blocked = task.blocked_by.some((b) => status(b) !== "closed");
  const parentClosed = task.parent && status(task.parent) === "closed";
  return blocked || parentClosed ? "blocked" : "ready";
}

function heldBy(slot) {
  return Object.values(state.tasks).filter(
    (t) => t.status === "claimed" && (t.claimed_by === slot.slot || t.claimed_by === slot.agent)
  );
}

function lastLanding(name) {
  for (let i = state.landings.length - 1; i >= 0; i--) {
    if (state.landings[i].slot === name) return state.landings[i];
  }
  return null;
}

function age(ts) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (seconds < 90) return seconds + "s";
  if (seconds < 5400) return Math.round(seconds / 60) + "m";
  return Math.round(seconds / 3600) + "h";
}

// fresh while less than a quarter of the TTL passed, then ageing, then stale
function freshness(slot) {
  if (!slot.last_renewed) return "stale";
  const used = (Date.now() - Date.parse(slot.last_renewed)) / 1000 / (slot.ttl_s || 1);
  return used < 0.25 ? "fresh" : used < 0.75 ? "ageing" : "stale";
}

function section(id, title, ...body) {
  return el("section", { id }, el("h2", {}, title), ...body);
}

function renderHealth() {
  const list = el("ul");
  if (status) {
    for (const [name, part] of Object.entries(status.parts || {})) {
      list.append(el("li", { class: part.ok ? "ok" : "failed" }, "hub " + name + " ", part.ok ? "ok" : part.error || "failed"));
    }
  }
  for (const [name, part] of Object.entries(state.sources)) {
    list.append(el("li", { class: part.ok ? "ok" : "failed" }, name + " ", part.ok ? "followed" : part.detail));
  }
  return section("health", "Health", list);
}

function renderSlots() {
  const body = el("tbody");
  for (const slot of Object.values(state.slots)) {
    const held = heldBy(slot).map((t) => t.id).join(", ") || "–";
    const landing = lastLanding(slot.slot);
    const git = state.slot_git[slot.slot] || {};
    const count = (n) => (n === null || n === undefined ? "–" : String(n));
    body.append(
      el("tr", { "data-slot": slot.slot },
        cell(slot.slot),
        cell(slot.agent || "(unreadable lease)"),
        cell(held),
        el("td", { class: "lease " + freshness(slot), title: slot.last_renewed || "" },
          slot.last_renewed ? age(slot.last_renewed) + " ago" : "–"),
        el("td", { class: "changes" }, count(git.changes)),
        el("td", { class: "ahead-behind" }, count(git.ahead) + " / " + count(git.behind)),
        cell(landing ? age(landing.ts) + " ago: " + landing.subject : "–", { class: "last-landing" }))
    );
  }
  const head = el("tr", {}, ...["slot", "agent", "tasks held", "renewed", "changes", "ahead / behind", "last landing"].map((h) => el("th", {}, h)));
  return section("slots", "Slots (" + Object.keys(state.slots).length + ")", el("table", {}, el("thead", {}, head), body));
}

function renderBoard() {
  const columns = { ready: [], claimed: [], blocked: [], closed: [] };
  for (const task of Object.values(state.tasks)) columns[column(task)].push(task);
  const div = el("div", { class: "columns" });
  for (const [name, tasks] of Object.entries(columns)) {
    const list = el("ul");
    for (const task of tasks.slice(0, COLUMN_ROWS)) {
      list.append(el("li", { "data-task": task.id },
        el("code", {}, task.id), " " + task.title,
        task.claimed_by ? el("span", { class: "holder" }, " " + task.claimed_by) : null,
        task.blocked_by.length ? el("span", { class: "blockers" }, " blocked by " + task.blocked_by.join(", ")) : null));
    }
    if (tasks.length > COLUMN_ROWS) list.append(el("li", {}, "… " + (tasks.length - COLUMN_ROWS) + " more"));
    div.append(el("div", { class: "column", "data-column": name }, el("h3", {}, name + " (" + tasks.length + ")"), list));
  }
  return section("board", "Tasks", div);
}

async function showDiff(commit) {
  const dialog = document.getElementById("diff");
  const text = document.getElementById("diff-text");
  text.textContent = "loading " + commit + " …";
  dialog.showModal();
  const answer = await fetch("/ui/diff/" + encodeURIComponent(commit), { credentials: "same-origin" });
  text.textContent = await answer.text();
}

function renderLandings() {
  const body = el("tbody");
  for (const landing of state.landings.slice().reverse()) {
    const link = el("a", { href: "/ui/diff/" + landing.commit, onclick: (e) => { e.preventDefault(); showDiff(landing.commit); } },
      el("code", {}, landing.commit.slice(0, 12)));
    body.append(el("tr", { "data-commit": landing.commit },
      el("td", { title: landing.ts }, age(landing.ts) + " ago"),
      cell(landing.subject),
      cell(landing.slot || "–"),
      cell(landing.agent || "–"),
      cell(landing.task || "–"),
      el("td", {}, link)));
  }
  const head = el("tr", {}, ...["time", "subject", "slot", "agent", "task", "commit"].map((h) => el("th", {}, h)));
  return section("landings", "Trunk", el("table", {}, el("thead", {}, head), body));
}

function renderFeed() {
  const list = el("ul");
  for (const entry of state.feed.slice().reverse()) {
    list.append(el("li", {}, el("span", { class: "kind" }, entry.type), " " + entry.text + " ",
      el("span", { class: "origin" }, entry.origin + " " + entry.created_at)));
  }
  return section("feed", "Feed", list);
}

function renderLog() {
  const select = el("select", { id: "log-floor" }, ...LEVELS.map((l) => {
    const option = el("option", { value: l }, l + " and above");
    if (l === logFloor) option.selected = true;
    return option;
  }));
  select.addEventListener("change", () => {
    logFloor = select.value;
    localStorage.setItem("bones.logFloor", logFloor);
    render();
  });
  const floor = LEVELS.indexOf(logFloor);
  const list = el("ul");
  let shown = 0;
  for (let i = state.log.length - 1; i >= 0 && shown < LOG_ROWS; i--) {
    const entry = state.log[i];
    if (LEVELS.indexOf(entry.level) < floor) continue;
    shown++;
    list.append(el("li", { class: "level-" + entry.level.toLowerCase() },
      el("span", { class: "ts" }, entry.ts), " ", el("b", {}, entry.level), " " + (entry.msg || "–"),
      entry.err ? el("span", { class: "err" }, " " + entry.err) : null));
  }
  return section("log", "hub.log", select, list);
}

function render() {
  scheduled = false;
  if (!state) return;
  const view = document.getElementById("view");
  view.replaceChildren(renderHealth(), renderSlots(), renderBoard(), renderLandings(), renderFeed(), renderLog());
  document.body.dataset.seq = state.seq;
}

// many events in one frame render once
function schedule() {
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(render);
  }
}

function trim(list, keep) {
  while (list.length > keep) list.shift();
}

function apply(seq, delta) {
  state.seq = seq;
  switch (delta.kind) {
    case "slot":
      if (delta.state) state.slots[delta.slot] = delta.state;
      else { delete state.slots[delta.slot]; delete state.slot_git[delta.slot]; }
      break;
    case "slot_git":
      if (state.slots[delta.slot]) state.slot_git[delta.slot] = delta.git;
      break;
    case "task":
      if (delta.state) state.tasks[delta.id] = delta.state; else delete state.tasks[delta.id];
      break;
    case "landing":
      state.landings.push(delta); trim(state.landings, LIMITS.landings);
      break;
    case "feed":
      state.feed.push(delta); trim(state.feed, LIMITS.feed);
      break;
    case "log":
      state.log.push(delta); trim(state.log, LIMITS.log);
      break;
    case "source":
      state.sources[delta.name] = delta.health;
      break;
  }
}

function connect() {
  const connection = document.getElementById("connection");
  const events = new EventSource("/ui/events");
  events.addEventListener("open", () => {
    connection.textContent = "live";
    connection.className = "live";
  });
  events.addEventListener("error", () => {
    connection.textContent = "reconnecting…";
    connection.className = "connecting";
  });
  events.addEventListener("status", (e) => {
    status = JSON.parse(e.data);
    const hub = document.getElementById("hub-status");
    hub.textContent = "hub " + status.status + " (pid " + status.pid + ")";
    hub.className = status.status === "ok" ? "ok" : "failed";
    schedule();
  });
  // every (re)connection starts with a snapshot: what happened while the
  // page was away is in it
  events.addEventListener("snapshot", (e) => {
    state = JSON.parse(e.data);
    schedule();
  });
  // the changes of a burst come as one frame, in order
  events.addEventListener("deltas", (e) => {
    if (!state) return;
    for (const { seq, delta } of JSON.parse(e.data)) apply(seq, delta);
    schedule();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("diff-close").addEventListener("click", () => document.getElementById("diff").close());
  // ages shown as "12s ago" move on with the clock; nothing is fetched
  setInterval(schedule, 5000);
  connect();
});
