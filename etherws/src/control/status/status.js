// The etherws status page: polls the control API (JSON-RPC 2.0, listPort and listFdb) and
// shows the ports, their counters, a traffic graph per port and the forwarding table.
//
// Everything shown comes from the switch, and much of it from peers (user names, URLs,
// addresses): it is put in the page with createElement and text nodes only, never parsed as
// markup. The page's Content-Security-Policy allows no inline script either.
"use strict";

(() => {
  const INTERVAL_MS = 1500;
  const HISTORY = 60; // samples kept per port: 90 s at 1.5 s
  const NAMESPACE = "etherws.control.";

  const meta = document.querySelector('meta[name="etherws-ctlpath"]');
  const ctlpath = meta ? meta.getAttribute("content") : "/ctl";
  // Built on the origin, never on the page's URL: one opened as user:password@host must not
  // hand its credentials to fetch (which refuses such URLs). The browser sends the cached
  // Basic credentials itself.
  const endpoint = new URL(ctlpath, window.location.origin).href;

  const $ = (id) => document.getElementById(id);
  const numberFormat = new Intl.NumberFormat("en-US");
  const rateFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  /** An element with attributes (class, data-*, title) and children (strings become text). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const dash = () => el("span", { class: "muted" }, "—");

  function count(n) {
    return typeof n === "number" ? numberFormat.format(n) : "—";
  }

  function bits(n) {
    if (typeof n !== "number") return null;
    const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i++;
    }
    return `${rateFormat.format(n)} ${units[i]}`;
  }

  function age(s) {
    if (typeof s !== "number") return "—";
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  let rpcId = 0;
  async function rpc(method) {
    const res = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", method: NAMESPACE + method, id: ++rpcId }),
      credentials: "same-origin",
      cache: "no-store",
      // The page's own policy is no-referrer, under which a POST says "Origin: null", which the
      // control API refuses; same-origin sends the real origin to the page's own origin only.
      referrerPolicy: "same-origin",
    });
    if (!res.ok) {
      const why = res.status === 401 ? " (log in again: reload the page)" : "";
      throw new Error(`${method}: HTTP ${res.status} ${res.statusText}${why}`);
    }
    const answer = await res.json();
    if (answer.error) {
      throw new Error(`${method}: ${answer.error.message}: ${answer.error.data}`);
    }
    return answer.result.entries;
  }

  // ---------------------------------------------------------------------------------------
  // per-port history (rates from counter deltas)

  /** key -> {rx, tx, t, rxRate, txRate, samples: [{rx, tx}]} */
  const history = new Map();

  const keyOf = (p) => `${p.port}\u0000${p.type}\u0000${p.target}`;

  function record(ports, now) {
    const seen = new Set();
    for (const p of ports) {
      const key = keyOf(p);
      seen.add(key);
      let h = history.get(key);
      if (!h) {
        h = { rx: p.rx, tx: p.tx, t: now, rxRate: null, txRate: null, samples: [] };
        history.set(key, h);
        continue;
      }
      const dt = (now - h.t) / 1000;
      if (dt <= 0) continue;
      // A counter that went back (a port replaced under the same number) restarts the graph.
      if (p.rx < h.rx || p.tx < h.tx) {
        h.samples = [];
        h.rxRate = h.txRate = null;
      } else {
        h.rxRate = (p.rx - h.rx) / dt;
        h.txRate = (p.tx - h.tx) / dt;
        h.samples.push({ rx: h.rxRate, tx: h.txRate });
        if (h.samples.length > HISTORY) h.samples.shift();
      }
      h.rx = p.rx;
      h.tx = p.tx;
      h.t = now;
    }
    for (const key of history.keys()) if (!seen.has(key)) history.delete(key);
  }

  // ---------------------------------------------------------------------------------------
  // ports

  function stateOf(p) {
    if (p.shut) return ["shut", "bad"];
    if (p.loop_blocked) return ["blocked", "bad"];
    return p.link === "up" ? ["up", "good"] : ["down", "warn"];
  }

  const tag = (text, cls, title) => el("span", { class: `tag ${cls || ""}`, title }, text);

  function flags(p) {
    const out = [];
    if (p.isolated) out.push(tag("isolated", "", "exchanges frames with non-isolated ports only"));
    if (p.mesh) out.push(tag("mesh", "", "split horizon: never forwards to another mesh port"));
    if (p.trusted === false) out.push(tag("untrusted", "", "port security: takes over no station, sends no DHCP server messages or router advertisements, ARP/ND only for its own addresses"));
    if (p.mirror !== null && p.mirror !== undefined) out.push(tag(`mirror → ${p.mirror}`, ""));
    if (p.super_frames) out.push(tag("super-frames", "", "offloads negotiated with the peer"));
    return out.length ? out : dash();
  }

  function datapath(p) {
    if (p.type !== "netdev" || !p.datapath) return dash();
    const out = [];
    if (p.datapath === "xdp") {
      out.push(tag(p.xdp_mode ? `xdp (${p.xdp_mode})` : "xdp", "good", "offloaded to the kernel"));
      if (p.kernel_tx) out.push(tag("kernel tx", "", "frames from other offloaded ports are forwarded in the kernel"));
    } else {
      out.push(tag(p.datapath, ""));
    }
    if (p.offload_fallback) {
      out.push(el("span", { class: "fallback", "data-field": "offload_fallback" }, `fallback: ${p.offload_fallback}`));
    }
    return out;
  }

  function rateLimits(p) {
    const inn = bits(p.rate_in);
    const out = bits(p.rate_out);
    if (!inn && !out) return dash();
    const parts = [];
    if (inn) parts.push(`in ${inn}`);
    if (out) parts.push(`out ${out}`);
    if (typeof p.burst === "number") parts.push(`burst ${count(p.burst)} B`);
    return parts.join(" · ");
  }

  function target(p) {
    const parts = [el("span", { class: "target" }, p.target)];
    if (p.addr && !String(p.target).startsWith(p.addr)) {
      parts.push(" ", el("span", { class: "muted" }, `(${p.addr})`));
    }
    return parts;
  }

  function portRow(p) {
    const [state, cls] = stateOf(p);
    const td = (field, content, c) => el("td", { "data-field": field, class: c }, content);
    return el(
      "tr",
      { "data-port": p.port },
      td("port", String(p.port), "num"),
      td("type", p.type),
      td("state", el("span", { class: `pill ${cls}` }, state)),
      td("target", target(p), "wrap"),
      td("user", p.user === null || p.user === undefined ? dash() : p.user, "wrap"),
      td("path", p.path === null || p.path === undefined ? dash() : p.path, "wrap"),
      td("vlan", p.vlan === null || p.vlan === undefined ? "trunk" : String(p.vlan)),
      td("flags", flags(p)),
      td("datapath", datapath(p)),
      td("rate_limits", rateLimits(p)),
    );
  }

  // Every drop counter of listPort, in the order of the table's columns.
  const DROPS = [
    "rx_invalid", "rx_oversize", "storm_dropped", "macs_refused", "tx_dropped", "tx_expired",
    "loop_dropped", "vlan_dropped", "rate_in_dropped", "rate_out_dropped", "guard_dropped",
  ];

  function counterRow(p) {
    const h = history.get(keyOf(p));
    const rate = (r) => (r === null || r === undefined ? "—" : rateFormat.format(r));
    const td = (field, text, c) => el("td", { "data-field": field, class: `num ${c || ""}` }, text);
    const total = DROPS.reduce((sum, f) => sum + (typeof p[f] === "number" ? p[f] : 0), 0);
    return el(
      "tr",
      { "data-port": p.port },
      td("port", String(p.port)),
      td("rx", count(p.rx)),
      td("tx", count(p.tx)),
      td("rx_rate", rate(h && h.rxRate)),
      td("tx_rate", rate(h && h.txRate)),
      td("queued_bytes", count(p.queued_bytes), p.queued_bytes ? "" : "zero"),
      td("loop_blocks", count(p.loop_blocks), p.loop_blocks ? "alert" : "zero"),
      DROPS.map((f) => td(f, count(p[f]), p[f] ? "alert" : "zero")),
      td("dropped", count(total), total ? "alert total" : "zero total"),
    );
  }

  // ---------------------------------------------------------------------------------------
  // traffic graphs

  /** key -> {card, canvas, now} */
  const graphs = new Map();

  function graphCard(p) {
    const key = keyOf(p);
    let g = graphs.get(key);
    if (!g) {
      const canvas = el("canvas", { class: "graph", role: "img" });
      const now = el("span", { class: "now", "data-field": "now" });
      const card = el(
        "figure",
        { class: "card", "data-port": p.port },
        el(
          "figcaption",
          {},
          el("strong", {}, `Port ${p.port}`),
          " ",
          el("span", { class: "muted" }, p.type),
          " ",
          el("span", { class: "target" }, p.target),
        ),
        now,
        canvas,
      );
      canvas.setAttribute("aria-label", `frames per second received and sent by port ${p.port}`);
      g = { card, canvas, now };
      graphs.set(key, g);
    }
    return g;
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }

  function draw(g, h) {
    const canvas = g.canvas;
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, canvas.clientWidth);
    const hgt = Math.max(1, canvas.clientHeight);
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(hgt * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(hgt * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const samples = h ? h.samples : [];
    const top = niceMax(Math.max(0, ...samples.map((s) => Math.max(s.rx, s.tx))));
    const pad = { l: 4, r: 4, t: 14, b: 4 };
    const iw = w - pad.l - pad.r;
    const ih = hgt - pad.t - pad.b;
    // grid: 0, half, top
    ctx.strokeStyle = color("--grid");
    ctx.fillStyle = color("--muted");
    ctx.lineWidth = 1;
    ctx.font = "10px system-ui, sans-serif";
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(pad.t + ih * (1 - f)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(w - pad.r, y);
      ctx.stroke();
    }
    ctx.textBaseline = "bottom";
    ctx.fillText(`${rateFormat.format(top)}/s`, pad.l + 2, pad.t - 2);
    const x = (i) => pad.l + (iw * (HISTORY - samples.length + i)) / (HISTORY - 1);
    const y = (v) => pad.t + ih * (1 - v / top);
    const line = (field) => {
      ctx.beginPath();
      samples.forEach((s, i) => (i ? ctx.lineTo(x(i), y(s[field])) : ctx.moveTo(x(i), y(s[field]))));
    };
    if (samples.length) {
      // rx: a filled area under a solid line; tx: a dashed line over it, so both show when
      // they are equal (a ping's requests and replies).
      const rx = color("--rx");
      line("rx");
      ctx.lineTo(x(samples.length - 1), y(0));
      ctx.lineTo(x(0), y(0));
      ctx.closePath();
      ctx.globalAlpha = 0.14;
      ctx.fillStyle = rx;
      ctx.fill();
      ctx.globalAlpha = 1;
      line("rx");
      ctx.strokeStyle = rx;
      ctx.lineWidth = 2;
      ctx.setLineDash([]);
      ctx.stroke();
      line("tx");
      ctx.strokeStyle = color("--tx");
      ctx.lineWidth = 1.75;
      ctx.setLineDash([5, 3]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    const rate = (r) => (r === null || r === undefined ? "—" : rateFormat.format(r));
    g.now.replaceChildren(
      el("span", { class: "rx-text" }, `rx ${rate(h && h.rxRate)}/s`),
      " ",
      el("span", { class: "tx-text" }, `tx ${rate(h && h.txRate)}/s`),
    );
  }

  function renderGraphs(ports) {
    const box = $("graphs");
    const cards = ports.map((p) => graphCard(p));
    const keep = new Set(ports.map(keyOf));
    for (const key of graphs.keys()) if (!keep.has(key)) graphs.delete(key);
    box.replaceChildren(...cards.map((g) => g.card));
    ports.forEach((p) => draw(graphCard(p), history.get(keyOf(p))));
  }

  // ---------------------------------------------------------------------------------------
  // forwarding table

  /** What a port is, in a few words: "client ws://…" */
  function behind(p) {
    return p ? `${p.type} ${p.target}` : "";
  }

  function fdbRows(entries, ports) {
    const byNumber = new Map(ports.map((p) => [p.port, p]));
    const sorted = [...entries].sort(
      (a, b) => a.port - b.port || a.vid - b.vid || String(a.mac).localeCompare(String(b.mac)),
    );
    if (!sorted.length) {
      return [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No station learned yet."))];
    }
    return sorted.map((e) =>
      el(
        "tr",
        { "data-mac": e.mac, "data-vid": e.vid },
        el("td", { "data-field": "vid", class: "num" }, String(e.vid)),
        el("td", { "data-field": "mac", class: "mono" }, e.mac),
        el("td", { "data-field": "port", class: "num" }, String(e.port)),
        el("td", { class: "muted behind" }, behind(byNumber.get(e.port))),
        el("td", { "data-field": "age", class: "num" }, age(e.age)),
      ),
    );
  }

  // ---------------------------------------------------------------------------------------
  // the loop

  let paused = false;
  let timer = null;
  let inflight = false;
  let lastPorts = [];

  function showError(message) {
    const box = $("error");
    if (message) {
      box.textContent = message;
      box.hidden = false;
    } else {
      box.hidden = true;
      box.textContent = "";
    }
  }

  async function refresh() {
    timer = null;
    if (inflight) return;
    inflight = true;
    try {
      const [ports, fdb] = await Promise.all([rpc("listPort"), rpc("listFdb")]);
      ports.sort((a, b) => a.port - b.port);
      record(ports, performance.now());
      lastPorts = ports;
      const none = (cols) => [el("tr", {}, el("td", { colspan: cols, class: "muted" }, "No port."))];
      $("ports").tBodies[0].replaceChildren(...(ports.length ? ports.map(portRow) : none(10)));
      $("counters").tBodies[0].replaceChildren(
        ...(ports.length ? ports.map(counterRow) : none(18)),
      );
      renderGraphs(ports);
      $("fdb").tBodies[0].replaceChildren(...fdbRows(fdb, ports));
      $("fdb-count").textContent = `${fdb.length} ${fdb.length === 1 ? "entry" : "entries"}`;
      const s = (n, one, many) => `${n} ${n === 1 ? one : many}`;
      const up = ports.filter((p) => p.link === "up" && !p.shut && !p.loop_blocked).length;
      $("summary").textContent =
        `${s(ports.length, "port", "ports")} (${up} up) · ${s(fdb.length, "station", "stations")}`;
      $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
      document.title = `etherws · ${s(ports.length, "port", "ports")}`;
      document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
      showError(null);
    } catch (e) {
      showError(`Cannot read the switch: ${e && e.message ? e.message : e}`);
    }
    inflight = false;
    schedule();
  }

  function schedule() {
    if (!paused && timer === null) timer = setTimeout(refresh, INTERVAL_MS);
  }

  function start() {
    $("endpoint").textContent = endpoint;
    $("interval").textContent = `${INTERVAL_MS / 1000} s`;
    const button = $("pause");
    button.addEventListener("click", () => {
      paused = !paused;
      button.textContent = paused ? "Resume" : "Pause";
      button.setAttribute("aria-pressed", String(paused));
      if (paused && timer !== null) {
        clearTimeout(timer);
        timer = null;
      } else if (!paused && !inflight) {
        refresh();
      }
    });
    window.addEventListener("resize", () => renderGraphs(lastPorts));
    refresh();
  }

  start();
})();
