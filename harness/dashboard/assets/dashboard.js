// Draws the data `moba dashboard` computed (data.js: window.MOBA_DASHBOARD, described in
// harness/dashboard_views.hpp). Charts are Vega-Lite specs rendered by vega-embed as SVG;
// nothing here computes a number a report does not hold. When done it writes a summary into
// <pre id="render-status"> (charts, their mark counts, console errors) for the browser test.
"use strict";

const status = { done: false, errors: [], charts: {}, problems: 0, bad: 0 };

// Every console error and uncaught failure is recorded, so the test can fail on it.
const consoleError = console.error.bind(console);
console.error = (...args) => {
  status.errors.push(args.map(String).join(" "));
  consoleError(...args);
};
window.addEventListener("error", (e) => status.errors.push(`uncaught: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => status.errors.push(`unhandled rejection: ${e.reason}`));

const OUTCOME_COLORS = {
  domain: ["passed", "incorrect", "failed", "not supported", "skipped"],
  range: ["#4c9a2a", "#d62728", "#7f0000", "#9e9e9e", "#cfcfcf"],
};
const VERDICT_COLORS = {
  domain: ["first", "same", "ambiguous", "faster", "slower", "better", "fixed", "worse", "regressed", "changed", "not passed"],
  range: ["#555555", "#9e9e9e", "#ff9f1c", "#2ca02c", "#d62728", "#2ca02c", "#2ca02c", "#d62728", "#7f0000", "#8c564b", "#7f7f7f"],
};
// The history's verdicts (compare's Verdict, and the first point of a series).
const HISTORY_COLORS = { domain: ["first", "same", "ambiguous", "faster", "slower"], range: ["#555555", "#9e9e9e", "#ff9f1c", "#2ca02c", "#d62728"] };
const HISTORY_SHAPES = { domain: HISTORY_COLORS.domain, range: ["circle", "circle", "diamond", "triangle-down", "triangle-up"] };
// Lengths as the project writes them: 8K, 512K, 1M.
const LENGTH_LABEL = "datum.value >= 1048576 ? format(datum.value / 1048576, '~g') + 'M' : format(datum.value / 1024, '~g') + 'K'";

const pending = [];

// `scale` (domain and range) cut to the values that occur, so a legend lists only those.
function present(scale, values) {
  const keep = scale.domain.map((d, i) => [d, scale.range[i]]).filter(([d]) => values.includes(d));
  return { domain: keep.map(([d]) => d), range: keep.map(([, r]) => r) };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

function formatCell(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// A table of `rows` (objects) with `columns` [[key, heading]]; folded when long.
function table(rows, columns, { open = rows.length <= 25, rowClass = () => "" } = {}) {
  const head = el("tr", {}, ...columns.map(([, h]) => el("th", {}, h)));
  const body = rows.map((r) => {
    const tr = el("tr", { class: rowClass(r) });
    for (const [k] of columns) {
      const v = r[k];
      tr.append(el("td", { class: typeof v === "number" ? "num" : "" }, formatCell(v)));
    }
    return tr;
  });
  const details = el("details", {}, el("summary", {}, `table (${rows.length} rows)`), el("table", {}, head, ...body));
  if (open) details.open = true;
  return details;
}

function countMarks(container) {
  const marks = {};
  for (const type of ["symbol", "line", "rule", "rect", "text", "bar"]) {
    const n = container.querySelectorAll(`g.mark-${type}.role-mark > *`).length;
    if (n) marks[type] = n;
  }
  return marks;
}

// Renders `spec` into a new chart div appended to `parent`, recorded under `id`.
function chart(parent, id, spec) {
  const div = el("div", { class: "chart", id: `chart-${id}` });
  parent.append(div);
  const full = { $schema: "https://vega.github.io/schema/vega-lite/v5.json", ...spec };
  const done = vegaEmbed(div, full, { renderer: "svg", actions: false })
    .then(() => {
      const svg = div.querySelector("svg");
      status.charts[id] = { rendered: !!svg && svg.childElementCount > 0, marks: countMarks(div) };
    })
    .catch((e) => {
      status.charts[id] = { rendered: false, error: String(e) };
      console.error(`chart ${id}: ${e}`);
    });
  pending.push(done);
  return done;
}

function note(parent, text) {
  parent.append(el("p", { class: "note" }, text));
}

function groupBy(rows, keyOf) {
  const groups = new Map();
  for (const r of rows) {
    const k = keyOf(r);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return groups;
}

// Log-2 length axis whose ticks are the lengths measured (a log axis's own ticks fall between them).
function lengthAxis(rows) {
  const values = [...new Set(rows.map((r) => r.length))].sort((a, b) => a - b);
  return { field: "length", type: "quantitative", title: "tokens", scale: { type: "log", base: 2 }, axis: { values, labelExpr: LENGTH_LABEL, grid: true } };
}

function renderHeader(data) {
  const shown = data.reports.length;
  const invalid = data.problems.filter((p) => p.kind === "invalid").length;
  const skipped = data.problems.length - invalid;
  const gpus = new Set(data.reports.map((r) => r.gpu));
  const commits = new Set(data.reports.map((r) => r.commit));
  document.getElementById("summary").textContent =
    `${shown} reports shown (${gpus.size} GPUs, ${commits.size} commits), ${invalid} invalid, ${skipped} skipped. ` +
    `Generated by ${data.generated_by}; compare threshold ${100 * data.threshold}%.`;
}

function renderProblems(data) {
  status.problems = data.problems.length;
  if (!data.problems.length) return;
  const box = document.getElementById("problems");
  box.hidden = false;
  const invalid = data.problems.filter((p) => p.kind === "invalid").length;
  const parts = [];
  if (invalid) parts.push(`${invalid} invalid report(s) not shown`);
  if (data.problems.length > invalid) parts.push(`${data.problems.length - invalid} file(s) skipped`);
  box.append(el("h2", {}, parts.join("; ")));
  const list = el("ul");
  for (const p of data.problems) {
    const item = el("li", { class: p.kind }, el("strong", {}, `${p.kind}: `), el("code", {}, p.path), ` — ${p.message}`);
    if (p.details.length) item.append(el("ul", {}, ...p.details.map((d) => el("li", {}, el("code", {}, d)))));
    list.append(item);
  }
  box.append(list);
}

function renderAlarm(data) {
  const bad = data.correctness.bad;
  status.bad = bad.length;
  if (!bad.length) return;
  const box = document.getElementById("alarm");
  box.hidden = false;
  const reports = new Set(bad.map((b) => b.report));
  box.append(
    el("h2", {}, `${bad.length} record(s) incorrect or failed, in ${reports.size} report(s)`),
    el("p", {}, "Listed under ", el("a", { href: "#correctness-bad" }, "Correctness"), ": ", [...reports].join(", ")),
  );
}

function renderFig2(data, body, onlyFigure) {
  const { time, speedup } = data.fig2;
  if (!time.length) {
    note(body, "No `moba paper` records (records carrying \"published\") in these reports.");
    return;
  }
  note(body,
    "Forward time and speedup over full attention against length (log axes), from `moba paper` records: " +
    "ours (the latest record per GPU, implementation and length), the published points of the MoBA report's " +
    "Figure 2 that each record carries (values read off the paper's plot, on the paper's GPU: reference/SEMANTICS.md §7), " +
    "and the ideal speedup (dense pairs / MoBA pairs). " +
    "Our speedup is over the dense implementation measured in the same run.");
  const figures = [...new Set(time.map((r) => r.figure))].sort();
  for (const figure of figures) {
    if (onlyFigure && figure !== onlyFigure) continue;
    body.append(el("h3", {}, `Figure ${figure}`));
    for (const [gpu, rows] of groupBy(time.filter((r) => r.figure === figure), (r) => r.gpu)) {
      const speed = speedup.filter((r) => r.figure === figure && r.gpu === gpu);
      const row = el("div", { class: "charts" });
      body.append(row);
      const base = (title, ytitle, values) => ({
        title: { text: `Figure ${figure}, ${gpu}: ${title}`, fontSize: 13 },
        width: 380, height: 260,
        encoding: {
          x: lengthAxis(values),
          y: { field: "value", type: "quantitative", title: ytitle, scale: { type: "log" } },
          color: { field: "series", type: "nominal", title: null, legend: { orient: "bottom", columns: 2 } },
          strokeDash: { condition: { test: "indexof(datum.series, 'published') == 0 || datum.series == 'ideal'", value: [5, 3] }, value: [1, 0] },
          tooltip: [{ field: "series" }, { field: "length" }, { field: "value", format: ".4g" }, { field: "report" }, { field: "commit" }],
        },
        layer: [{ mark: { type: "line" } }, { mark: { type: "point", filled: true, size: 50 } }],
      });
      chart(row, `fig${figure}-${slug(gpu)}-time`, { ...base("forward time", "ms", rows), data: { values: rows } });
      chart(row, `fig${figure}-${slug(gpu)}-speedup`, { ...base("speedup over full attention", "speedup ×", speed), data: { values: speed } });
      if (!speed.some((r) => r.series === "published") && !rows.some((r) => r.series.startsWith("published")))
        note(body, `No published points in these records for ${gpu}: only ours and the ideal are shown.`);
      const cols = [["length", "tokens"], ["series", "series"], ["value", "value"], ["report", "report"], ["commit", "commit"]];
      body.append(table(rows.map((r) => ({ ...r, value: r.value })), cols.map(([k, h]) => [k, k === "value" ? "ms" : h])));
      body.append(table(speed, cols.map(([k, h]) => [k, k === "value" ? "speedup" : h])));
    }
  }
}

function renderThroughput(data, body) {
  const rows = data.throughput;
  if (!rows.length) return note(body, "No passed bench records with TFLOP/s in these reports.");
  note(body, "TFLOP/s (attended pairs only, README) per implementation against length, one chart per GPU, head layout and phase; the latest record of each configuration. A line joins one implementation's points of one shape (D, block, top-k, dtype).");
  const row = el("div", { class: "charts" });
  body.append(row);
  const groups = groupBy(rows, (r) => `${r.gpu} | ${r.layout} | ${r.phase}`);
  for (const key of [...groups.keys()].sort()) {
    chart(row, `throughput-${slug(key)}`, {
      title: { text: key, fontSize: 12 },
      width: 300, height: 200,
      data: { values: groups.get(key) },
      encoding: {
        x: lengthAxis(groups.get(key)),
        y: { field: "tflops", type: "quantitative", title: "TFLOP/s" },
        color: { field: "impl", type: "nominal", legend: { orient: "bottom", columns: 2 } },
        detail: { field: "series" },
        tooltip: [{ field: "series" }, { field: "config" }, { field: "gating" }, { field: "tflops", format: ".4g" }, { field: "report" }],
      },
      layer: [{ mark: "line" }, { mark: { type: "point", filled: true } }],
    });
  }
  body.append(table(rows, [["gpu", "GPU"], ["layout", "layout"], ["phase", "phase"], ["impl", "impl"], ["config", "config"], ["gating", "gating"], ["tflops", "TFLOP/s"], ["report", "report"], ["commit", "commit"]]));
}

function renderHistory(data, body) {
  const rows = data.history;
  if (!rows.length) return note(body, "No bench configuration is measured at two or more commits in these reports.");
  note(body,
    `Each configuration measured at two or more commits (per GPU): median time of each report in start order, the bar from min to max, ` +
    `each point marked with \`moba compare\`'s verdict against the previous point (noise-aware, threshold ${100 * data.threshold}%).`);
  for (const [gpu, gpuRows] of groupBy(rows, (r) => r.gpu)) {
    body.append(el("h3", {}, gpu));
    chart(body, `history-${slug(gpu)}`, {
      // A point without min/max (older reports) draws no spread: its bar collapses onto the median.
      data: { values: gpuRows.map((r) => ({ ...r, point: `${r.commit} ${r.started.slice(5, 16).replace("T", " ")}`, lo: r.min_ms ?? r.median_ms, hi: r.max_ms ?? r.median_ms })) },
      facet: { field: "label", type: "nominal", title: null, header: { labelLimit: 520, labelFontSize: 11 } },
      columns: 2,
      resolve: { scale: { y: "independent", x: "independent" } },
      spec: {
        width: 420, height: 120,
        encoding: {
          x: { field: "point", type: "ordinal", title: null, sort: { field: "started" }, axis: { labelAngle: -20, labelFontSize: 9 } },
          tooltip: [{ field: "commit" }, { field: "started" }, { field: "median_ms", format: ".4g" }, { field: "min_ms", format: ".4g" }, { field: "max_ms", format: ".4g" }, { field: "verdict" }, { field: "change", format: "+.1%" }, { field: "report" }],
        },
        layer: [
          // invalid: null on every layer keeps each facet's y domain over all three fields (with
          // Vega-Lite's default filter the rule's min/max came from another dataset and fell outside).
          { mark: { type: "rule", invalid: null }, encoding: { y: { field: "lo", type: "quantitative", title: "ms", scale: { zero: false } }, y2: { field: "hi" } } },
          { mark: { type: "line", color: "#888", invalid: null }, encoding: { y: { field: "median_ms", type: "quantitative" } } },
          {
            mark: { type: "point", filled: true, size: 70, invalid: null },
            encoding: {
              y: { field: "median_ms", type: "quantitative" },
              color: { field: "verdict", type: "nominal", scale: HISTORY_COLORS, legend: { orient: "top", title: "verdict against the previous point" } },
              shape: { field: "verdict", type: "nominal", scale: HISTORY_SHAPES, legend: { orient: "top", title: "verdict against the previous point" } },
            },
          },
        ],
      },
    });
  }
  body.append(table(rows, [["label", "configuration"], ["commit", "commit"], ["started", "started"], ["median_ms", "median ms"], ["min_ms", "min"], ["max_ms", "max"], ["rel_stddev", "rel sd"], ["verdict", "verdict"], ["change", "change"], ["report", "report"]],
    { rowClass: (r) => (r.verdict === "slower" ? "bad" : "") }));
}

