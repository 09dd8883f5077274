// The plastispoof page: upload a file (POST /v1/score?segments=true) or stream the microphone (WS /v1/stream)
// and draw the window scores over the waveform. No library, no network access beyond this service.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("plastispoof-key") || "", model: null, windows: [], wave: null,
                rate: 16000, duration: 0, rule: null, recording: null };

function headers() { return state.key ? { Authorization: `Bearer ${state.key}` } : {}; }
function say(text) { $("status").textContent = text; }
function fmt(value, digits = 3) { return value === null || value === undefined ? "—" : Number(value).toFixed(digits); }

// ---------------------------------------------------------------- model card

async function loadModel() {
  const answer = await fetch("/v1/model", { headers: headers() });
  if (answer.status === 401) { $("key-section").hidden = false; $("api-key").focus(); say("Enter the API key."); return; }
  if (!answer.ok) { say(`The model could not be loaded (${answer.status}).`); return; }
  $("key-section").hidden = true;
  state.model = await answer.json();
  state.rule = state.model.operating_point;
  $("model-description").textContent = describeModel(state.model);
  $("model-card").textContent = JSON.stringify(state.model.card, null, 2);
  showOperatingPoint(state.rule);
}

function describeModel(info) {
  const card = info.card || {};
  const parts = [`This is a ${info.model} model`];
  if (card.params) parts[0] += ` with ${Number(card.params).toLocaleString()} parameters`;
  const training = card.training;
  if (training) parts.push(`trained on the ${training.dataset} corpus (${training.train_subset} subset), its decision threshold chosen on the ${training.dev_subset} subset`);
  else if (card.source) parts.push(`imported from published weights (${card.source.kind || "checkpoint"})`);
  if (card.dev_eer !== undefined && card.dev_eer !== null) parts.push(`on its development set it was wrong on ${(100 * card.dev_eer).toFixed(2)} % of recordings at its equal-error threshold`);
  parts.push(`it listens to ${info.input.window_s.toFixed(2)} s windows of ${info.input.sample_rate / 1000} kHz mono audio and averages their scores over the whole recording`);
  parts.push(info.calibration ? "its scores are calibrated into likelihood ratios, so the probability below is meaningful at the stated prior"
                              : "it has no calibration, so only a raw score and a decision are shown");
  return parts.join("; ") + ".";
}

function showOperatingPoint(rule) {
  if (!rule || rule.threshold === null) { $("operating-point").textContent = "(no decision threshold)"; return; }
  $("operating-point").textContent = `at operating point ${rule.name || rule.operating_point}: bona fide when ${rule.domain} > ${fmt(rule.threshold, 4)}`;
}

// ---------------------------------------------------------------- results

function showVerdict(result) {
  const decision = result.decision || "";
  $("verdict").textContent = decision === "bonafide" ? "bona fide" : decision === "spoof" ? "spoof" : "no decision";
  $("verdict").dataset.decision = decision;
  const p = result.p_bonafide;
  $("p-bonafide").value = p === null || p === undefined ? 0 : p;
  $("p-bonafide-text").textContent = p === null || p === undefined ? "—" : `${(100 * p).toFixed(1)} %`;
  $("duration").textContent = result.duration_s === null || result.duration_s === undefined ? "—" : `${result.duration_s.toFixed(2)} s`;
  $("score").textContent = fmt(result.score, 4);
  $("llr").textContent = fmt(result.llr, 3);
}

function showFinal(result) {
  if (result.error) { say(`Not scored: ${result.error}`); return; }
  state.windows = (result.segments || []).map((s) => ({ start_s: s.start_s, end_s: s.end_s, score: s.score, llr: s.llr }));
  state.duration = result.duration_s;
  showVerdict(result);
  state.rule = { ...state.rule, name: result.operating_point, threshold: result.threshold };
  showOperatingPoint(state.rule);
  draw();
  say(`Scored ${result.path} in ${Math.round(result.elapsed_ms)} ms.`);
}

// ---------------------------------------------------------------- timeline

