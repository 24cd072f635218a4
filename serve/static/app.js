// The draw-a-digit page: draw on the canvas (pointer events: mouse, pen, finger) or upload
// files, POST them to /v1/models/{model}:classify?debug=1, show the answer, the ten
// probabilities as bars and the 28x28 image the model saw. No libraries, no build step.
"use strict";

(function () {
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const modelSelect = document.getElementById("model");
  const state = { models: [], drawing: false, last: null, inked: false, answers: 0, strokes: 0 };

  function clearPad() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    state.inked = false;
  }

  function point(event) {
    // The canvas is scaled by CSS; map client pixels to its 280x280 drawing buffer.
    const rect = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * pad.width) / rect.width,
      y: ((event.clientY - rect.top) * pad.height) / rect.height,
    };
  }

  function stroke(from, to) {
    ctx.strokeStyle = "#000";
    ctx.lineWidth = pad.width / 10; // about MNIST's stroke width relative to the digit
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    state.inked = true;
  }

  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    state.drawing = true;
    state.last = point(event);
    stroke(state.last, state.last);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!state.drawing) return;
    const p = point(event);
    stroke(state.last, p);
    state.last = p;
  });
  for (const name of ["pointerup", "pointercancel"]) {
    pad.addEventListener(name, () => {
      if (state.drawing) state.strokes += 1;
      state.drawing = false;
      pad.dataset.strokes = String(state.strokes); // finished strokes, for tests and tools
    });
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function currentModel() {
    return modelSelect.value || (state.models[0] && state.models[0].name);
  }

  function labelsOf(name) {
    const model = state.models.find((m) => m.name === name);
    return model ? model.labels : [];
  }

  function renderChart(labels, probabilities) {
    const chart = document.getElementById("chart");
    chart.replaceChildren();
    const best = probabilities.indexOf(Math.max(...probabilities));
    probabilities.forEach((p, i) => {
      const row = document.createElement("div");
      row.className = i === best ? "bar top" : "bar";
      row.dataset.label = labels[i] ?? String(i);
      row.dataset.probability = String(p);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = row.dataset.label;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = (100 * p).toFixed(1) + "%";
      fill.style.display = "block";
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = (100 * p).toFixed(1) + "%";
      row.append(name, track, value);
      chart.append(row);
    });
  }

  function renderPrediction(prediction, labels) {
    document.getElementById("label").textContent = prediction.label;
    document.getElementById("confidence").textContent =
      "confidence " + (100 * prediction.confidence).toFixed(1) + "%";
    const seen = document.getElementById("seen");
    seen.src = prediction.input_image;
    seen.hidden = false;
    renderChart(labels, prediction.probabilities);
  }

  function renderFiles(files, predictions) {
    const list = document.getElementById("files");
    list.replaceChildren();
    list.hidden = files.length < 2;
    files.forEach((file, i) => {
      const item = document.createElement("li");
      const p = predictions[i];
      item.textContent = `${file.name}: ${p.label} (${(100 * p.confidence).toFixed(1)}%)`;
      list.append(item);
    });
  }

  // With `cnnedge serve --api-key`, the API answers 401: ask once, keep the key for this tab.
  async function apiFetch(url, options = {}) {
    const send = () => {
      const key = sessionStorage.getItem("cnnedge-api-key");
      const headers = key ? { Authorization: `Bearer ${key}` } : {};
      return fetch(url, { ...options, headers });
    };
    let response = await send();
    if (response.status === 401) {
      const key = window.prompt("This server needs an API key:");
      if (key) {
        sessionStorage.setItem("cnnedge-api-key", key);
        response = await send();
      }
    }
    return response;
  }

  async function classify(parts) {
    const name = currentModel();
    if (!name) {
      showError("no model is served");
      return null;
    }
    const form = new FormData();
    for (const part of parts) form.append("file", part.blob, part.name);
    document.body.dataset.state = "busy";
    try {
      const url = `/v1/models/${encodeURIComponent(name)}:classify?debug=1&top_k=3`;
      const response = await apiFetch(url, { method: "POST", body: form });
      const body = await response.json();
      if (!response.ok) {
        showError(body.error || `HTTP ${response.status}`);
        return null;
      }
      showError("");
      renderPrediction(body.predictions[0], labelsOf(name));
      return body.predictions;
    } catch (err) {
      showError("request failed: " + err);
      return null;
    } finally {
      // A counter rather than a flag, so a watcher can tell this answer from the previous one.
      state.answers += 1;
      document.body.dataset.answers = String(state.answers);
      document.body.dataset.state = "done";
    }
  }

  document.getElementById("clear").addEventListener("click", () => {
    clearPad();
    showError("");
  });

  document.getElementById("classify").addEventListener("click", () => {
    if (!state.inked) {
      showError("draw a digit first");
      return;
    }
    pad.toBlob((blob) => classify([{ blob, name: "canvas.png" }]), "image/png");
  });

  async function classifyFiles(fileList) {
    const files = Array.from(fileList);
    if (!files.length) return;
    const predictions = await classify(files.map((f) => ({ blob: f, name: f.name })));
    if (predictions) renderFiles(files, predictions);
  }

  const input = document.getElementById("file");
  input.addEventListener("change", () => classifyFiles(input.files));
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classifyFiles(event.dataTransfer.files);
  });

  async function loadModels() {
    try {
      const response = await apiFetch("/v1/models");
      const body = await response.json();
      state.models = body.models || [];
    } catch (err) {
      showError("cannot list models: " + err);
    }
    modelSelect.replaceChildren();
    for (const m of state.models) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.name;
      modelSelect.append(option);
    }
    modelSelect.parentElement.hidden = state.models.length < 2;
    const m = state.models[0];
    document.getElementById("model-info").textContent = m
      ? `Model ${m.name}, input ${m.input_shape.join("x")}.`
      : "";
    if (m) renderChart(m.labels, m.labels.map(() => 0));
    document.body.dataset.ready = "1";
  }

  clearPad();
  loadModels();
})();