function renderCorrectness(data, body) {
  const { outcomes, worst, ties, bad } = data.correctness;
  const bodyBad = el("div", { id: "correctness-bad" });
  body.append(el("h3", {}, `Incorrect or failed records: ${bad.length}`), bodyBad);
  if (bad.length)
    bodyBad.append(table(bad, [["report", "report"], ["index", "#"], ["kind", "kind"], ["config", "config"], ["impl", "impl"], ["what", "check / phase"], ["outcome", "outcome"], ["ratio", "ratio"], ["reason", "reason"]],
      { open: true, rowClass: () => "bad" }));
  else note(bodyBad, "None.");

  body.append(el("h3", {}, "Records by outcome, per report"));
  note(body, "Each cell: the number of records of that outcome. Red cells are incorrect or failed records.");
  const reportCount = new Set(outcomes.map((r) => r.report)).size;
  chart(body, "outcomes", {
    data: { values: outcomes },
    width: 420, height: Math.max(60, 16 * reportCount),
    encoding: {
      y: { field: "report", type: "nominal", title: null, sort: null, axis: { labelLimit: 420 } },
      x: { field: "outcome", type: "nominal", title: null, scale: { domain: OUTCOME_COLORS.domain }, axis: { orient: "top", labelAngle: 0 } },
    },
    layer: [
      { mark: "rect", encoding: { color: { field: "outcome", type: "nominal", scale: OUTCOME_COLORS, legend: null }, tooltip: [{ field: "report" }, { field: "outcome" }, { field: "count" }] } },
      { mark: { type: "text", fontSize: 11 }, encoding: { text: { field: "count" }, color: { value: "white" } } },
    ],
  });
  body.append(table(outcomes, [["report", "report"], ["gpu", "GPU"], ["commit", "commit"], ["outcome", "outcome"], ["count", "records"]]));

  body.append(el("h3", {}, "Worst error ratio per check and tensor"));
  note(body, "The largest `ratio` (error over its bound; at most 1 passes) of each report's check records, per check and tensor.");
  if (worst.length) {
    const rowsCount = new Set(worst.map((r) => r.report)).size;
    const withColumn = worst.map((r) => ({ ...r, column: `${r.check} ${r.tensor}`.trim() }));
    chart(body, "worst-ratio", {
      data: { values: withColumn },
      width: { step: 70 }, height: Math.max(60, 16 * rowsCount),
      encoding: {
        y: { field: "report", type: "nominal", title: null, axis: { labelLimit: 420 } },
        x: { field: "column", type: "nominal", title: null, axis: { orient: "top", labelAngle: -30 } },
      },
      layer: [
        { mark: "rect", encoding: { color: { field: "worst_ratio", type: "quantitative", title: "worst ratio", scale: { type: "threshold", domain: [0.5, 1.0000001], range: ["#a6d96a", "#fdae61", "#d62728"] } }, tooltip: [{ field: "report" }, { field: "column" }, { field: "worst_ratio", format: ".3g" }, { field: "records" }] } },
        { mark: { type: "text", fontSize: 10 }, encoding: { text: { field: "worst_ratio", format: ".2g" } } },
      ],
    });
    body.append(table(withColumn, [["report", "report"], ["check", "check"], ["tensor", "tensor"], ["worst_ratio", "worst ratio"], ["records", "records"]],
      { rowClass: (r) => (r.worst_ratio > 1 ? "bad" : "") }));
  } else note(body, "No check records with a ratio.");

  body.append(el("h3", {}, "Gating near ties"));
  note(body, "Sums over each report's gating check records: near ties (boundary gap within the fp32 margin), exact ties, near-tie mismatches (excused swaps), tie violations and mismatches (failures).");
  if (ties.length) {
    const folded = [];
    for (const t of ties)
      for (const k of ["near_ties", "exact_ties", "near_tie_mismatches", "tie_violations", "mismatches"])
        if (t[k]) folded.push({ report: t.report, count: k, value: t[k] });
    chart(body, "ties", {
      data: { values: folded },
      width: 420, height: Math.max(60, 16 * ties.length),
      mark: "bar",
      encoding: {
        y: { field: "report", type: "nominal", title: null, axis: { labelLimit: 420 } },
        yOffset: { field: "count" },
        x: { field: "value", type: "quantitative", title: "count (symlog)", scale: { type: "symlog" } },
        color: { field: "count", type: "nominal", title: null, legend: { orient: "bottom" } },
        tooltip: [{ field: "report" }, { field: "count" }, { field: "value" }],
      },
    });
    body.append(table(ties, [["report", "report"], ["gpu", "GPU"], ["pairs", "pairs"], ["near_ties", "near ties"], ["exact_ties", "exact ties"], ["near_tie_mismatches", "near-tie mismatches"], ["tie_violations", "tie violations"], ["mismatches", "mismatches"]]));
  } else note(body, "No gating check records.");
}

