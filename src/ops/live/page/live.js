"use strict";
// mqimg's live view: the gallery (/) and one topic's page (/topics/...). Data comes from /api/topics
// and the /events feed; images from /latest and /stream. Every text shown is set with textContent:
// topics and errors come from cameras, never markup.
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const TILE_WIDTH = 480;
  const RECORDS = 50;

  // Topics in URLs, as the server reads them: each level percent-encoded (RFC 3986 unreserved kept),
  // or the whole topic in ?topic= when a level is empty or a dot segment a browser would rewrite.
  function encode(text) {
    let out = "";
    for (const b of new TextEncoder().encode(text)) {
      const c = String.fromCharCode(b);
      out += /[A-Za-z0-9\-._~]/.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
    }
    return out;
  }
  function pathSafe(topic) {
    return topic !== "" && topic.split("/").every((l) => l !== "" && l !== "." && l !== "..");
  }
  function href(route, topic, extra) {
    let url;
    if (topic === undefined) url = "/" + route;
    else if (pathSafe(topic)) url = "/" + route + "/" + topic.split("/").map(encode).join("/");
    else url = "/" + route + "?topic=" + encode(topic);
    const more = Object.assign({}, extra || {});
    if (token) more.token = token;
    for (const [k, v] of Object.entries(more)) {
      url += (url.includes("?") ? "&" : "?") + k + "=" + encodeURIComponent(v);
    }
    return url;
  }

  // Ages by the server's clock: the browser's may differ.
  let skewMs = 0;
  function learnSkew(summary) {
    if (summary.received_at && summary.age_ms != null) {
      skewMs = Date.now() - summary.age_ms - Date.parse(summary.received_at);
    }
  }
  function age(receivedAt) {
    if (!receivedAt) return "no frame yet";
    const s = Math.max(0, (Date.now() - skewMs - Date.parse(receivedAt)) / 1000);
    if (s < 10) return s.toFixed(1) + " s ago";
    if (s < 120) return Math.round(s) + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }
  function kb(bytes) {
    return bytes < 1024 ? bytes + " B" : (bytes / 1024).toFixed(bytes < 10240 ? 1 : 0) + " KB";
  }
  function size(s) {
    if (!s.width) return "no frame yet";
    return s.width + "×" + s.height + " " + s.format + (s.image_bytes ? " " + kb(s.image_bytes) : "");
  }
  function isFailure(record) {
    return typeof record.stage === "string";
  }
  function byId(id) {
    return document.getElementById(id);
  }

  function connect(path, onRecord) {
    const status = byId("status");
    const events = new EventSource(path);
    events.onopen = () => {
      status.textContent = "live";
      status.className = "status live";
    };
    events.onerror = () => {
      status.textContent = "reconnecting…";
      status.className = "status down";
    };
    events.onmessage = (e) => {
      try {
        onRecord(JSON.parse(e.data));
      } catch (err) {
        console.error("bad record", err);
      }
    };
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    return response.json();
  }

  // ---- the gallery ----
  function gallery() {
    const tiles = new Map();
    const box = byId("tiles");

    function tile(topic) {
      let t = tiles.get(topic);
      if (t) return t;
      const el = byId("tile-template").content.firstElementChild.cloneNode(true);
      el.dataset.topic = topic;
      el.querySelector(".topic").textContent = topic;
      el.querySelector(".shot").href = href("topics", topic);
      t = { el, img: el.querySelector("img"), topic, shown: null, want: null, loading: false, s: {} };
      t.img.addEventListener("load", () => loaded(t));
      t.img.addEventListener("error", () => loaded(t));
      tiles.set(topic, t);
      const after = [...tiles.keys()].sort().find((k) => k > topic);
      box.insertBefore(el, after ? tiles.get(after).el : null);
      byId("empty").hidden = true;
      byId("count").textContent = tiles.size + (tiles.size === 1 ? " topic" : " topics");
      return t;
    }
    // One image request per tile at a time: frames arriving faster than the browser loads them are
    // skipped, the tile jumps to the newest.
    function loaded(t) {
      t.loading = false;
      t.img.dataset.sha256 = t.loadingSha || "";
      t.shown = t.loadingSha;
      if (t.want && t.want !== t.shown) show(t, t.want);
    }
    function show(t, sha) {
      t.want = sha;
      if (t.loading || t.shown === sha) return;
      t.loading = true;
      t.loadingSha = sha;
      t.img.src = href("latest", t.topic, { width: TILE_WIDTH, v: sha });
    }
    function paint(t) {
      const s = t.s;
      const q = (sel) => t.el.querySelector(sel);
      q(".size").textContent = size(s);
      q(".age").textContent = age(s.received_at);
      q(".fps").textContent = (s.fps || 0).toFixed(1) + " fps";
      q(".ok").textContent = s.ok || 0;
      q(".failed").textContent = s.failed || 0;
      q(".failed").classList.toggle("some", (s.failed || 0) > 0);
      q(".error").textContent = s.last_error || "";
      q(".error").title = s.last_error || "";
    }
    function summary(s) {
      const t = tile(s.topic);
      learnSkew(s);
      t.s = s;
      if (s.sha256) show(t, s.sha256);
      paint(t);
    }
    async function refresh() {
      try {
        (await getJson(href("api/topics"))).forEach(summary);
      } catch (err) {
        console.error("api/topics", err);
      }
    }
    connect(href("events"), (r) => {
      const t = tile(r.topic || "");
      const s = t.s;
      if (isFailure(r)) {
        s.failed = (s.failed || 0) + 1;
        s.last_error = r.stage + ": " + r.error;
      } else {
        s.ok = (s.ok || 0) + 1;
        Object.assign(s, {
          received_at: r.received_at, width: r.width, height: r.height,
          format: r.format, image_bytes: r.image_bytes, sha256: r.sha256,
        });
        show(t, r.sha256);
      }
      paint(t);
    });
    refresh();
    setInterval(refresh, 2000);
    setInterval(() => tiles.forEach(paint), 1000);
  }

  // ---- one topic ----
  function topicPage() {
    let topic = null;
    if (location.pathname.startsWith("/topics/")) {
      try {
        topic = decodeURIComponent(location.pathname.slice("/topics/".length));
      } catch (err) {
        byId("title").textContent = "bad topic in the address: " + err.message;
        return;
      }
    } else if (params.has("topic")) {
      topic = params.get("topic");
    }
    byId("home").href = href("");
    if (topic === null) {
      byId("title").textContent = "no topic named";
      return;
    }
    byId("title").textContent = topic;
    document.title = topic + " · mqimg live";
    const stream = byId("stream");
    const rows = byId("records");
    let s = {};
    let streaming = false;

    function startStream() {
      if (streaming) return;
      streaming = true;
      byId("nostream").hidden = true;
      stream.src = href("stream", topic);
    }
    // No frame yet, the topic dropped, or too many streams: try again with the next frame.
    stream.addEventListener("error", () => {
      streaming = false;
      stream.removeAttribute("src");
      byId("nostream").hidden = false;
      setTimeout(() => s.sha256 && startStream(), 5000);
    });

    function paint() {
      byId("facts").textContent = size(s) + " · " + age(s.received_at) + " · " + (s.fps || 0).toFixed(1)
        + " fps · " + (s.ok || 0) + " ok · " + (s.failed || 0) + " failed";
      byId("error").textContent = s.last_error ? "last error: " + s.last_error : "";
    }
    function row(r, atTop) {
      const tr = document.createElement("tr");
      const failed = isFailure(r);
      tr.dataset.outcome = failed ? "failed" : "ok";
      const when = new Date(r.received_at);
      const two = (n) => String(n).padStart(2, "0");
      const clock = isNaN(when)
        ? r.received_at
        : two(when.getHours()) + ":" + two(when.getMinutes()) + ":" + two(when.getSeconds()) + "."
          + String(when.getMilliseconds()).padStart(3, "0");
      const details = failed
        ? r.error
        : r.width + "×" + r.height + " " + r.format + " " + kb(r.image_bytes) + ", decoded in "
          + r.decode_ms + " ms" + (r.warnings ? " — " + r.warnings.join("; ") : "");
      for (const text of [
        clock,
        failed ? r.stage : "ok",
        details,
      ]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      if (atTop) rows.insertBefore(tr, rows.firstChild);
      else rows.appendChild(tr);
      while (rows.children.length > RECORDS) rows.removeChild(rows.lastChild);
    }
    function latest(r) {
      byId("latest").textContent = JSON.stringify(r, null, 2);
    }
    function record(r) {
      if (isFailure(r)) {
        s.failed = (s.failed || 0) + 1;
        s.last_error = r.stage + ": " + r.error;
      } else {
        s.ok = (s.ok || 0) + 1;
        Object.assign(s, {
          received_at: r.received_at, width: r.width, height: r.height,
          format: r.format, image_bytes: r.image_bytes, sha256: r.sha256,
        });
        startStream();
      }
      latest(r);
      row(r, true);
      paint();
    }
    connect(href("events", undefined, { topic }), record);
    getJson(href("api/topics", topic))
      .then((detail) => {
        learnSkew(detail);
        s = Object.assign({}, detail, s.ok || s.failed ? s : {});
        const { records } = detail;
        if (records.length && rows.children.length === 0) {
          records.forEach((r) => row(r, false));
          latest(records[0]);
        }
        if (s.sha256) startStream();
        paint();
      })
      .catch(() => paint());
    setInterval(paint, 1000);
  }

  if (document.body.dataset.page === "topic") topicPage();
  else gallery();
})();
