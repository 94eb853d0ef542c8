// The etherws status page: polls the control API (JSON-RPC 2.0, statusSummary, an etherws 2
// method) and shows the switch's totals and traffic, the top talkers, one page of the port
// table (sorted, filtered and paged on the switch), graphs of the whole switch and of the
// ports the operator pins, and the forwarding entries of the ports shown. One answer is sized
// to what the page shows, not to the switch: 10,000 ports poll as cheaply as 10.
//
// Everything shown comes from the switch, and much of it from peers (user names, URLs,
// addresses): it is put in the page with createElement and text nodes only, never parsed as
// markup. The page's Content-Security-Policy allows no inline script either.
"use strict";

(() => {
  const INTERVAL_MS = 1500;
  const HISTORY = 60; // samples kept per graph: 90 s at 1.5 s
  const NAMESPACE = "etherws.control.";
  const TOP = 10; // top talkers in each list
  const MAX_PINS = 64; // what statusSummary takes
  const MAX_FILTER = 256;

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


  const frames = (n) => (typeof n === "number" ? `${rateFormat.format(n)} fr/s` : "—");

  let rpcId = 0;
  /** One JSON-RPC call; returns its result. */
  async function rpc(method, params) {
    const res = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", method: NAMESPACE + method, params, id: ++rpcId }),
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
    return answer.result;
  }

  // ---------------------------------------------------------------------------------------
  // what the operator asked for: sort, filter, page, pins (the pins kept in the URL's hash)

  const view = {
    sort: "port",
    order: "asc",
    filter: "",
    drops: false,
    offset: 0,
    limit: 50,
    unit: "bits",
  };

  /** Pinned port numbers, in the order they were pinned. */
  let pins = readPins();

  function readPins() {
    const m = /(?:^|[#&])pin=([0-9,]*)/.exec(window.location.hash);
    if (!m) return [];
    const out = [];
    for (const s of m[1].split(",")) {
      const n = Number(s);
      if (s && Number.isSafeInteger(n) && n > 0 && !out.includes(n) && out.length < MAX_PINS) {
        out.push(n);
      }
    }
    return out;
  }

  function writePins() {
    const hash = pins.length ? `#pin=${pins.join(",")}` : "";
    window.history.replaceState(null, "", `${window.location.pathname}${window.location.search}${hash}`);
  }

  function togglePin(port) {
    if (pins.includes(port)) pins = pins.filter((p) => p !== port);
    else if (pins.length < MAX_PINS) pins.push(port);
    writePins();
    refreshNow();
  }

  // ---------------------------------------------------------------------------------------
  // graph history: the whole switch, and each pinned port (rates from statusSummary)

  /** key -> {samples: [{rx_bps, tx_bps, rx_fps, tx_fps} | null], rates} */
  const history = new Map();

  const keyOf = (p) => `${p.port}\u0000${p.type}\u0000${p.target}`;

  function record(key, rates) {
    let h = history.get(key);
    if (!h) {
      h = { samples: [], rates: null };
      history.set(key, h);
    }
    h.rates = rates || null;
    if (rates) {
      h.samples.push(rates);
      if (h.samples.length > HISTORY) h.samples.shift();
    }
    return h;
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
    if (p.datapath === "xdp" || p.datapath === "tc") {
      const mode = p.offload_attach || p.xdp_mode;
      const why = p.offload_why ? `offloaded to the kernel: ${p.offload_why}` : "offloaded to the kernel";
      out.push(tag(mode ? `${p.datapath} (${mode})` : p.datapath, "good", why));
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

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }

  const isPinned = (p) => pins.includes(p.port);

  /** The attributes every row of a port carries: its number, pinned or not, drops or not. */
  function rowAttrs(p) {
    const cls = [isPinned(p) ? "pinned" : "", p.dropped ? "has-drops" : ""].join(" ").trim();
    return { "data-port": p.port, class: cls || null, "aria-selected": String(isPinned(p)) };
  }

  function portRow(p) {
    const [state, cls] = stateOf(p);
    const td = (field, content, c) => el("td", { "data-field": field, class: c }, content);
    const pinned = isPinned(p);
    return el(
      "tr",
      rowAttrs(p),
      el(
        "td",
        { class: "pin-col" },
        el(
          "button",
          { type: "button", class: "pin", "aria-pressed": String(pinned), title: pinned ? "unpin its graph" : "pin its graph" },
          pinned ? "★" : "☆",
        ),
      ),
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
    "rx_dropped", "rx_invalid", "rx_oversize", "storm_dropped", "macs_refused", "tx_dropped",
    "tx_expired", "tx_aqm_dropped", "loop_dropped", "vlan_dropped", "rate_in_dropped", "rate_out_dropped",
    "guard_dropped",
  ];

  // Port security's rules, as listPort names their counters.
  const GUARD_RULES = ["mac_spoof", "max_macs", "dhcp_server", "ra", "dhcp_client", "arp", "nd"];

  /** What each port-security rule dropped, for the security cell's tooltip. */
  function guardRules(p) {
    return GUARD_RULES
      .filter((r) => p[`${r}_dropped`])
      .map((r) => `${r}: ${count(p[`${r}_dropped`])}`)
      .join(", ");
  }

  function counterRow(p) {
    const r = p.rates;
    const rate = (v) => (r ? rateFormat.format(v) : "—");
    const td = (field, text, c) => el("td", { "data-field": field, class: `num ${c || ""}` }, text);
    const total = typeof p.dropped === "number"
      ? p.dropped
      : DROPS.reduce((sum, f) => sum + (typeof p[f] === "number" ? p[f] : 0), 0);
    return el(
      "tr",
      rowAttrs(p),
      td("port", String(p.port)),
      td("rx", count(p.rx)),
      td("tx", count(p.tx)),
      td("rx_rate", rate(r && r.rx_fps)),
      td("tx_rate", rate(r && r.tx_fps)),
      td("rx_bps", r ? bits(r.rx_bps) : "—"),
      td("tx_bps", r ? bits(r.tx_bps) : "—"),
      td("queued_bytes", count(p.queued_bytes), p.queued_bytes ? "" : "zero"),
      td("loop_blocks", count(p.loop_blocks), p.loop_blocks ? "alert" : "zero"),
      DROPS.map((f) => {
        const cell = td(f, count(p[f]), p[f] ? "alert" : "zero");
        if (f === "guard_dropped" && p[f]) cell.title = guardRules(p);
        return cell;
      }),
      td("dropped", count(total), total ? "alert total" : "zero total"),
    );
  }

  // ---------------------------------------------------------------------------------------
  // top talkers

  function topRows(list, unit) {
    if (!list.length) {
      return [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No traffic (rates need two readings)."))];
    }
    const fmt = unit === "bits" ? bits : frames;
    return list.map((t, i) => {
      const r = t.rates || {};
      const who = [el("span", { class: "target" }, t.target)];
      if (t.user !== null && t.user !== undefined) who.push(" ", el("span", { class: "muted" }, t.user));
      return el(
        "tr",
        { "data-port": t.port, class: pins.includes(t.port) ? "pinned" : null },
        el("td", { class: "num muted" }, String(i + 1)),
        el("td", { "data-field": "port", class: "num" }, String(t.port)),
        el("td", { "data-field": "target", class: "wrap" }, who),
        el("td", { "data-field": "rx", class: "num" }, fmt(unit === "bits" ? r.rx_bps : r.rx_fps)),
        el("td", { "data-field": "tx", class: "num" }, fmt(unit === "bits" ? r.tx_bps : r.tx_fps)),
      );
    });
  }

  // ---------------------------------------------------------------------------------------
  // traffic graphs: the whole switch, and the pinned ports

  /** key -> {card, canvas, now} */
  const graphs = new Map();

  function graphCard(key, port, title, sub) {
    let g = graphs.get(key);
    if (!g) {
      const canvas = el("canvas", { class: "graph", role: "img" });
      const now = el("span", { class: "now", "data-field": "now" });
      const caption = el("figcaption", {});
      const card = el(
        "figure",
        { class: `card${port === "all" ? " all" : ""}`, "data-port": port },
        caption,
        now,
        canvas,
      );
      canvas.setAttribute(
        "aria-label",
        port === "all" ? "traffic of the whole switch" : `traffic received and sent by port ${port}`,
      );
      g = { card, canvas, now, caption };
      graphs.set(key, g);
    }
    // The whole switch's caption changes (its number of ports).
    g.caption.replaceChildren(el("strong", {}, title), " ", ...[sub].flat());
    return g;
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
    const [rxf, txf] = view.unit === "bits" ? ["rx_bps", "tx_bps"] : ["rx_fps", "tx_fps"];
    const samples = h ? h.samples : [];
    const top = niceMax(Math.max(0, ...samples.map((s) => Math.max(s[rxf], s[txf]))));
    const pad = { l: 4, r: 4, t: 14, b: 4 };
    const iw = w - pad.l - pad.r;
    const ih = hgt - pad.t - pad.b;
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
    ctx.fillText(view.unit === "bits" ? bits(top) : frames(top), pad.l + 2, pad.t - 2);
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
      line(rxf);
      ctx.lineTo(x(samples.length - 1), y(0));
      ctx.lineTo(x(0), y(0));
      ctx.closePath();
      ctx.globalAlpha = 0.14;
      ctx.fillStyle = rx;
      ctx.fill();
      ctx.globalAlpha = 1;
      line(rxf);
      ctx.strokeStyle = rx;
      ctx.lineWidth = 2;
      ctx.setLineDash([]);
      ctx.stroke();
      line(txf);
      ctx.strokeStyle = color("--tx");
      ctx.lineWidth = 1.75;
      ctx.setLineDash([5, 3]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    const r = h && h.rates;
    const both = (b, f) => (r ? `${bits(r[b])} · ${frames(r[f])}` : "—");
    g.now.replaceChildren(
      el("span", { class: "rx-text" }, `rx ${both("rx_bps", "rx_fps")}`),
      " ",
      el("span", { class: "tx-text" }, `tx ${both("tx_bps", "tx_fps")}`),
    );
  }

  /** What the graphs show: [key, port, title, sub] of the whole switch and each pinned port. */
  let shownGraphs = [];

  function renderGraphs() {
    const keep = new Set(shownGraphs.map((s) => s[0]));
    for (const key of graphs.keys()) if (!keep.has(key)) graphs.delete(key);
    for (const key of history.keys()) if (!keep.has(key)) history.delete(key);
    const cards = shownGraphs.map(([key, port, title, sub]) => graphCard(key, port, title, sub));
    $("graphs").replaceChildren(...cards.map((g) => g.card));
    shownGraphs.forEach(([key], i) => draw(cards[i], history.get(key)));
  }

  function updateGraphs(result) {
    const all = "all";
    record(all, result.totals.rates);
    const s = (n, one, many) => `${count(n)} ${n === 1 ? one : many}`;
    shownGraphs = [[all, all, "Whole switch", el("span", { class: "muted" }, s(result.totals.ports, "port", "ports"))]];
    const byPort = new Map(result.pinned.map((p) => [p.port, p]));
    for (const n of pins) {
      const p = byPort.get(n);
      if (!p) continue; // gone: its pin stays until unpinned, in case it comes back
      const key = keyOf(p);
      record(key, p.rates);
      shownGraphs.push([
        key,
        String(p.port),
        `Port ${p.port}`,
        [el("span", { class: "muted" }, p.type), " ", el("span", { class: "target" }, p.target)],
      ]);
    }
    renderGraphs();
  }

  // ---------------------------------------------------------------------------------------
  // forwarding table (of the ports shown)

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
      return [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No station learned on the ports shown."))];
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
  let again = false;

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

  function params() {
    return {
      sort: view.sort,
      order: view.order,
      filter: view.filter,
      drops: view.drops,
      offset: view.offset,
      limit: view.limit,
      pinned: pins,
      top: TOP,
      fdb: true,
    };
  }

  function render(result) {
    const s = (n, one, many) => `${count(n)} ${n === 1 ? one : many}`;
    const rows = result.rows;
    const none = (cols, why) => [el("tr", {}, el("td", { colspan: cols, class: "muted" }, why))];
    const why = result.totals.ports ? "No port matches." : "No port.";
    $("ports").tBodies[0].replaceChildren(...(rows.length ? rows.map(portRow) : none(11, why)));
    $("counters").tBodies[0].replaceChildren(...(rows.length ? rows.map(counterRow) : none(22, why)));
    const from = rows.length ? result.offset + 1 : 0;
    $("page-info").textContent =
      `${count(from)}–${count(result.offset + rows.length)} of ${s(result.matched, "port", "ports")}` +
      (result.matched !== result.totals.ports ? ` (filtered from ${count(result.totals.ports)})` : "");
    $("prev").disabled = result.offset === 0;
    $("next").disabled = result.offset + rows.length >= result.matched;
    $("top-bits").tBodies[0].replaceChildren(...topRows(result.top_bits, "bits"));
    $("top-frames").tBodies[0].replaceChildren(...topRows(result.top_frames, "frames"));
    updateGraphs(result);
    const fdb = result.fdb || [];
    $("fdb").tBodies[0].replaceChildren(...fdbRows(fdb, rows.concat(result.pinned)));
    $("fdb-count").textContent =
      `${s(fdb.length, "entry", "entries")} of the ports shown · ${count(result.fdb_total)} in all`;
    const t = result.totals;
    const parts = [`${s(t.ports, "port", "ports")} (${count(t.up)} up)`];
    if (t.rates) parts.push(`rx ${bits(t.rates.rx_bps)}`, `tx ${bits(t.rates.tx_bps)}`);
    $("summary").textContent = parts.join(" · ");
    const drops = $("drops-summary");
    drops.textContent = t.dropped
      ? `${count(t.dropped)} dropped on ${s(t.ports_with_drops, "port", "ports")}`
      : "no drops";
    drops.className = t.dropped ? "pill bad" : "pill good";
    $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    document.title = `etherws · ${s(t.ports, "port", "ports")}`;
    sortMarks();
  }

  async function refresh() {
    timer = null;
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    again = false;
    try {
      const result = await rpc("statusSummary", params());
      // A page past the end (ports went, or the filter narrowed): go to the last one.
      if (result.offset > 0 && result.offset >= result.matched) {
        view.offset = Math.max(0, Math.floor((result.matched - 1) / view.limit) * view.limit);
        again = true;
      } else {
        render(result);
        document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
      }
      showError(null);
    } catch (e) {
      showError(`Cannot read the switch: ${e && e.message ? e.message : e}`);
    }
    inflight = false;
    if (again) refreshNow();
    else schedule();
  }

  function schedule() {
    if (!paused && timer === null) timer = setTimeout(refresh, INTERVAL_MS);
  }

  /** Reads again now (the view changed), or once the read under way is done. */
  function refreshNow() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (inflight) again = true;
    else refresh();
  }

  // ---------------------------------------------------------------------------------------
  // controls

  const TEXT_KEYS = new Set(["type", "state", "target", "user", "path", "port"]);

  function sortMarks() {
    for (const th of document.querySelectorAll("th[data-sort]")) {
      const on = th.dataset.sort === view.sort;
      if (on) th.setAttribute("aria-sort", view.order === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  function sortBy(key) {
    if (view.sort === key) view.order = view.order === "asc" ? "desc" : "asc";
    else {
      view.sort = key;
      view.order = TEXT_KEYS.has(key) ? "asc" : "desc";
    }
    view.offset = 0;
    sortMarks();
    refreshNow();
  }

  function onRowClick(e) {
    if (e.target.closest("a, input, select")) return;
    const tr = e.target.closest("tr[data-port]");
    if (!tr) return;
    const n = Number(tr.dataset.port);
    if (Number.isSafeInteger(n)) togglePin(n);
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
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.tabIndex = 0;
      th.addEventListener("click", () => sortBy(th.dataset.sort));
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sortBy(th.dataset.sort);
        }
      });
    }
    for (const id of ["ports", "counters", "top-bits", "top-frames"]) {
      $(id).tBodies[0].addEventListener("click", onRowClick);
    }
    let typing = null;
    $("filter").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        view.filter = $("filter").value.trim().slice(0, MAX_FILTER);
        view.offset = 0;
        refreshNow();
      }, 250);
    });
    $("drops-only").addEventListener("change", () => {
      view.drops = $("drops-only").checked;
      view.offset = 0;
      refreshNow();
    });
    $("page-size").addEventListener("change", () => {
      view.limit = Number($("page-size").value) || 50;
      view.offset = 0;
      refreshNow();
    });
    $("prev").addEventListener("click", () => {
      view.offset = Math.max(0, view.offset - view.limit);
      refreshNow();
    });
    $("next").addEventListener("click", () => {
      view.offset += view.limit;
      refreshNow();
    });
    $("unit").addEventListener("change", () => {
      view.unit = $("unit").value === "frames" ? "frames" : "bits";
      renderGraphs();
    });
    window.addEventListener("hashchange", () => {
      pins = readPins();
      refreshNow();
    });
    window.addEventListener("resize", () => renderGraphs());
    view.limit = Number($("page-size").value) || 50;
    sortMarks();
    refresh();
  }

  start();
})();
