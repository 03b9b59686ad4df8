// The demo page: one image -> /classify, /detect and /search in parallel; boxes drawn over the photo.
"use strict";
const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("cv-api-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("cv-api-key", keyInput.value));

function headers() {
  return keyInput.value ? { Authorization: `Bearer ${keyInput.value}` } : {};
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

// A problem+json answer (or a network failure) as a readable message.
async function call(path, image, fields) {
  const form = new FormData();
  form.append("image", image, image.name || "image.jpg");
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  let response;
  try {
    response = await fetch(API + path, { method: "POST", body: form, headers: headers() });
  } catch (err) {
    throw new Error(`${path}: the API could not be reached (${err.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const id = body.request_id ? ` (request ${body.request_id})` : "";
    throw new Error(`${body.title || response.statusText} - ${body.detail || "HTTP " + response.status}${id}`);
  }
  return body;
}

function meta(answer) {
  const m = answer.model;
  const total = Object.entries(answer.timings_ms || {})
    .filter(([k]) => k !== "batch_size")
    .reduce((sum, [, v]) => sum + v, 0);
  return `${m.name} ${m.version} (${m.precision}), ${total.toFixed(1)} ms in the model path`;
}

function showClasses(answer) {
  const list = $("classes");
  list.replaceChildren();
  for (const p of answer.predictions) {
    const item = text("li", `${p.label} ${(p.score * 100).toFixed(1)} %`, "class");
    const bar = text("span", "", "bar");
    bar.style.width = `${Math.round(p.score * 160)}px`;
    item.append(bar);
    list.append(item);
  }
  $("classify-meta").textContent = meta(answer);
}

function showDetections(answer) {
  const img = $("photo");
  const layer = $("boxes");
  const list = $("detections");
  layer.replaceChildren();
  list.replaceChildren();
  const sx = img.clientWidth / answer.image.width;
  const sy = img.clientHeight / answer.image.height;
  for (const d of answer.detections) {
    const box = document.createElement("div");
    box.className = "box";
    box.dataset.label = d.label;
    Object.assign(box.style, {
      left: `${d.box.x1 * sx}px`, top: `${d.box.y1 * sy}px`,
      width: `${(d.box.x2 - d.box.x1) * sx}px`, height: `${(d.box.y2 - d.box.y1) * sy}px`,
    });
    box.append(text("span", `${d.label} ${d.score.toFixed(2)}`));
    layer.append(box);
    list.append(text("li", `${d.label} ${d.score.toFixed(2)}`, "detection"));
  }
  if (!answer.detections.length) list.append(text("li", "nothing detected"));
  $("detect-meta").textContent = meta(answer);
}

function showSimilar(answer) {
  const grid = $("similar");
  grid.replaceChildren();
  for (const hit of answer.results) {
    const figure = document.createElement("figure");
    figure.className = "hit";
    const thumb = hit.metadata.thumbnail;
    const img = document.createElement("img");
    img.alt = hit.metadata.label || hit.id;
    if (thumb) {
      img.src = thumb;
      figure.title = "run the demo on this image";
      figure.addEventListener("click", async () => analyse(await dataUrlToFile(thumb, `${hit.id}.jpg`)));
    }
    figure.append(img, text("figcaption", `${hit.metadata.label || hit.id} ${hit.score.toFixed(3)}`));
    grid.append(figure);
  }
  if (!answer.results.length) grid.append(text("p", "the gallery is empty (make gallery fills it)"));
  $("search-meta").textContent = meta(answer);
}

async function dataUrlToFile(url, name) {
  const blob = await (await fetch(url)).blob();
  return new File([blob], name, { type: blob.type });
}

async function analyse(file) {
  const error = $("error");
  error.hidden = true;
  const img = $("photo");
  img.src = URL.createObjectURL(file);
  await img.decode().catch(() => undefined);
  const tasks = [
    call("/classify", file, { top_k: "5" }).then(showClasses),
    call("/detect", file, {}).then(showDetections),
    call("/search", file, { top_k: "6" }).then(showSimilar),
  ];
  const failures = (await Promise.allSettled(tasks)).filter((r) => r.status === "rejected");
  if (failures.length) {
    error.textContent = [...new Set(failures.map((f) => f.reason.message))].join("\n");
    error.hidden = false;
  }
  document.body.dataset.state = "done";
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) analyse(event.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) analyse(event.dataTransfer.files[0]);
});
