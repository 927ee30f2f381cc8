// clauseloop reports page: the model in use (GET /api/models) and the evaluation reports (GET /api/reports).
// No build step; every value from the server enters the page as a text node, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

async function api(path) {
  const key = localStorage.getItem("clauseloop-key");
  const response = await fetch(path, { headers: key ? { Authorization: "Bearer " + key } : {} });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) $("key-box").hidden = false;
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(3);
  return String(value);
}

const share = (value) => (typeof value === "number" ? value.toFixed(3) : "–");  // metrics are 0..1

function facts(pairs) {
  const list = el("dl", null, "facts");
  for (const [label, value] of pairs) {
    if (value === undefined) continue;
    list.append(el("dt", label), el("dd", fmt(value)));
  }
  return list;
}

function renderModel(info) {
  $("model-info").replaceChildren(...facts([
    ["student", info.student], ["model", info.model], ["version", info.version || "loads with the first question"],
    ["runs", info.local ? "locally" : "remotely"],
  ]).childNodes);
  $("model-info").className = "facts";
  const manifest = info.adapter_manifest;
  const box = $("adapter-info");
  if (!manifest) { box.replaceChildren(el("p", "No adapter: the model answers with its own weights.", "muted")); return; }
  if (manifest.error) { box.replaceChildren(el("p", manifest.error, "muted")); return; }
  const data = manifest.dataset || {}, metrics = manifest.metrics || {}, config = manifest.config || {};
  box.replaceChildren(el("h3", "Adapter"), facts([
    ["base model", manifest.base_model], ["trained from", manifest.from_adapter || "the base model"],
    ["created", manifest.created], ["rows trained", data.rows_trained ?? data.rows],
    ["steps", metrics.steps], ["epochs", metrics.epochs ?? config.epochs], ["final loss", metrics.final_loss],
    ["train loss", metrics.train_loss], ["training time (s)", metrics.seconds], ["LoRA rank", config.lora_r],
    ["learning rate", config.learning_rate],
  ]));
}

function table(header, rows, caption) {
  const node = el("table");
  if (caption) node.append(el("caption", caption));
  const head = el("tr");
  header.forEach((cell) => head.append(el("th", cell)));
  const thead = el("thead");
  thead.append(head);
  node.append(thead);
  const body = el("tbody");
  for (const row of rows) {
    const line = el("tr");
    row.forEach((cell, index) => line.append(el("td", cell, index ? "num" : "")));
    body.append(line);
  }
  node.append(body);
  return node;
}

function evaluationTable(evaluations) {
  const keys = [], labels = [], extras = [];
  for (const evaluation of evaluations) {
    for (const metric of evaluation.metrics) {
      if (!keys.includes(metric.key)) { keys.push(metric.key); labels.push(metric.label); }
    }
    for (const name of Object.keys(evaluation.extras)) if (!extras.includes(name)) extras.push(name);
  }
  const rows = evaluations.map((evaluation) => {
    const byKey = Object.fromEntries(evaluation.metrics.map((m) => [m.key, m]));
    const cells = keys.map((key) => {
      const metric = byKey[key];
      if (!metric) return "–";
      return share(metric.value) + (metric.ci ? ` [${share(metric.ci[0])}, ${share(metric.ci[1])}]` : "");
    });
    return [evaluation.name, ...cells, ...extras.map((name) => fmt(evaluation.extras[name]))];
  });
  return table(["evaluation", ...labels, ...extras.map((name) => name.replaceAll("_", " "))], rows,
               "value [95 % CI over contracts]");
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function curveSvg(name, curve) {
  const width = 320, height = 260, left = 40, top = 20, size = { w: 260, h: 200 };
  const x = (recall) => left + recall * size.w, y = (precision) => top + (1 - precision) * size.h;
  const chart = svg("svg", { class: "pr-curve", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  chart.append(svg("title", {}, `precision-recall curve: ${name}`));
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { class: "grid", x1: x(tick), x2: x(tick), y1: y(0), y2: y(1) }));
    chart.append(svg("line", { class: "grid", x1: x(0), x2: x(1), y1: y(tick), y2: y(tick) }));
    chart.append(svg("text", { x: x(tick) - 8, y: y(0) + 14 }, String(tick)));
    chart.append(svg("text", { x: 8, y: y(tick) + 4 }, String(tick)));
  }
  chart.append(svg("polyline", { class: "axis", fill: "none", points: `${x(0)},${y(1)} ${x(0)},${y(0)} ${x(1)},${y(0)}` }));
  const points = curve.recall.map((recall, index) => `${x(recall).toFixed(1)},${y(curve.precision[index]).toFixed(1)}`);
  chart.append(svg("polyline", { class: "line", points: points.join(" ") }));
  chart.append(svg("text", { x: left + size.w / 2 - 16, y: height - 6 }, "recall"));
  chart.append(svg("text", { x: left + 4, y: top - 6 }, `precision · ${name}`));
  return chart;
}

function renderReport(report) {
  const box = el("article", null, "report");
  box.dataset.report = report.name;
  box.append(el("h3", report.title));
  if (report.title !== report.name) box.append(el("p", report.name, "muted"));
  if (report.evaluations.length) {
    box.append(evaluationTable(report.evaluations));
    const curves = el("div", null, "curves");
    report.evaluations.filter((e) => e.pr_curve).forEach((e) => curves.append(curveSvg(e.name, e.pr_curve)));
    if (curves.childNodes.length) box.append(curves);
  }
  for (const found of report.tables) box.append(table(found.header, found.rows, found.caption));
  return box;
}

async function load() {
  try { renderModel(await api("/api/models")); } catch (error) { $("model-info").replaceChildren(el("p", error.message)); }
  try {
    const body = await api("/api/reports");
    $("reports").replaceChildren(...body.reports.map(renderReport));
    $("reports-status").textContent = body.reports.length
      ? `${body.reports.length} reports from ${body.directory}`
      : "No reports: start the server with --reports-dir DIR (bench/results, or a `clauseloop evaluate --out` DIR).";
  } catch (error) { $("reports-status").textContent = error.message; }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").addEventListener("change", () => { localStorage.setItem("clauseloop-key", $("api-key").value); load(); });
  load();
});