function draw() {
  const canvas = $("timeline"), ctx = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue(name).trim();
  const w = canvas.width, h = canvas.height, pad = 8, axis = 18;  // axis: room for the time labels
  const mid = (h - axis) / 2, half = mid - pad;
  ctx.clearRect(0, 0, w, h);
  const duration = Math.max(state.duration || 0, ...state.windows.map((s) => s.end_s), 0.001);
  const x = (t) => pad + (w - 2 * pad) * (t / duration);
  if (state.wave && state.wave.length) {  // min / max envelope of the waveform
    ctx.fillStyle = color("--wave");
    const columns = w - 2 * pad, per = state.wave.length / columns;
    const seconds = state.wave.length / state.rate;
    for (let c = 0; c < columns; c++) {
      let lo = 1, hi = -1;
      for (let i = Math.floor(c * per); i < Math.min(state.wave.length, Math.floor((c + 1) * per)); i++) {
        const v = state.wave[i]; if (v < lo) lo = v; if (v > hi) hi = v;
      }
      if (hi < lo) continue;
      const px = pad + c * (seconds / duration);
      ctx.fillRect(px, mid - hi * half, Math.max(1, seconds / duration), Math.max(1, (hi - lo) * half));
    }
  }
  const domain = state.rule && state.rule.domain === "llr" ? "llr" : "score";
  const values = state.windows.map((s) => s[domain]).filter((v) => v !== null && v !== undefined);
  const threshold = state.rule ? state.rule.threshold : null;
  const all = threshold === null || threshold === undefined ? values : values.concat([threshold]);
  let lo = Math.min(...all, 0), hi = Math.max(...all, 0);
  if (hi - lo < 1e-6) { lo -= 1; hi += 1; }
  const y = (v) => h - axis - pad - (h - axis - 2 * pad) * ((v - lo) / (hi - lo));
  if (threshold !== null && threshold !== undefined) {
    ctx.strokeStyle = color("--threshold"); ctx.setLineDash([6, 4]); ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(pad, y(threshold)); ctx.lineTo(w - pad, y(threshold)); ctx.stroke(); ctx.setLineDash([]);
  }
  ctx.fillStyle = color("--muted"); ctx.font = "12px system-ui, sans-serif";
  const step = duration > 20 ? 5 : duration > 5 ? 1 : duration > 1 ? 0.5 : 0.1;
  for (let t = 0; t <= duration + 1e-9; t += step) {  // time axis, in seconds
    ctx.fillRect(x(t), h - axis, 1, 4);
    ctx.fillText(`${Number(t.toFixed(1))} s`, Math.min(x(t) + 2, w - 40), h - 4);
  }
  if (threshold !== null && threshold !== undefined) {
    ctx.fillStyle = color("--threshold");
    ctx.fillText(`threshold (${domain} ${threshold.toFixed(3)})`, pad + 4, Math.max(14, y(threshold) - 4));
  }
  ctx.lineWidth = 1.5; ctx.strokeStyle = color("--fg"); ctx.beginPath();
  state.windows.forEach((s, i) => { const px = x((s.start_s + s.end_s) / 2), py = y(s[domain]); if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py); });
  ctx.stroke();
  for (const s of state.windows) {
    const above = threshold === null || threshold === undefined ? null : s[domain] > threshold;
    ctx.fillStyle = above === null ? color("--fg") : above ? color("--bonafide") : color("--spoof");
    ctx.beginPath(); ctx.arc(x((s.start_s + s.end_s) / 2), y(s[domain]), 3.5, 0, 2 * Math.PI); ctx.fill();
  }
  canvas.dataset.windows = String(state.windows.length);
  $("windows").textContent = String(state.windows.length);
  const above = threshold === null || threshold === undefined ? null : values.filter((v) => v > threshold).length;
  $("timeline-summary").textContent = state.windows.length
    ? `${state.windows.length} windows` + (above === null ? "." : `, ${above} above the threshold.`) : "";
}

// ---------------------------------------------------------------- files

