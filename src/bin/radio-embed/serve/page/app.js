// SPDX-License-Identifier: MPL-2.0
// The search page: queries /api/ and shows the moments as a grid of thumbnails;
// a click plays the source from the moment (or shows the frame).
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuery = null;

function hms(ns) {
  if (ns === null || ns === undefined) return "--:--:--";
  const ms = Math.round(ns / 1e6);
  const pad = (v, n = 2) => String(v).padStart(n, "0");
  const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = Math.floor(ms / 1000) % 60;
  return `${pad(h)}:${pad(m)}:${pad(s)}.${pad(ms % 1000, 3)}`;
}

function filterParams() {
  const p = new URLSearchParams();
  const set = (name, value) => { if (value !== "" && value !== null) p.set(name, value); };
  set("source", $("source").value.trim());
  set("after", $("after").value.trim());
  set("before", $("before").value.trim());
  set("min_score", $("min-score").value);
  set("k", $("k").value);
  if ($("frames").checked) p.set("frames", "true");
  return p;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function run(query) {
  lastQuery = query;
  const params = filterParams();
  let url, init = {};
  if (query.image) {
    url = "/api/search?" + params;
    init = { method: "POST", body: query.image, headers: { "Content-Type": query.image.type || "application/octet-stream" } };
  } else if (query.text) {
    params.set("text", query.text);
    url = "/api/search?" + params;
  } else {
    params.set("like_source", query.similar.source);
    params.set("like_frame", query.similar.frame);
    url = "/api/similar?" + params;
  }
  status("searching…");
  const started = performance.now();
  let body;
  try {
    const response = await fetch(url, init);
    body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
  } catch (err) {
    status(`search failed: ${err.message}`, true);
    return;
  }
  show(body);
  status(`${body.length} result${body.length === 1 ? "" : "s"} in ${Math.round(performance.now() - started)} ms`);
}

function show(results) {
  const grid = $("results");
  grid.replaceChildren();
  for (const r of results) {
    const card = document.createElement("article");
    card.className = "result";
    card.dataset.source = r.source;
    card.dataset.frame = r.frame_index;
    const start = r.start_ns ?? r.pts_ns;
    const end = r.end_ns ?? r.pts_ns;
    card.dataset.start = start ?? "";
    const img = document.createElement("img");
    img.className = "thumb";
    img.alt = `${r.source} at ${hms(r.pts_ns)}`;
    img.src = r.thumbnail;
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = decodeURIComponent(r.source.split("/").pop() || r.source);
    const frames = r.frames > 1 ? ` · ${r.frames} matching rows` : "";
    meta.innerHTML = `<span class="source"></span><span class="time"></span><span class="score"></span>`;
    meta.querySelector(".source").textContent = name;
    meta.querySelector(".source").title = r.source;
    meta.querySelector(".time").textContent = start === end ? hms(start) : `${hms(start)} – ${hms(end)}`;
    meta.querySelector(".score").textContent = `score ${r.score.toFixed(4)}${frames}`;
    const more = document.createElement("button");
    more.textContent = "More like this";
    more.addEventListener("click", (event) => {
      event.stopPropagation();
      run({ similar: { source: r.source, frame: r.frame_index } });
    });
    card.append(img, meta, more);
    card.addEventListener("click", () => open(r, start));
    grid.append(card);
  }
}

function open(r, startNs) {
  const viewer = $("viewer"), player = $("player"), still = $("still");
  viewer.hidden = false;
  $("viewer-caption").textContent = `${r.source} at ${hms(startNs)}`;
  const seconds = (startNs ?? 0) / 1e9;
  if (r.media) {
    still.hidden = true;
    player.hidden = false;
    const seek = () => { player.currentTime = seconds; player.play().catch(() => {}); };
    if (player.dataset.media === r.media && player.readyState >= 1) {
      seek();
    } else {
      player.dataset.media = r.media;
      player.addEventListener("loadedmetadata", seek, { once: true });
      player.src = r.media;
    }
  } else {
    player.pause();
    player.hidden = true;
    still.hidden = false;
    still.src = r.thumbnail;
  }
  viewer.scrollIntoView({ behavior: "smooth" });
}

function pickImage(file) {
  if (file) run({ image: file });
}

async function loadInfo() {
  try {
    const info = await (await fetch("/api/info")).json();
    $("index-info").textContent = `${info.db} · ${info.rows} rows · ${info.sources.length} sources · ${info.model} at ${info.input}`;
    const list = $("sources");
    for (const s of info.sources) {
      const option = document.createElement("option");
      option.value = s.source;
      list.append(option);
    }
    $("text-query").hidden = !info.text;
  } catch (err) {
    status(`cannot read the index: ${err.message}`, true);
  }
}

$("image").addEventListener("change", (e) => pickImage(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  pickImage(e.dataTransfer.files[0]);
});
$("text-query").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (text) run({ text });
});
$("filters").addEventListener("change", () => { if (lastQuery) run(lastQuery); });
$("filters").addEventListener("submit", (e) => { e.preventDefault(); if (lastQuery) run(lastQuery); });
loadInfo();
