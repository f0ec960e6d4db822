"""``GET /``: one self-contained HTML page (no build step, no external assets) to try a model.

A person types a user id (or starts as a new user), sees the top 10, clicks
the items they like (each click is a ``POST /events``) and sees the list
change at once. Titles are shown when the server has them, ids otherwise.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dmf serve</title>
<style>
 body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem;
        color: #1d232a; }
 h1 { font-size: 1.4rem; margin-bottom: .2rem; }
 .bar { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin: 1rem 0; }
 input { padding: .35rem .5rem; font: inherit; width: 10rem; }
 button { padding: .35rem .8rem; font: inherit; cursor: pointer; border: 1px solid #8a96a3;
          border-radius: 4px; background: #f4f6f8; }
 button.like { padding: .1rem .6rem; }
 ol { padding-left: 1.6rem; }
 li { display: flex; justify-content: space-between; gap: 1rem; padding: .3rem 0;
      border-bottom: 1px solid #e3e7eb; }
 .score { color: #5c6873; font-variant-numeric: tabular-nums; margin-right: .8rem; }
 #status { min-height: 1.4em; color: #5c6873; }
 #status.error { color: #b3261e; }
 #liked { color: #5c6873; }
 small { color: #5c6873; }
</style>
</head>
<body>
<h1>dmf serve</h1>
<small id="info"></small>
<div class="bar">
 <label>User id <input id="user" autocomplete="off"></label>
 <button id="show">Show top 10</button>
 <button id="new-user">Start as a new user</button>
 <label id="token-box">Token <input id="token" type="password" autocomplete="off"></label>
</div>
<div id="status"></div>
<h2 id="heading" hidden>Top 10</h2>
<ol id="recs"></ol>
<p id="liked"></p>
<script>
"use strict";
let info = null;
let current = null;
const liked = [];
const $ = (id) => document.getElementById(id);

function headers() {
  const h = {"content-type": "application/json"};
  const t = $("token").value;
  if (t) h["authorization"] = "Bearer " + t;
  return h;
}
async function call(method, path, body) {
  const r = await fetch(path, {method, headers: headers(),
                               body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}
function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}
function userId(text) {
  return info && info.user_ids === "int" ? Number(text) : text;
}
function render(items, heading) {
  $("heading").hidden = false;
  $("heading").textContent = heading;
  const ol = $("recs");
  ol.replaceChildren();
  for (const it of items) {
    const li = document.createElement("li");
    li.dataset.item = String(it.item);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = it.title ? it.title : "item " + it.item;
    const right = document.createElement("span");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = it.score.toFixed(3);
    const b = document.createElement("button");
    b.className = "like";
    b.textContent = "Like";
    b.addEventListener("click", () => like(it));
    right.append(score, b);
    li.append(name, right);
    ol.append(li);
  }
  $("liked").textContent = liked.length ? "Liked: " + liked.join(", ") : "";
}
async function show() {
  const text = $("user").value.trim();
  if (!text) { status("Type a user id first, or start as a new user.", true); return; }
  current = text;
  try {
    const data = await call("GET", "/recommend?k=10&user=" + encodeURIComponent(text));
    render(data.items, "Top 10 for user " + text);
    status("");
  } catch (e) { status(e.message, true); }
}
async function newUser() {
  const text = info && info.user_ids === "int" ? String(Date.now()) : "web-" + Date.now();
  $("user").value = text;
  current = text;
  liked.length = 0;
  try {
    const data = await call("GET", "/popular?k=10");
    render(data.items, "New user " + text + ": like a few of the most popular items");
    status("");
  } catch (e) { status(e.message, true); }
}
async function like(it) {
  if (current === null) return;
  try {
    await call("POST", "/events", {user: userId(current), items: [it.item]});
    liked.push(it.title ? it.title : String(it.item));
    const data = await call("GET", "/recommend?k=10&user=" + encodeURIComponent(current));
    render(data.items, "Top 10 for user " + current);
    status("Liked " + (it.title ? it.title : "item " + it.item) + ": recommendations updated.");
  } catch (e) { status(e.message, true); }
}
$("show").addEventListener("click", show);
$("new-user").addEventListener("click", newUser);
$("user").addEventListener("keydown", (e) => { if (e.key === "Enter") show(); });
fetch("/health", {headers: headers()}).then((r) => r.json()).then((h) => {
  if (h.error) { status("This server needs a token: type it, then a user id.", false); return; }
  info = h;
  $("token-box").hidden = !h.token_required;
  $("info").textContent = h.kind + " model: " + h.users + " users, " + h.items + " items" +
    (h.titles ? "" : " (no titles: items shown by id)");
}).catch(() => {});
</script>
</body>
</html>
"""
