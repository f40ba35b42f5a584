"""The self-contained HTML rating form of a human-evaluation export (plain JS, no network): it shows each blinded
pair as text and saves the sheet's columns as CSV. Split from ``human_eval.py``, which builds and checks sheets."""

from __future__ import annotations

import json

COLUMNS = ("export_id", "item", "prompt", "reference", "answer_a", "answer_b", "rater", "score_a", "score_b",
           "comment")

FORM = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Human evaluation __TITLE__</title>
<style>body{font:15px system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
.item{border:1px solid #ccc;border-radius:6px;padding:.8em;margin:1em 0}.ans{display:flex;gap:1em}
.ans>div{flex:1;background:#f6f6f6;padding:.5em;white-space:pre-wrap}label{margin-right:.6em}
pre{white-space:pre-wrap;margin:.3em 0}textarea{width:100%}</style></head>
<body><h1>Human evaluation</h1><p>Score each answer from 1 (wrong or useless) to 5 (as good as a careful
expert's). A and B are two models in random order. Then save the CSV and send it back.</p>
<p><label>Your name <input id="rater" required></label></p><div id="items"></div>
<p><button id="save">Save ratings (CSV)</button> <span id="msg"></span></p>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const COLUMNS = __COLUMNS__;
function field(v) { v = String(v); return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
function toCsv(rows) { return [COLUMNS.join(",")].concat(rows.map(r => COLUMNS.map(c => field(r[c] ?? "")).join(",")))
  .join("\n") + "\n"; }
function el(tag, text) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; }
function scale(item, side) {
  const p = el("p", "Answer " + side.toUpperCase() + ": ");
  for (let s = 1; s <= 5; s++) { const l = el("label"); const r = el("input"); r.type = "radio";
    r.name = item.item + "_" + side; r.value = s; l.append(r, " " + s); p.append(l); }
  return p;
}
const box = document.getElementById("items");
for (const item of data.items) {
  const d = el("div"); d.className = "item"; d.append(el("h3", item.item), el("b", "Prompt"), el("pre", item.prompt));
  if (item.reference) d.append(el("b", "Reference"), el("pre", item.reference));
  const ans = el("div"); ans.className = "ans"; const a = el("div"), b = el("div");
  a.append(el("b", "A"), el("pre", item.answer_a)); b.append(el("b", "B"), el("pre", item.answer_b)); ans.append(a, b);
  const c = el("textarea"); c.id = item.item + "_comment"; c.placeholder = "comment (optional)";
  d.append(ans, scale(item, "a"), scale(item, "b"), c); box.append(d);
}
function picked(name) { const r = document.querySelector('input[name="' + name + '"]:checked'); return r ? r.value : ""; }
document.getElementById("save").onclick = () => {
  const rater = document.getElementById("rater").value.trim(), msg = document.getElementById("msg");
  if (!rater) { msg.textContent = "Enter your name first."; return; }
  const rows = [];
  for (const item of data.items) {
    const a = picked(item.item + "_a"), b = picked(item.item + "_b");
    if (!a && !b) continue;
    if (!a || !b) { msg.textContent = "Score both answers of " + item.item + "."; return; }
    rows.push({export_id: data.export_id, item: item.item, prompt: item.prompt, reference: item.reference,
      answer_a: item.answer_a, answer_b: item.answer_b, rater: rater, score_a: a, score_b: b,
      comment: document.getElementById(item.item + "_comment").value});
  }
  if (!rows.length) { msg.textContent = "Nothing rated yet."; return; }
  const link = el("a"); link.href = URL.createObjectURL(new Blob([toCsv(rows)], {type: "text/csv"}));
  link.download = "ratings-" + rater.replace(/[^A-Za-z0-9_.-]+/g, "_") + ".csv"; document.body.append(link);
  link.click(); link.remove(); msg.textContent = rows.length + " ratings saved.";
};
</script></body></html>
"""


def form_html(doc: dict, export_id: str) -> str:
    """The rating form: one self-contained page (no network) that saves the sheet's columns as a CSV. The items are
    JSON in a data block (``<`` escaped), shown with ``textContent``: an answer cannot inject markup."""
    items = [{c: it[c] for c in ("item", "prompt", "reference", "answer_a", "answer_b")} for it in doc["items"]]
    data = json.dumps({"export_id": export_id, "items": items}, ensure_ascii=False)
    esc = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = str(doc.get("run_name") or doc.get("run_id") or "").replace("<", "").replace("&", "")
    return FORM.replace("__TITLE__", title).replace("__COLUMNS__", json.dumps(COLUMNS)).replace("__DATA__", esc)
