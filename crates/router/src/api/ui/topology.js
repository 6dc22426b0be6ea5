// The topology page: polls this router's /report and /containers once a second and draws
// the peers, the connections (with path and MTU), each peer's containers, services and
// share of IPAM. Everything from the network is put in the page as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// "NAME(NICK)" as in ConnectionReport.Peer.
function splitPeer(s) {
  const m = /^(.*?)\((.*)\)$/.exec(s || "");
  return m ? { name: m[1], nick: m[2] } : { name: s || "", nick: "" };
}

// fastdp | sleeve | encrypted | relayed, from a connection's path and the encryption flag.
function pathClass(path, encrypted) {
  if (!path) return "gossip";
  if (path.startsWith("fastdp")) return "fastdp";
  if (path.includes(" via ")) return "relayed";
  return encrypted ? "encrypted" : "sleeve";
}

function isEncrypted(conn, report) {
  if (typeof conn.Encrypted === "boolean") return conn.Encrypted;
  if (typeof conn.Encryption === "string") return conn.Encryption !== "" && conn.Encryption !== "none";
  return !!report.Router.Encryption;
}

// This router's connections by remote peer name.
function ownConnections(report) {
  const out = new Map();
  for (const c of report.Router.Connections || []) {
    const p = splitPeer(c.Peer);
    if (!p.name) continue;
    const cls = pathClass(c.Path, isEncrypted(c, report));
    out.set(p.name, { conn: c, cls, label: c.Path ? `${cls === "relayed" ? c.Path : cls}${c.Mtu ? " · MTU " + c.Mtu : ""}` : c.State });
  }
  return out;
}

// Peers in the order of their nicknames (then names), as people call them.
function byNickname(a, b) {
  return (a.Nickname || "").localeCompare(b.Nickname || "") || a.Name.localeCompare(b.Name);
}

function drawGraph(report) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const me = report.Router.Name;
  const peers = (report.Router.Peers || []).slice().sort(byNickname);
  if (!peers.some(p => p.Name === me)) peers.unshift({ Name: me, Nickname: report.Router.Nickname, Connections: [] });
  const W = 720, H = 420, cx = W / 2, cy = H / 2, r = peers.length > 1 ? Math.min(W, H) / 2 - 70 : 0;
  const pos = new Map();
  peers.forEach((p, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / peers.length;
    pos.set(p.Name, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) });
  });
  const own = ownConnections(report);
  const edges = new Map();
  for (const p of peers) {
    for (const c of p.Connections || []) {
      if (!pos.has(c.Name)) continue;
      const key = [p.Name, c.Name].sort().join(" ");
      if (!edges.has(key)) edges.set(key, { a: p.Name, b: c.Name, established: c.Established });
    }
  }
  for (const [name, o] of own) {
    const key = [me, name].sort().join(" ");
    if (pos.has(name) && !edges.has(key)) edges.set(key, { a: me, b: name, established: false });
  }
  const gEdges = el("svg:g", { class: "edges" });
  for (const [key, e] of edges) {
    const other = e.a === me ? e.b : e.b === me ? e.a : null;
    const o = other !== null ? own.get(other) : null;
    const cls = o ? o.cls : "gossip";
    const pa = pos.get(e.a), pb = pos.get(e.b);
    gEdges.append(el("svg:line", {
      class: `edge ${cls}`, "data-edge": key, "data-path": o ? (o.conn.Path || "") : "",
      x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y,
    }));
    if (o) {
      gEdges.append(el("svg:text", { class: "edge-label", x: (pa.x + pb.x) / 2, y: (pa.y + pb.y) / 2 - 6 }, o.label));
    }
  }
  svg.append(gEdges);
  for (const p of peers) {
    const { x, y } = pos.get(p.Name);
    const g = el("svg:g", { class: p.Name === me ? "peer me" : "peer", "data-peer": p.Name, "data-nickname": p.Nickname });
    g.append(el("svg:circle", { cx: x, cy: y, r: 50 }));
    g.append(el("svg:text", { class: "nick", x, y: y - 2 }, p.Nickname || "?"));
    g.append(el("svg:text", { class: "name", x, y: y + 14 }, p.Name));
    svg.append(g);
  }
}

