// streamer dashboard: plain JS + SVG, no build step, no third-party code. Reads the API of the same server.
"use strict";
(function () {
  const SEVERITIES = ["critical", "high", "medium", "low"];  // stacking order, top first
  const params = new URLSearchParams(location.search);
  const EVERY = Math.max(1, Number(params.get("refresh")) || 5);  // seconds between refreshes
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US");
  const pct = (r) => (r === null || r === undefined) ? "–" : (r * 100).toFixed(2) + " %";
  let token = sessionStorage.getItem("streamer-token") || "";
  let timer = null;

  if (params.get("window")) $("window").value = params.get("window");
  $("every").textContent = EVERY;

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, { headers: headers, cache: "no-store" });
    if (r.status === 401) throw Object.assign(new Error("token"), { unauthorized: true });
    const body = await r.json();
    if (!r.ok) throw new Error(path + ": " + (body.error || r.status));
    return body;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function fillTable(id, rows) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren(...rows);
  }

  function row(cells, attrs) {
    const tr = el("tr", attrs);
    for (const c of cells) {
      const td = el("td", c.cls ? { class: c.cls } : {}, c.text);
      if (c.testid) td.setAttribute("data-testid", c.testid);
      tr.appendChild(td);
    }
    return tr;
  }

  const time = (iso) => iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "–";

  // Stacked bars per bucket: one chart per service.
  function stackedChart(series, start, width, buckets, w, h) {
    const root = svg("svg", { width: "100%", viewBox: `0 0 ${w} ${h}`, role: "img" });
    const pad = { l: 46, r: 4, t: 4, b: 16 };
    const max = Math.max(1, ...series.map((p) => SEVERITIES.reduce((s, k) => s + (p[k] || 0), 0)));
    const bw = (w - pad.l - pad.r) / buckets;
    const y = (v) => (h - pad.b) - v / max * (h - pad.t - pad.b);
    root.appendChild(svg("line", { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b, stroke: "#ccd" }));
    const top = svg("text", { x: pad.l - 4, y: pad.t + 8, "text-anchor": "end" }); top.textContent = fmt(max);
    root.appendChild(top);
    for (const p of series) {
      const i = Math.floor((p.t - start) / width);
      if (i < 0 || i >= buckets) continue;
      let acc = 0;
      for (const k of SEVERITIES.slice().reverse()) {
        const v = p[k] || 0;
        if (!v) continue;
        const r = svg("rect", { x: pad.l + i * bw, y: y(acc + v), width: Math.max(bw - 1, 1),
                                height: y(acc) - y(acc + v), fill: `var(--${k})` });
        const title = svg("title"); title.textContent = `${time(new Date(p.t * 1000).toISOString())} ${k} ${v}`;
        r.appendChild(title);
        root.appendChild(r);
        acc += v;
      }
    }
    const left = svg("text", { x: pad.l, y: h - 3 }); left.textContent = time(new Date(start * 1000).toISOString()).slice(11, 16);
    const right = svg("text", { x: w - pad.r, y: h - 3, "text-anchor": "end" }); right.textContent = "now";
    root.append(left, right);
    return root;
  }

  function lineChart(points, w, h) {
    const root = svg("svg", { width: "100%", viewBox: `0 0 ${w} ${h}`, role: "img" });
    const pad = { l: 44, r: 4, t: 6, b: 14 };
    const max = Math.max(1, ...points.map((p) => p.v));
    const x = (i) => pad.l + i / Math.max(points.length - 1, 1) * (w - pad.l - pad.r);
    const y = (v) => (h - pad.b) - v / max * (h - pad.t - pad.b);
    root.appendChild(svg("line", { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b, stroke: "#ccd" }));
    if (points.length) {
      root.appendChild(svg("polyline", { points: points.map((p, i) => `${x(i)},${y(p.v)}`).join(" "),
                                         fill: "none", stroke: "#1565c0", "stroke-width": 1.5 }));
    }
    const top = svg("text", { x: pad.l - 4, y: pad.t + 8, "text-anchor": "end" }); top.textContent = fmt(Math.round(max));
    root.appendChild(top);
    return root;
  }

  function versionsChart(versions, w) {
    const barH = 16, gap = 6, h = versions.length * (barH + gap) + 4;
    const root = svg("svg", { width: "100%", viewBox: `0 0 ${w} ${h}`, role: "img" });
    const labelW = 140, max = Math.max(1, ...versions.map((v) => v.rows));
    versions.forEach((v, i) => {
      const yy = 2 + i * (barH + gap);
      const label = svg("text", { x: 0, y: yy + 12 }); label.textContent = v.model_version;
      root.appendChild(label);
      let acc = 0;
      for (const k of SEVERITIES) {
        const n = v.by_severity[k] || 0;
        const bw = n / max * (w - labelW - 60);
        root.appendChild(svg("rect", { x: labelW + acc, y: yy, width: bw, height: barH, fill: `var(--${k})` }));
        acc += bw;
      }
      const total = svg("text", { x: labelW + acc + 4, y: yy + 12 }); total.textContent = fmt(v.rows);
      root.appendChild(total);
    });
    return root;
  }

  function renderStatus(s) {
    $("model").textContent = "model " + s.model.model_version;
    $("model").title = `trained ${s.model.trained_at}, ${fmt(s.model.samples)} samples`;
    const b = s.broker, d = s.database;
    $("broker").textContent = b.reachable ? `broker ${b.bootstrap_servers} ok` : `broker unreachable`;
    $("broker").className = "pill " + (b.reachable ? "ok" : "bad");
    $("database").textContent = d.reachable ? `PostgreSQL ${d.server_version} (read-only)` : "database unreachable";
    $("database").className = "pill " + (d.reachable ? "ok" : "bad");
    $("lag-total").textContent = fmt(b.total_lag);
    fillTable("lag", (b.partitions || []).map((p) => row([
      { text: p.topic }, { text: p.partition, cls: "num" }, { text: p.committed === null ? "none" : fmt(p.committed), cls: "num" },
      { text: fmt(p.high_watermark), cls: "num" }, { text: fmt(p.lag), cls: "num" }])));
  }

  function renderSummary(s) {
    const t = s.totals;
    $("version-shown").textContent = s.model_version || "no rows";
    $("total-rows").textContent = fmt(t.rows);
    $("total-anomalies").textContent = fmt(t.anomalies);
    $("anomaly-rate").textContent = pct(t.anomaly_rate);
    for (const k of SEVERITIES) $("sev-" + k).textContent = fmt(t.by_severity[k]);
    $("throughput").textContent = s.throughput.per_second.toFixed(1);
    $("bucket").textContent = `(bars of ${s.bucket_seconds} s, model ${s.model_version || "–"})`;
    const buckets = Math.ceil((Date.parse(s.now) / 1000 - s.start) / s.bucket_seconds) || 1;
    $("services").replaceChildren(...s.services.map((svc) => {
      const box = el("div", { "data-service": svc.service });
      box.append(el("h3", {}, `${svc.service} · ${fmt(svc.rows)}`), stackedChart(svc.series, s.start, s.bucket_seconds, buckets, 360, 110));
      return box;
    }));
    if (!s.services.length) $("services").append(el("p", { class: "muted" }, "no events scored in this window"));
    const totals = new Map();
    for (const svc of s.services) for (const p of svc.series) {
      totals.set(p.t, (totals.get(p.t) || 0) + SEVERITIES.reduce((a, k) => a + (p[k] || 0), 0));
    }
    const points = [];
    for (let i = 0; i < buckets; i++) {
      const t = Math.floor(s.start / s.bucket_seconds) * s.bucket_seconds + i * s.bucket_seconds;
      points.push({ v: (totals.get(t) || 0) / s.bucket_seconds });
    }
    $("throughput-chart").replaceChildren(lineChart(points, 520, 140));
    $("versions-chart").replaceChildren(versionsChart(s.versions, 700));
    fillTable("versions", s.versions.map((v) => row([
      { text: v.model_version }, { text: fmt(v.rows), cls: "num", testid: "version-rows" },
      ...SEVERITIES.map((k) => ({ text: fmt(v.by_severity[k]), cls: "num" })),
      { text: fmt(v.anomalies), cls: "num" }, { text: pct(v.anomaly_rate), cls: "num" },
      { text: time(v.first_scored) }, { text: time(v.last_scored) }], { "data-version": v.model_version })));
  }

  function renderLatest(events) {
    fillTable("latest", events.map((e) => {
      const src = e.source;
      return row([{ text: time(e.predicted_at) }, { text: e.severity, cls: "sev " + e.severity },
                  { text: e.service || "–" }, { text: e.host || "–" }, { text: e.message, cls: "message" },
                  { text: `${src.topic}[${src.partition}]@${src.offset}#${src.record_index}` },
                  { text: e.anomaly_score === null ? "–" : e.anomaly_score.toFixed(3), cls: "num" }],
                 { "data-source": `${src.topic}/${src.partition}/${src.offset}/${src.record_index}` });
    }));
  }

  function renderTemplates(id, rows, rate) {
    fillTable(id, rows.map((t) => row([{ text: t.service }, { text: t.template, cls: "message" },
                                      { text: rate ? `${fmt(Math.round(t.recent_per_hour))}/h (${t.surge}×)` : fmt(t.count), cls: "num" }])));
  }

  async function refresh() {
    const win = $("window").value;
    try {
      const [status, summary, fresh, surging] = await Promise.all([
        api("/api/status"), api("/api/summary?window=" + encodeURIComponent(win)),
        api("/api/templates?kind=new&since=1h&limit=10"), api("/api/templates?kind=surging&since=1h&limit=10")]);
      let latest = { events: [] };
      if (summary.model_version) {
        const q = new URLSearchParams({ time: "scored", min_severity: "high", limit: "15", model_version: summary.model_version });
        latest = await api("/api/events?" + q.toString());
      }
      renderStatus(status);
      renderSummary(summary);
      renderLatest(latest.events);
      renderTemplates("templates-new", fresh.templates, false);
      renderTemplates("templates-surging", surging.templates, true);
      $("error").hidden = true;
      $("login").hidden = true;
      $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded) + 1);
    } catch (err) {
      if (err.unauthorized) {
        $("login").hidden = false;
      } else {
        $("error").textContent = "refresh failed: " + err.message;
        $("error").hidden = false;
      }
    }
  }

  function schedule() {
    clearTimeout(timer);
    refresh().finally(() => { timer = setTimeout(schedule, EVERY * 1000); });
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("streamer-token", token);
    schedule();
  });
  $("window").addEventListener("change", () => {
    const q = new URLSearchParams(location.search);
    q.set("window", $("window").value);
    history.replaceState(null, "", "?" + q.toString());
    schedule();
  });
  schedule();
})();