async function scoreFile(file) {
  say(`Scoring ${file.name}…`);
  state.windows = []; state.wave = null; state.duration = 0; draw();
  try {  // the waveform for the timeline, decoded by the browser (the score comes from the service)
    const context = new AudioContext();
    const audio = await context.decodeAudioData(await file.arrayBuffer());
    state.wave = audio.getChannelData(0); state.rate = audio.sampleRate; context.close();
  } catch (err) { state.wave = null; }
  const form = new FormData();
  form.append("file", file, file.name);
  const answer = await fetch("/v1/score?segments=true", { method: "POST", body: form, headers: headers() });
  const body = await answer.json();
  if (!answer.ok) { say(`Not scored (${answer.status}): ${body.error}`); if (answer.status === 401) loadModel(); return; }
  showFinal(body);
}

$("file-input").addEventListener("change", (event) => { if (event.target.files[0]) scoreFile(event.target.files[0]); });
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault(); zone.classList.remove("dragging");
  if (event.dataTransfer.files[0]) scoreFile(event.dataTransfer.files[0]);
});

// ---------------------------------------------------------------- microphone

async function startRecording() {
  let media;
  try { media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } }); }
  catch (err) { say(`The microphone is not available: ${err.message}`); return; }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/recorder.js");
  const source = context.createMediaStreamSource(media);
  const node = new AudioWorkletNode(context, "plastispoof-recorder");
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
  socket.binaryType = "arraybuffer";
  const chunks = [];
  state.windows = []; state.wave = new Float32Array(0); state.rate = context.sampleRate; state.duration = 0; draw();
  state.recording = { media, context, node, socket, chunks, stopped: false };
  socket.onopen = () => {
    socket.send(JSON.stringify({ format: "pcm16", sample_rate: context.sampleRate, name: "microphone", api_key: state.key || undefined }));
    node.port.onmessage = (event) => {
      if (state.recording.stopped || socket.readyState !== WebSocket.OPEN) return;
      const samples = event.data, pcm = new Int16Array(samples.length);
      for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
      socket.send(pcm.buffer);
      chunks.push(samples);
    };
    source.connect(node);
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "ready") { state.rule = { ...state.rule, name: message.operating_point, domain: message.domain, threshold: message.threshold }; showOperatingPoint(state.rule); say("Recording… speak now; the timeline grows as you speak."); }
    else if (message.type === "window") {
      state.windows.push(message);
      showVerdict({ ...message.running, duration_s: message.running.duration_s });
      scheduleDraw();
    } else if (message.type === "result") { state.wave = concat(chunks); showFinal(message); finishRecording(); }
    else if (message.type === "error") { say(`Stream stopped (${message.status}): ${message.error}`); finishRecording(); }
  };
  socket.onerror = () => say("The stream failed.");
  $("record").setAttribute("aria-pressed", "true"); $("record").disabled = true; $("stop").disabled = false; $("stop").focus();
}

// Windows may arrive faster than the screen refreshes: draw at most once a frame, joining the recorded chunks then.
let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    if (state.recording) { state.wave = concat(state.recording.chunks); state.duration = state.wave.length / state.rate; }
    draw();
  });
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0; for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

function stopRecording() {
  const rec = state.recording; if (!rec || rec.stopped) return;
  rec.stopped = true;
  say("Scoring the whole recording…");
  if (rec.socket.readyState === WebSocket.OPEN) rec.socket.send(JSON.stringify({ end: true }));
  rec.media.getTracks().forEach((track) => track.stop());
  $("stop").disabled = true;
}

function finishRecording() {
  const rec = state.recording; if (!rec) return;
  rec.stopped = true;
  rec.media.getTracks().forEach((track) => track.stop());
  rec.context.close();
  state.recording = null;
  $("record").setAttribute("aria-pressed", "false"); $("record").disabled = false; $("stop").disabled = true;
}

$("record").addEventListener("click", startRecording);
$("stop").addEventListener("click", stopRecording);
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  sessionStorage.setItem("plastispoof-key", state.key);
  loadModel();
});
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);
draw();
loadModel();