function drawConnections(report) {
  const body = document.querySelector("#connections tbody");
  body.replaceChildren();
  const conns = report.Router.Connections || [];
  if (conns.length === 0) {
    const tr = el("tr");
    tr.append(el("td", { colspan: 6, class: "muted" }, "no connections"));
    body.append(tr);
  }
  for (const c of conns) {
    const p = splitPeer(c.Peer);
    const cls = c.Path ? pathClass(c.Path, isEncrypted(c, report)) : "";
    const tr = el("tr", { "data-conn": p.name, "data-path": c.Path || "", "data-state": c.State });
    tr.append(
      el("td", {}, p.nick ? `${p.nick} (${p.name})` : p.name || "?"),
      el("td", {}, c.State),
      el("td", { class: `path ${cls}` }, cls === "relayed" ? c.Path : cls || "—"),
      el("td", {}, c.Mtu || "—"),
      el("td", {}, `${c.Outbound ? "→" : "←"} ${c.Address}`),
      el("td", {}, c.Info || ""),
    );
    body.append(tr);
  }
}

function rangeSize(cidr) {
  const prefix = Number((cidr || "").split("/")[1]);
  return Number.isInteger(prefix) && prefix >= 0 && prefix <= 32 ? 2 ** (32 - prefix) : 0;
}

function list(title, items) {
  const frag = document.createDocumentFragment();
  frag.append(el("h4", {}, title));
  if (items.length === 0) {
    frag.append(el("p", { class: "muted" }, "none"));
    return frag;
  }
  const ul = el("ul");
  for (const i of items) ul.append(el("li", {}, i));
  frag.append(ul);
  return frag;
}

// A service, whatever its fields turn out to be: name, address and backends if present.
function serviceLine(s) {
  if (typeof s !== "object" || s === null) return String(s);
  const name = s.Name || s.Service || s.Address || "service";
  const backends = Array.isArray(s.Backends) ? s.Backends : [];
  const healthy = backends.filter(b => b && (b.Healthy === undefined || b.Healthy)).length;
  return backends.length ? `${name} (${healthy}/${backends.length} backends healthy)` : name;
}

function drawPeers(report, localContainers) {
  const box = document.getElementById("peers");
  box.replaceChildren();
  const me = report.Router.Name;
  const peers = (report.Router.Peers || []).slice().sort(byNickname);
  if (!peers.some(p => p.Name === me)) peers.unshift({ Name: me, Nickname: report.Router.Nickname });
  const ipam = report.IPAM || report.Ipam || null;
  const total = ipam ? rangeSize(ipam.Range) : 0;
  const dns = (report.DNS || report.Dns || {}).Entries || [];
  const services = report.Services;
  for (const p of peers) {
    const card = el("div", { class: "card", "data-peer": p.Name });
    card.append(el("h3", {}, `${p.Nickname || "?"} · ${p.Name}${p.Name === me ? " (this router)" : ""}`));
    const share = ipam && (ipam.Entries || []).find(e => e.Peer === p.Name);
    card.append(el("h4", {}, "IPAM share"));
    if (share) {
      const pct = total ? (100 * share.Size) / total : 0;
      card.append(el("p", { "data-ipam": p.Name }, `${share.Size} addresses (${pct.toFixed(1)}% of ${ipam.Range}), ${share.Free} free${share.Reachable ? "" : ", unreachable"}`));
      const bar = el("div", { class: "bar" });
      const fill = el("div");
      fill.style.width = `${Math.min(100, pct)}%`;
      bar.append(fill);
      card.append(bar);
    } else {
      card.append(el("p", { class: "muted" }, ipam ? "no space" : "IPAM not running"));
    }
    let containers;
    if (p.Name === me && localContainers) {
      containers = localContainers.map(c => `${c.Hostname || c.Id}: ${(c.Addrs || []).join(", ")}`);
    } else {
      // Other peers' containers are known by the names they registered in DNS.
      containers = dns.filter(e => e.Origin === p.Name).map(e => `${e.Hostname} ${e.Address}`);
    }
    card.append(list(p.Name === me ? "containers" : "containers (named in DNS)", containers));
    if (services !== undefined) {
      const mine = Array.isArray(services) ? services.filter(s => !s.Peer || s.Peer === p.Name || s.Origin === p.Name) : [];
      card.append(list("services", mine.map(serviceLine)));
    } else {
      card.append(list("services", []));
    }
    box.append(card);
  }
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const report = await getJSON("/report");
    let local = null;
    try { local = await getJSON("/containers"); } catch (_) { local = null; }
    document.getElementById("me").textContent = `${report.Router.Nickname} (${report.Router.Name}) · ${report.Version}`;
    drawGraph(report);
    drawConnections(report);
    drawPeers(report, local);
    status.textContent = `updated ${new Date().toLocaleTimeString()} · ${(report.Router.Peers || []).length} peers`;
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    status.textContent = `cannot read this router's report: ${e.message} (is the router running?)`;
  }
}

refresh();
setInterval(refresh, POLL_MS);