function renderCompare(data, body) {
  const pairs = data.comparisons;
  const byId = new Map(data.reports.map((r) => [r.id, r]));
  if (!pairs.length) return note(body, "No two reports share a configuration: nothing to compare.");
  note(body,
    "`moba compare BASE NEW` of two reports, computed by the command for every two reports that share a record key (the older one is BASE). " +
    "Bench rows: median times, change and verdict (noise-aware); check rows: bound ratios; like `moba compare`, check pairs that stayed the same are counted, not listed.");
  const labelOf = (id) => { const r = byId.get(id); return `${r.path} (${r.gpu}, ${r.commit})`; };
  // Any two reports: pick BASE and NEW; the command compared every two that share a key.
  const pairOf = new Map(pairs.map((p) => [`${p.base}:${p.next}`, p]));
  const baseSelect = el("select", { id: "compare-base" });
  const nextSelect = el("select", { id: "compare-next" });
  for (const r of data.reports) {
    baseSelect.append(el("option", { value: String(r.id) }, labelOf(r.id)));
    nextSelect.append(el("option", { value: String(r.id) }, labelOf(r.id)));
  }
  const pairList = el("select", { id: "compare-pair" }, el("option", { value: "" }, `pairs that share a configuration (${pairs.length})…`));
  pairs.forEach((p) => pairList.append(el("option", { value: `${p.base}:${p.next}` }, `${labelOf(p.base)}  →  ${labelOf(p.next)}  [${p.matched ?? 0} matched]`)));
  // The latest pair with something to show (like `moba compare`, unchanged checks are not rows).
  let latest = pairs.length - 1;
  while (latest > 0 && !(pairs[latest].rows && pairs[latest].rows.length)) --latest;
  baseSelect.value = String(pairs[latest].base);
  nextSelect.value = String(pairs[latest].next);
  const view = el("div");
  body.append(el("p", {}, el("label", {}, "BASE: ", baseSelect), " ", el("label", {}, "NEW: ", nextSelect)),
    el("p", {}, el("label", {}, "or: ", pairList)), view);
  const show = () => {
    view.replaceChildren();
    const base = Number(baseSelect.value), next = Number(nextSelect.value);
    const p = pairOf.get(`${base}:${next}`);
    if (!p) {
      const reversed = pairOf.has(`${next}:${base}`);
      return view.append(el("p", { class: "note" }, base === next ? "BASE and NEW are the same report." : reversed
        ? "The command compared these two the other way round (the older report as BASE): swap BASE and NEW."
        : "These two reports share no configuration (no record key in common): `moba compare` would match nothing."));
    }
    if (p.error) return view.append(el("p", { class: "verdict-regressed" }, `compare failed: ${p.error}`));
    const counts = Object.entries(p.counts).filter(([, n]) => n).map(([k, n]) => `${k}: ${n}`).join(", ");
    view.append(el("p", {}, `BASE ${labelOf(p.base)}, NEW ${labelOf(p.next)}: ${p.matched} matched; ${counts}` +
      (p.geomean_ratio !== null ? `; geometric mean new/base ${p.geomean_ratio.toPrecision(4)}` : "") +
      (p.regression ? " — REGRESSION" : "")));
    const rows = p.rows.map((r) => ({ ...r, label: `${r.config} ${r.impl} ${r.what}` }));
    const plotted = rows.filter((r) => r.delta !== null);
    chart(view, "compare", {
      data: { values: plotted },
      width: 500, height: Math.max(40, 14 * plotted.length),
      mark: { type: "point", filled: true, size: 60 },
      encoding: {
        y: { field: "label", type: "nominal", title: null, sort: null, axis: { labelLimit: 520 } },
        x: { field: "delta", type: "quantitative", title: "bench: new/base − 1 · check: ratio change (units of the bound)" },
        color: { field: "verdict", type: "nominal", scale: present(VERDICT_COLORS, plotted.map((r) => r.verdict)) },
        shape: { field: "kind", type: "nominal" },
        tooltip: [{ field: "label" }, { field: "base" }, { field: "next" }, { field: "delta", format: "+.3g" }, { field: "noise", format: ".3g" }, { field: "verdict" }],
      },
    });
    view.append(table(rows, [["kind", "kind"], ["config", "config"], ["impl", "impl"], ["what", "phase / check"], ["base", "BASE"], ["next", "NEW"], ["delta", "change"], ["noise", "noise"], ["verdict", "verdict"]],
      { open: true, rowClass: (r) => (["slower", "regressed", "worse"].includes(r.verdict) ? "bad" : "") }));
  };
  for (const s of [baseSelect, nextSelect]) s.addEventListener("change", () => { show(); finish(); });
  pairList.addEventListener("change", () => {
    if (!pairList.value) return;
    [baseSelect.value, nextSelect.value] = pairList.value.split(":");
    show();
    finish();
  });
  show();
}

