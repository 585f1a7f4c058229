// detoxkit guard playground: a chat kept in the page, streamed from /v1/chat/completions, with each answer's trace.
// Every piece of model or server text goes into the page through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = []; // the conversation sent with each request: {role, content}
let inFlight = null; // the AbortController of the answer being streamed

const STAGES = ["judge", "decode", "screen", "rewrite", "stream"];
const DECISION_CLASS = {
  allow: "ok", pass: "ok", not_needed: "ok", timeout_allowed: "warn", rewritten: "warn", stopped: "bad",
  block: "bad", flag: "bad", withheld: "bad", withheld_after_rewrite: "bad", timeout_blocked: "bad",
  acd: "mode", plain: "mode", upstream: "mode", streamed: "ok", off: "off", skipped: "off",
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(x) {
  return typeof x === "number" && !Number.isInteger(x) ? x.toFixed(3) : String(x);
}

function setStatus(text) {
  $("status").textContent = text;
}

function addMessage(role, text) {
  const empty = $("empty");
  if (empty) empty.remove();
  const box = el("div", "msg " + role);
  box.appendChild(el("div", "role", role));
  const body = el("div", "text", text);
  box.appendChild(body);
  $("chat").appendChild(box);
  box.scrollIntoView({ block: "end" });
  return { box, body };
}

// One stage's decision as a short, readable line (the raw trace is in the "raw trace" fold below the table).
function describe(stage, t) {
  const parts = [];
  const cmp = (score, thr) => (thr === undefined ? fmt(score) : `${fmt(score)} ${score >= thr ? "≥" : "<"} ${fmt(thr)}`);
  if (stage === "judge" && t.score !== undefined) parts.push("P(harmful) " + cmp(t.score, t.threshold));
  if (stage === "decode") {
    if (t.decision === "skipped") parts.push("not decoded (blocked before the model)");
    else parts.push(t.decision === "acd" ? `ACD on (α ${fmt(t.alpha)}${t.contrast ? ", contrasted" : ""})` : "ACD off");
    if (t.tokens !== undefined) parts.push(`${t.tokens} tokens`);
    if (t.finish_reason) parts.push("finish " + t.finish_reason);
    if (t.error) parts.push("error: " + t.error);
  }
  if (stage === "screen") {
    if (t.scorer) parts.push(t.scorer);
    if (t.score !== undefined) parts.push("score " + cmp(t.score, t.threshold));
    if (t.while_streaming) parts.push("flagged while streaming");
  }
  if (stage === "rewrite" && t.score_after !== undefined) parts.push("score after " + fmt(t.score_after));
  if (stage === "stream") {
    parts.push(`${t.checks} checks, every ${t.every} tokens, window ${t.window}`);
    parts.push(t.stopped_at_token !== undefined ? `stopped at token ${t.stopped_at_token} (${t.on_flag})` : "not stopped");
  }
  if (t.category) parts.push("category " + t.category);
  if (t.deadline_exceeded) parts.push("deadline exceeded");
  if (t.batch_seconds !== undefined) parts.push(`${fmt(t.batch_seconds)} s`);
  return parts.join(" · ");
}

function stageDecision(stage, t) {
  if (stage === "stream") return t.stopped_at_token !== undefined ? "stopped" : "streamed";
  return t.decision === undefined ? "?" : String(t.decision);
}

function renderTrace(box, trace) {
  const table = el("table", "trace");
  table.dataset.testid = "trace";
  const names = STAGES.filter((s) => trace[s]).concat(
    Object.keys(trace).filter((k) => !STAGES.includes(k) && trace[k] && typeof trace[k] === "object"),
  );
  for (const stage of names) {
    const t = trace[stage];
    const row = table.insertRow();
    row.className = "stage-row";
    row.dataset.stage = stage;
    row.insertCell().append(el("span", null, stage));
    row.cells[0].className = "stage";
    const decision = stageDecision(stage, t);
    const cell = row.insertCell();
    cell.className = "decision";
    cell.appendChild(el("span", "badge " + (DECISION_CLASS[decision] || "warn"), decision));
    row.insertCell().textContent = describe(stage, t);
  }
  box.appendChild(table);
  if (trace.batch_size !== undefined) box.appendChild(el("div", "trace-foot", `batch of ${trace.batch_size}`));
  const raw = el("details");
  raw.appendChild(el("summary", null, "raw trace"));
  raw.appendChild(el("pre", null, JSON.stringify(trace, null, 2)));
  box.appendChild(raw);
}

function showError(box, message) {
  box.appendChild(el("div", "error", message));
}

// Reads the SSE body; calls onChunk(parsed JSON) for each data event until [DONE].
async function readEvents(response, onChunk) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onChunk(JSON.parse(data));
      }
    }
    if (done) return;
  }
}

async function errorMessage(response) {
  const text = await response.text();
  try {
    const e = JSON.parse(text).error;
    return `${response.status}: ${e.message}${e.code ? " (" + e.code + ")" : ""}`;
  } catch (_) {
    return `${response.status}: ${text.slice(0, 500)}`;
  }
}

async function send(prompt) {
  conversation.push({ role: "user", content: prompt });
  addMessage("user", prompt);
  const { box, body } = addMessage("assistant", "");
  box.classList.add("streaming");
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  const payload = {
    model: $("model").value.trim(), messages: conversation, stream: true,
    max_tokens: parseInt($("max-tokens").value, 10) || 64,
  };
  inFlight = new AbortController();
  setBusy(true, "streaming…");
  let text = "", finished = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers, body: JSON.stringify(payload), signal: inFlight.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(`${chunk.error.type}: ${chunk.error.message}`);
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) {
        text += choice.delta.content;
        body.textContent = text;
        box.scrollIntoView({ block: "end" });
      }
      if (choice && choice.finish_reason) finished = choice.finish_reason;
      if (chunk.guard) renderTrace(box, chunk.guard);
    });
    conversation.push({ role: "assistant", content: text });
    box.dataset.finish = finished || "";
    if (finished) box.querySelector(".role").textContent = `assistant · finish: ${finished}`;
    setBusy(false, "ready");
  } catch (e) {
    conversation.pop(); // the user turn got no answer: it is not part of the conversation
    showError(box, e.name === "AbortError" ? "stopped by you" : String(e.message || e));
    setBusy(false, "error");
  } finally {
    box.classList.remove("streaming");
    inFlight = null;
  }
}

function setBusy(busy, status) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  setStatus(status);
}

async function loadModelName() {
  try {
    const health = await (await fetch("/healthz")).json();
    if (health.model) $("model").value = health.model;
  } catch (_) {
    /* keep the default */
  }
}

$("chat-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt || inFlight) return;
  $("prompt").value = "";
  send(prompt);
});
$("prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("chat-form").requestSubmit();
  }
});
$("stop").addEventListener("click", () => inFlight && inFlight.abort());
$("reset").addEventListener("click", () => {
  if (inFlight) inFlight.abort();
  conversation.length = 0;
  const empty = el("p", null, "New conversation.");
  empty.id = "empty";
  $("chat").replaceChildren(empty);
});
loadModelName();
