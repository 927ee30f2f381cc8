// clauseloop review page: no build step, no framework. Contract text only ever enters the page as text nodes
// (textContent / createTextNode), never as HTML, so markup inside a contract is shown, not run.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { contract: null, categories: [], results: {}, spans: [], selected: null, correction: null,
                vote: null, activeCategory: null, modelVersion: null, job: null };

function headers(json = true) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = localStorage.getItem("clauseloop-key");
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(!(options.body instanceof FormData)), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { $("key-box").hidden = false; }
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function setStatus(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

async function loadModel() {
  try {
    const info = await api("/api/models");
    $("model").textContent = "model: " + (info.version || info.model + " (loads with the first review)");
  } catch (error) { $("model").textContent = "model: " + error.message; }
}

async function loadCategories() {
  const body = await api("/api/categories");
  state.allCategories = body.categories.map((c) => c.name);
}

async function uploadContract() {
  const file = $("contract-file").files[0];
  const title = $("title").value.trim() || null;
  if (file && !$("contract-text").value.trim()) {
    const form = new FormData();
    form.append("file", file);
    if (title) form.append("title", title);
    return api("/api/contracts", { method: "POST", body: form });
  }
  return api("/api/contracts", { method: "POST", body: JSON.stringify({ text: $("contract-text").value, title }) });
}

async function startReview() {
  const status = $("status");
  $("review").disabled = true;
  try {
    setStatus(status, "uploading…");
    const added = await uploadContract();
    const contract = await api("/api/contracts/" + encodeURIComponent(added.id));
    const wanted = $("categories").value.split(",").map((s) => s.trim()).filter(Boolean);
    const job = await api("/api/review", { method: "POST",
      body: JSON.stringify({ contract_id: contract.id, ...(wanted.length ? { categories: wanted } : {}) }) });
    Object.assign(state, { contract, job: job.id, categories: job.categories, results: {}, selected: null });
    $("workspace").hidden = false;
    $("clause-panel").hidden = true;
    $("progress").max = job.total; $("progress").value = 0; $("progress").hidden = false;
    render();
    await poll(job.id);
  } catch (error) {
    setStatus(status, error.message, true);
  } finally {
    $("review").disabled = false;
  }
}

async function poll(jobId) {
  for (;;) {
    const job = await api("/api/review/" + jobId);
    if (state.job !== jobId) return;
    state.results = job.results; state.modelVersion = job.model_version;
    $("progress").value = job.done;
    setStatus($("status"), job.status === "failed" ? "review failed: " + job.error
      : `reviewed ${job.done} / ${job.total} categories` + (job.status === "done" ? ` in ${job.seconds} s` : "…"),
      job.status === "failed");
    render();
    if (job.status === "done" || job.status === "failed") { loadModel(); return; }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function collectSpans() {
  const spans = [];
  for (const category of state.categories) {
    const result = state.results[category];
    if (!result) continue;
    result.spans.forEach((span, index) => {
      if (span.start == null || span.end == null || span.end <= span.start) return;
      spans.push({ id: category + "#" + index, category, ...span });
    });
  }
  return spans;
}

function render() {
  state.spans = collectSpans();
  renderSidebar();
  renderContract();
}

function renderSidebar() {
  const list = $("category-list");
  list.replaceChildren();
  for (const category of state.categories) {
    const result = state.results[category];
    const count = state.spans.filter((s) => s.category === category).length;
    const item = document.createElement("li");
    item.dataset.category = category;
    item.classList.toggle("empty", !count);
    item.classList.toggle("active", state.activeCategory === category);
    const name = document.createElement("span");
    name.textContent = category;
    const badge = document.createElement("span");
    badge.className = "count";
    badge.textContent = !result ? "…" : result.error ? "!" : String(count);
    badge.title = !result ? "not reviewed yet" : result.error ? result.error : result.gated ? "no clause (gate)" : "";
    item.append(name, badge);
    if (count) item.addEventListener("click", () => jumpTo(category));
    list.append(item);
  }
}

function renderContract() {
  const text = state.contract.text;
  const view = $("contract");
  const cuts = new Set([0, text.length]);
  for (const s of state.spans) { cuts.add(Math.max(0, s.start)); cuts.add(Math.min(text.length, s.end)); }
  const points = [...cuts].sort((a, b) => a - b);
  const fragment = document.createDocumentFragment();
  for (let i = 0; i + 1 < points.length; i++) {
    const [from, to] = [points[i], points[i + 1]];
    const piece = document.createTextNode(text.slice(from, to));
    const covering = state.spans.filter((s) => s.start <= from && to <= s.end);
    if (!covering.length) { fragment.append(piece); continue; }
    const mark = document.createElement("mark");
    mark.className = "clause";
    mark.dataset.spans = covering.map((s) => s.id).join("|");
    mark.dataset.categories = [...new Set(covering.map((s) => s.category))].join("|");
    mark.title = mark.dataset.categories.split("|").join(", ");
    if (state.activeCategory && !covering.some((s) => s.category === state.activeCategory)) mark.classList.add("dim");
    if (state.selected && covering.some((s) => s.id === state.selected.id)) mark.classList.add("selected");
    mark.append(piece);
    mark.addEventListener("click", () => {
      if (!window.getSelection().isCollapsed) return;  // selecting a correction, not choosing a clause
      select(covering.find((s) => s.category === state.activeCategory) || covering[0]);
    });
    fragment.append(mark);
  }
  view.replaceChildren(fragment);
}

function jumpTo(category) {
  state.activeCategory = category;
  const first = state.spans.find((s) => s.category === category);
  select(first);
  const mark = [...document.querySelectorAll("mark.clause")].find((m) => m.dataset.spans.split("|").includes(first.id));
  if (mark) mark.scrollIntoView({ block: "center", behavior: "smooth" });
}

function select(span) {
  Object.assign(state, { selected: span, correction: null, vote: null });
  render();
  $("clause-panel").hidden = false;
  $("clause-category").textContent = span.category;
  $("clause-meta").textContent = `characters ${span.start}–${span.end} · confidence ${Number(span.confidence).toFixed(2)}`;
  $("clause-text").textContent = span.text;
  $("correction").hidden = true; $("correction").textContent = "";
  $("comment").value = "";
  for (const id of ["vote-up", "vote-down"]) $(id).classList.remove("chosen");
  setStatus($("feedback-status"), "");
}

function selectionOffsets() {
  const selection = window.getSelection();
  if (!selection.rangeCount || selection.isCollapsed) return null;
  const range = selection.getRangeAt(0);
  const view = $("contract");
  if (!view.contains(range.startContainer) || !view.contains(range.endContainer)) return null;
  const before = document.createRange();
  before.selectNodeContents(view);
  before.setEnd(range.startContainer, range.startOffset);
  const start = before.toString().length;
  const end = start + range.toString().length;
  return { text: state.contract.text.slice(start, end), start, end };
}

function useSelection() {
  const offsets = selectionOffsets();
  if (!offsets || !offsets.text.trim()) {
    setStatus($("feedback-status"), "select the right text in the contract first", true);
    return;
  }
  state.correction = offsets;
  $("correction").hidden = false;
  $("correction").textContent = offsets.text;
  if (!state.vote) chooseVote("down");
}

function chooseVote(vote) {
  state.vote = vote;
  $("vote-up").classList.toggle("chosen", vote === "up");
  $("vote-down").classList.toggle("chosen", vote === "down");
}

async function sendFeedback() {
  const span = state.selected;
  if (!span) return;
  if (!state.vote) { setStatus($("feedback-status"), "choose 👍 or 👎 first", true); return; }
  const user = $("user").value.trim();
  localStorage.setItem("clauseloop-user", user);
  const record = {
    contract_hash: state.contract.id, category: span.category, vote: state.vote,
    spans: [{ text: span.text, start: span.start, end: span.end }], model_version: state.modelVersion || "",
    corrected_spans: state.correction ? [state.correction] : null,
    comment: $("comment").value.trim() || null, user: user || null,
  };
  try {
    const saved = await api("/api/feedback", { method: "POST", body: JSON.stringify(record) });
    setStatus($("feedback-status"), `feedback #${saved.id} saved` + (saved.flags.length ? ` (flagged: ${saved.flags.join(", ")})` : ""));
  } catch (error) { setStatus($("feedback-status"), error.message, true); }
}

function init() {
  $("user").value = localStorage.getItem("clauseloop-user") || "";
  $("api-key").value = localStorage.getItem("clauseloop-key") || "";
  $("api-key").addEventListener("change", () => { localStorage.setItem("clauseloop-key", $("api-key").value); loadModel(); });
  $("contract-file").addEventListener("change", () => { if ($("contract-file").files.length) $("contract-text").value = ""; });
  $("review").addEventListener("click", startReview);
  $("vote-up").addEventListener("click", () => chooseVote("up"));
  $("vote-down").addEventListener("click", () => chooseVote("down"));
  $("use-selection").addEventListener("click", useSelection);
  $("send-feedback").addEventListener("click", sendFeedback);
  loadModel();
  loadCategories().catch(() => {});
}

document.addEventListener("DOMContentLoaded", init);