function renderReports(data, body) {
  const rows = data.reports.map((r) => ({
    ...r,
    outcome_counts: Object.entries(r.outcomes).map(([k, n]) => `${k} ${n}`).join(", "),
    commit_text: r.dirty ? `${r.commit} (dirty)` : r.commit,
  }));
  note(body, "Every report shown, grouped by GPU (device.name) and sorted by start; commit is meta.git_sha.");
  const count = groupBy(rows, (r) => `${r.gpu}\u001f${r.commit_text}`);
  const summary = [...count.entries()].map(([k, rs]) => { const [gpu, commit] = k.split("\u001f"); return { gpu, commit, reports: rs.length, records: rs.reduce((s, r) => s + r.records, 0) }; });
  chart(body, "reports", {
    data: { values: summary },
    width: 420, height: { step: 14 },
    mark: "bar",
    encoding: {
      y: { field: "commit", type: "nominal", title: "commit", sort: null },
      x: { field: "records", type: "quantitative", title: "records (symlog)", scale: { type: "symlog" } },
      color: { field: "gpu", type: "nominal", legend: { orient: "bottom" } },
      tooltip: [{ field: "gpu" }, { field: "commit" }, { field: "reports" }, { field: "records" }],
    },
  });
  body.append(table(rows, [["gpu", "GPU"], ["commit_text", "commit"], ["started", "started"], ["tool", "tool"], ["path", "path"], ["complete", "complete"], ["records", "records"], ["outcome_counts", "outcomes"]],
    { rowClass: (r) => ((r.outcomes.incorrect || r.outcomes.failed) ? "bad" : "") }));
}

