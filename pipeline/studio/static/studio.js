// The studio's small script layer: live validation, live run charts (uPlot), the ledger's sort/filter,
// streamed chat, and polling of jobs. No build step; one file.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

async function api(url, data) {
  const response = await fetch(url, {
    method: data === undefined ? "GET" : "POST",
    headers: { "Content-Type": "application/json" },
    body: data === undefined ? undefined : JSON.stringify(data),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

const fmt = (v, digits = 4) => (v === null || v === undefined ? "–" : Number(v).toPrecision(digits));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
    : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// A uPlot line chart in el: x values and one or more named series; redraw with chart.setData.
function lineChart(el, title, names, width) {
  const colors = ["#1f6feb", "#d9480f", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599"];
  const series = [{ label: "step" }].concat(names.map((name, i) => ({
    label: name, stroke: colors[i % colors.length], width: 2, spanGaps: true, points: { show: false },
  })));
  const data = [[]].concat(names.map(() => []));
  return new uPlot({ title, width: width || Math.min(560, el.clientWidth || 560), height: 220, series,
    scales: { x: { time: false } } }, data, el);
}

// Job output: poll a job until it ends, showing its tail in pre.
async function followJob(id, pre, done) {
  pre.hidden = false;
  for (;;) {
    const job = await api(`/api/jobs/${id}`);
    pre.textContent = `$ pipeline ${job.command}\n${job.tail}\n[${job.state}${job.returncode !== null ? `, exit ${job.returncode}` : ""}]`;
    pre.scrollTop = pre.scrollHeight;
    if (!["queued", "running"].includes(job.state)) { if (done) done(job); return job; }
    await new Promise((r) => setTimeout(r, 700));
  }
}

// ---- recipe editor
function recipePage() {
  const form = $("#recipe-form");
  const recipe = form.dataset.recipe;
  const yaml = $("#recipe-yaml");
  let mode = "form";
  const request = () => {
    if (mode === "yaml") return { recipe, yaml: yaml.value };
    const overrides = $$("[data-key]", form)
      .filter((el) => el.value !== el.dataset.initial)
      .map((el) => `${el.dataset.key}=${el.value}`);
    return { recipe, overrides };
  };
  const quote = (s) => (/^[\w.\/=:-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  const showPlan = debounce(async (req) => {
    $("#plan").textContent = "computing…";
    try {
      const plan = await api("/api/recipes/plan", req);
      if (!plan.ok) { $("#plan").textContent = plan.errors.join("\n"); return; }
      const rows = (p) => p.rows.map((r) => `<tr><td>${r.component}</td><td class="num">${r.gib.toFixed(2)}</td><td>${r.how}</td></tr>`).join("");
      $("#plan").innerHTML = `<p>${(plan.params / 1e6).toFixed(1)} M weights, ${(plan.trainable / 1e6).toFixed(2)} M trained</p>` +
        ["cpu", "cuda"].map((d) => `<table><caption>${d === "cpu" ? "CPU (process memory)" : "one GPU"}: ${plan.plans[d].total_gib.toFixed(2)} GiB</caption>${rows(plan.plans[d])}</table>`).join("");
    } catch (err) { $("#plan").textContent = err.message; }
  }, 400);
  const check = debounce(async () => {
    const req = request();
    const result = await api("/api/recipes/validate", req);
    $("#status").textContent = result.ok ? "valid: the CLI accepts this recipe" : "the CLI would refuse this recipe:";
    $("#status").className = result.ok ? "ok" : "error";
    $("#errors").innerHTML = "";
    for (const line of result.errors) { const li = document.createElement("li"); li.textContent = line; $("#errors").append(li); }
    const path = $("#command").dataset.path || $("#command").textContent.replace(/^pipeline finetune /, "");
    $("#command").dataset.path = path;
    $("#command").textContent = `pipeline finetune ${path}${(req.overrides || []).map((o) => " " + quote(o)).join("")}`;
    $("#start").disabled = !result.ok || mode === "yaml";
    $("#start-note").textContent = mode === "yaml" ? "Save the YAML as a recipe, then start it from there." : "";
    if (result.ok) showPlan(req);
  }, 250);
  form.addEventListener("input", check);
  form.addEventListener("change", check);
  yaml.addEventListener("input", check);
  $$(".tabs button").forEach((b) => b.addEventListener("click", () => {
    mode = b.dataset.tab;
    $$(".tabs button").forEach((x) => x.classList.toggle("on", x === b));
    form.hidden = mode !== "form";
    yaml.hidden = mode !== "yaml";
    check();
  }));
  $("#estimate").addEventListener("click", async () => {
    const out = $("#estimate-output");
    try {
      const job = await api("/api/recipes/estimate", request());
      await followJob(job.id, out);
    } catch (err) { out.hidden = false; out.textContent = err.message; }
  });
  $("#save").addEventListener("click", async () => {
    try {
      const saved = await api("/api/recipes/save", { ...request(), name: $("#save-name").value || $("#save-name").placeholder });
      $("#save-result").innerHTML = `saved <a href="/recipes/edit?recipe=${encodeURIComponent(saved.path)}">${saved.path}</a>`;
    } catch (err) { $("#save-result").textContent = err.message; }
  });
  $("#start").addEventListener("click", async () => {
    try { await api("/api/train", request()); window.location = "/train"; }
    catch (err) { $("#start-note").textContent = err.message; }
  });
  check();
}

// ---- training queue
function trainPage() {
  const box = $("#jobs");
  const draw = (jobs) => {
    if (!jobs.length) return;
    box.innerHTML = "";
    for (const job of jobs) {
      const div = document.createElement("div");
      div.className = "job";
      div.dataset.state = job.state;
      div.innerHTML = `<h3><span class="state ${job.state}">${job.state}</span> ${job.label} ${job.run ? `<a href="/runs/${encodeURIComponent(job.run)}">${job.run}</a>` : ""}</h3><code></code><pre class="log"></pre>`;
      $("code", div).textContent = `pipeline ${job.command}`;
      $("pre", div).textContent = job.tail;
      if (["queued", "running"].includes(job.state)) {
        const stop = document.createElement("button");
        stop.textContent = job.state === "queued" ? "Remove from queue" : "Stop";
        stop.onclick = () => api(`/api/jobs/${job.id}/stop`, {});
        $("h3", div).append(stop);
      }
      box.append(div);
    }
  };
  draw(JSON.parse($("#jobs-data").textContent));
  setInterval(async () => draw(await api("/api/jobs")), 1000);
}

// ---- a run, live
const PREF_SKIP = new Set(["kind", "schema_version", "time", "step", "total_steps", "epoch", "loss",
  "learning_rate", "grad_norm", "tokens_per_second", "seconds_left"]);

function runPage(preference) {
  const name = $("#run-data").dataset.run;
  const charts = {};
  const data = { steps: [], loss: [], lr: [], grad: [], tps: [], evalLoss: [], extra: {} };
  if (!preference) {
    charts.loss = lineChart($("#chart-loss"), "loss", ["train loss", "eval loss"]);
    charts.lr = lineChart($("#chart-lr"), "learning rate", ["learning rate"]);
    charts.grad = lineChart($("#chart-grad"), "grad norm", ["grad norm"]);
    charts.tps = lineChart($("#chart-tps"), "tokens/s", ["tokens/s"]);
  }
  const log = $("#log");
  const redraw = debounce(() => {
    if (preference) return drawPreference(data);
    charts.loss.setData([data.steps, data.loss, data.evalLoss]);
    charts.lr.setData([data.steps, data.lr]);
    charts.grad.setData([data.steps, data.grad]);
    charts.tps.setData([data.steps, data.tps]);
  }, 100);
  const setState = (state) => {
    const el = $("#state");
    if (!el) return;
    el.textContent = state; el.className = `state ${state}`;
    $("#stop").hidden = state !== "running" || !$("#run-data").dataset.job;
    $("#resume").hidden = state !== "stopped";
  };
  const source = new EventSource(`/api/runs/${encodeURIComponent(name)}/events`);
  source.onmessage = (message) => {
    const e = JSON.parse(message.data);
    if (log) { log.textContent += `${new Date(e.time * 1000).toLocaleTimeString()} ${e.kind}${e.step !== undefined && e.step !== null ? " " + e.step : ""}${e.loss !== undefined && e.loss !== null ? " loss " + fmt(e.loss) : ""}${e.message ? " " + e.message : ""}${e.error ? " " + e.error : ""}\n`; log.scrollTop = log.scrollHeight; }
    if (e.kind === "step") {
      if (e.loss === null && !preference) return;
      const i = data.steps.indexOf(e.step);
      const at = i >= 0 ? i : data.steps.length;
      data.steps[at] = e.step; data.loss[at] = e.loss; data.lr[at] = e.learning_rate; data.grad[at] = e.grad_norm;
      data.tps[at] = e.tokens_per_second; data.evalLoss[at] = data.evalLoss[at] ?? null;
      for (const [k, v] of Object.entries(e)) if (!PREF_SKIP.has(k) && typeof v === "number") (data.extra[k] ||= [])[at] = v;
      if (!preference) {
        $("#s-step").textContent = `${e.step} / ${e.total_steps}`;
        $("#s-loss").textContent = fmt(e.loss);
        $("#s-lr").textContent = fmt(e.learning_rate, 3);
        $("#s-grad").textContent = fmt(e.grad_norm, 3);
        if (e.tokens_per_second) $("#s-tps").textContent = fmt(e.tokens_per_second, 3);
        $("#s-left").textContent = duration(e.seconds_left);
      }
      setState("running");
      redraw();
    } else if (e.kind === "evaluation" && e.phase === "held_out" && !preference) {
      let i = data.steps.indexOf(e.step);
      if (i < 0) { i = data.steps.length; data.steps[i] = e.step; data.loss[i] = null; data.lr[i] = null; data.grad[i] = null; data.tps[i] = null; }
      data.evalLoss[i] = e.metrics.loss;
      $("#s-eval").textContent = fmt(e.metrics.loss);
      redraw();
    } else if (["started", "prepared"].includes(e.kind)) {
      setState("running");
    } else if (["finished", "stopped", "failed"].includes(e.kind)) {
      setState(e.kind);
      if (e.kind === "finished" && e.metrics && e.metrics.tokens_per_second && !preference) $("#s-tps").textContent = fmt(e.metrics.tokens_per_second, 3);
    }
  };
  source.addEventListener("end", () => source.close());
  if (!preference) {
    $("#stop").addEventListener("click", () => api(`/api/runs/${encodeURIComponent(name)}/stop`, {}));
    $("#resume").addEventListener("click", async () => {
      const job = await api(`/api/runs/${encodeURIComponent(name)}/resume`, {});
      $("#run-data").dataset.job = job.id;
      window.location.reload();
    });
  }
}

function drawPreference(data) {
  const box = $("#pref-charts");
  const keys = Object.keys(data.extra).sort();
  $("#pref-empty").hidden = keys.length > 0;
  for (const key of keys) {
    let el = box.querySelector(`[data-metric="${CSS.escape(key)}"]`);
    if (!el) { el = document.createElement("div"); el.dataset.metric = key; box.append(el); el.chart = lineChart(el, key, [key]); }
    el.chart.setData([data.steps, data.steps.map((_, i) => data.extra[key][i] ?? null)]);
  }
  const flat = data.extra.frac_reward_zero_std;
  if (flat && flat.length) {
    const last = flat.filter((v) => v !== undefined).slice(-3);
    const mean = last.reduce((a, b) => a + b, 0) / last.length;
    $("#flat-warning").hidden = mean < 0.9;
    $("#flat-warning").textContent = `${Math.round(mean * 100)}% of prompt groups had rewards that did not vary over the last logged steps: the run learns little from them (more generations per prompt, a graded reward, or harder prompts).`;
  }
}

// ---- the ledger
function runsPage() {
  const table = $("#ledger");
  const picks = () => $$(".pick:checked").map((c) => c.value);
  table.addEventListener("change", () => { $("#compare").disabled = picks().length < 2; });
  $("#compare").addEventListener("click", () => {
    window.location = "/compare?" + picks().map((p) => `run=${encodeURIComponent(p)}`).join("&");
  });
  $("#filter").addEventListener("input", (ev) => {
    const words = ev.target.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of $$("tbody tr", table)) row.hidden = !words.every((w) => row.textContent.toLowerCase().includes(w));
  });
  $$("th[data-key]", table).forEach((th, index) => th.addEventListener("click", () => {
    const column = index + 1;
    const numeric = th.classList.contains("num");
    const descending = th.dataset.sorted !== "desc";
    $$("th", table).forEach((x) => delete x.dataset.sorted);
    th.dataset.sorted = descending ? "desc" : "asc";
    const value = (row) => { const cell = row.children[column]; return numeric ? parseFloat(cell.dataset.value) || 0 : cell.textContent.trim(); };
    const rows = $$("tbody tr", table).sort((a, b) => (value(a) > value(b) ? 1 : value(a) < value(b) ? -1 : 0) * (descending ? -1 : 1));
    $("tbody", table).append(...rows);
  }));
}

// ---- compare
function comparePage() {
  const { names, curves } = JSON.parse($("#compare-data").textContent);
  const steps = Array.from(new Set(curves.flatMap((c) => c.steps))).sort((a, b) => a - b);
  const series = curves.map((c) => steps.map((s) => { const i = c.steps.indexOf(s); return i >= 0 ? c.loss[i] : null; }));
  const chart = lineChart($("#chart-compare"), "training loss by step", names, 900);
  chart.setData([steps, ...series]);
}

// ---- chat
function chatPage() {
  $("#send").addEventListener("click", () => {
    const prompt = $("#prompt").value.trim();
    if (!prompt) return;
    for (const side of ["left", "right"]) {
      const box = $(`#answer-${side}`);
      const stats = $(`#stats-${side}`);
      box.textContent = ""; stats.textContent = "loading / generating…";
      const query = new URLSearchParams({ target: $(`#target-${side}`).value, prompt, system: $("#system").value,
        max_new_tokens: $("#max-new-tokens").value, temperature: $("#temperature").value, seed: $("#seed").value });
      const source = new EventSource(`/api/chat/stream?${query}`);
      source.onmessage = (message) => {
        const m = JSON.parse(message.data);
        if (m.piece !== undefined) box.textContent += m.piece;
        if (m.done) { stats.textContent = `${m.tokens} tokens, ${(m.tokens / Math.max(m.seconds, 1e-6)).toFixed(1)} tokens/s`; box.dataset.done = "1"; source.close(); }
        if (m.error) { stats.textContent = m.error; stats.className = "error"; source.close(); }
      };
      source.onerror = () => source.close();
    }
  });
}

// ---- data checks and shipping: a task whose output is shown
function dataPage() {
  $$(".data-check").forEach((b) => b.addEventListener("click", async () => {
    const job = await api(`/api/data/${b.dataset.what}`, { recipe: b.dataset.recipe });
    followJob(job.id, $("#data-job"), (done) => { if (done.state === "finished") window.location.reload(); });
  }));
}

function shipPage() {
  const name = decodeURIComponent(window.location.pathname.split("/")[2]);
  $$(".ship-form").forEach((form) => form.addEventListener("submit", async () => {
    const data = { action: form.dataset.action };
    for (const el of $$("select, input", form)) data[el.name] = el.type === "checkbox" ? el.checked : el.value;
    try { const job = await api(`/api/runs/${encodeURIComponent(name)}/ship`, data); followJob(job.id, $("#ship-output")); }
    catch (err) { $("#ship-output").hidden = false; $("#ship-output").textContent = err.message; }
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  const path = window.location.pathname;
  if ($("#recipe-form")) recipePage();
  else if ($("#jobs-data")) trainPage();
  else if ($("#ledger")) runsPage();
  else if ($("#compare-data")) comparePage();
  else if ($("#chat-form")) chatPage();
  else if ($(".data-check")) dataPage();
  else if ($(".ship-form")) shipPage();
  else if ($("#run-data")) runPage(path.endsWith("/preference"));
});
