// The page: the API key (asked for when the service answers 401), the options and the files,
// live transcription, and the service panel. Everything goes to the service's own public API.

import { apiJson, apiKey, apiUrl, setApiKey } from "./api.js";
import { el } from "./dom.js";
import { initLive } from "./live.js";
import { FileJob } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const MAX_PARALLEL = 2; // files in flight at once; the others wait their turn

// --- the API key --------------------------------------------------------------------------------

function askForKey(message) {
  $("key-panel").hidden = false;
  $("key-message").textContent = message || "This service needs an API key.";
  $("api-key").focus();
}

async function onKeySubmit(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  setApiKey(key);
  if (await loadModels()) {
    $("key-panel").hidden = true;
    $("api-key").value = "";
    $("key-state").textContent = "API key in use for this tab.";
    $("forget-key").hidden = false;
    refreshService();
  }
}

function forgetKey() {
  setApiKey("");
  $("key-state").textContent = "";
  $("forget-key").hidden = true;
  loadModels();
}

/** Fills the model list from GET ../v1/models; a 401 asks for the key. True when it answered. */
async function loadModels() {
  try {
    const { data } = await apiJson("v1/models");
    const select = $("opt-model");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "Default"),
      ...data.map((m) => el("option", { value: m.id }, m.id)));
    select.value = data.some((m) => m.id === chosen) ? chosen : "";
    showPageError("");
    return true;
  } catch (err) {
    if (err.status === 401) askForKey(apiKey() ? `That key was refused: ${err.message}` : err.message);
    else showPageError(`The model list could not be read: ${err.message}`);
    return false;
  }
}

function showPageError(message) {
  $("page-error").hidden = !message;
  $("page-error").textContent = message;
}

// --- files --------------------------------------------------------------------------------------

function options() {
  const diarize = $("opt-diarize").checked;
  return {
    language: $("opt-language").value.trim(),
    task: $("opt-task").value,
    punctuate: $("opt-punctuate").checked,
    summarize: $("opt-summarize").checked,
    diarize,
    numSpeakers: diarize ? Number($("opt-speakers").value) || null : null,
    translateTo: $("opt-translate-to").value.trim(),
    model: $("opt-model").value,
  };
}

const queue = [];
let running = 0;

function addFiles(files) {
  const chosen = options();
  for (const file of files) {
    const job = new FileJob(file, chosen, { onAuthError: (err) => askForKey(err.message), onRemoved });
    $("no-results").hidden = true;
    $("jobs").prepend(job.node);
    queue.push(job);
  }
  pump();
}

function onRemoved() {
  $("no-results").hidden = $("jobs").children.length > 0;
  $("results-title").focus(); // where the removed card was
}

function pump() {
  while (running < MAX_PARALLEL && queue.length) {
    const job = queue.shift();
    running += 1;
    job.run().finally(() => {
      running -= 1;
      pump();
    });
  }
  for (const job of queue) job.setStatus("Waiting for the files before it…");
}

function initFiles() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    addFiles([...input.files]);
    input.value = ""; // the same file again is a new job
  });
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) addFiles(files);
  });
  const diarize = $("opt-diarize");
  const sync = () => ($("opt-speakers").disabled = !diarize.checked);
  diarize.addEventListener("change", sync);
  sync();
}

// --- the service panel --------------------------------------------------------------------------

async function refreshReady() {
  const badge = $("ready-badge");
  try {
    const response = await fetch(apiUrl("readyz"), { cache: "no-store" });
    const body = await response.json().catch(() => null);
    const ready = response.ok && body?.status === "ok";
    const text = ready ? "Ready" : "Not ready";
    if (badge.textContent !== text) badge.textContent = text; // announced on a change only
    badge.dataset.state = ready ? "ready" : "not-ready";
    const list = $("ready-stages");
    list.replaceChildren(...Object.entries(body?.stages || {}).map(([name, s]) =>
      el("li", { "data-stage": name }, el("strong", {}, name), `: ${s.status}, ${s.running_replicas} running`)));
    $("ready-json").textContent = JSON.stringify(body, null, 2);
  } catch (err) {
    if (badge.textContent !== "Unreachable") badge.textContent = "Unreachable";
    badge.dataset.state = "not-ready";
    $("ready-json").textContent = String(err.message || err);
  }
}

async function refreshStages() {
  const body = $("stages-body");
  $("stages-error").hidden = true;
  try {
    const { stages } = await apiJson("v1/stages");
    body.replaceChildren(...Object.entries(stages).map(([name, s]) =>
      el("tr", { "data-stage": name },
        el("th", { scope: "row" }, name),
        el("td", {}, s.model),
        el("td", {}, `${s.device} (${s.dtype})`),
        el("td", {}, s.replicas ?? "?"))));
  } catch (err) {
    $("stages-error").hidden = false;
    $("stages-error").textContent = `The stages could not be read: ${err.message}`;
    if (err.status === 401) askForKey(err.message);
  }
}

function refreshService() {
  refreshReady();
  refreshStages();
}

// --- start --------------------------------------------------------------------------------------

function init() {
  $("key-form").addEventListener("submit", onKeySubmit);
  $("forget-key").addEventListener("click", forgetKey);
  if (apiKey()) {
    $("key-state").textContent = "API key in use for this tab.";
    $("forget-key").hidden = false;
  }
  initFiles();
  initLive({
    language: () => $("opt-language").value.trim(),
    onAuthError: (message) => askForKey(message),
  });
  $("service-refresh").addEventListener("click", refreshService);
  loadModels().then((ok) => ok && refreshStages());
  refreshReady();
  setInterval(() => document.visibilityState === "visible" && refreshReady(), 30_000);
}

init();