function finish() {
  Promise.allSettled(pending).then(() => {
    status.done = true;
    document.getElementById("render-status").textContent = JSON.stringify(status);
  });
}

function main() {
  const data = window.MOBA_DASHBOARD;
  if (!data) {
    console.error("data.js did not define window.MOBA_DASHBOARD");
    return finish();
  }
  // #fig2a-only, #fig2b-only: that figure's charts alone (ci/dashboard_pngs.sh screenshots them).
  const only = /^#fig2([ab])-only$/.exec(window.location.hash);
  const section = (id) => document.querySelector(`#${id} .body`);
  if (only) {
    document.body.classList.add("figure-only");
    renderFig2(data, section("fig2"), `2${only[1]}`);
    return finish();
  }
  // #only-<section> (e.g. #only-history): one view alone, for screenshots of each view.
  const alone = /^#only-([a-z0-9]+)$/.exec(window.location.hash);
  renderHeader(data);
  renderProblems(data);
  renderAlarm(data);
  const views = [["fig2", renderFig2], ["throughput", renderThroughput], ["history", renderHistory],
    ["correctness", renderCorrectness], ["compare", renderCompare], ["reports", renderReports]];
  for (const [id, render] of views) {
    try {
      render(data, section(id));
    } catch (e) {
      console.error(`view ${id}: ${e && e.stack ? e.stack : e}`);
    }
    if (alone && alone[1] !== id) document.getElementById(id).hidden = true;
  }
  finish();
}

main();
