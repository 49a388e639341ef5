// One file's card: its upload to POST ../v1/transcribe (stream=true), the progress bar fed by the
// stream's progress events, segments as they come, then the document: speakers, punctuation,
// summary, translation, an audio player that follows the transcript, search and downloads.

import { ApiError, apiFetch, errorFromBody, serverSentEvents } from "./api.js";
import { SpeakerColours, el, highlighted, saveFile, uid } from "./dom.js";
import { MEDIA_TYPES, clock, render, spokenTime } from "./formats.js";

const seconds = (s) => `${Number(s).toFixed(1)} s`;

export class FileJob {
  /**
   * @param {File} file the file picked or dropped
   * @param {object} options language, task, punctuate, summarize, diarize, numSpeakers, translateTo, model
   * @param {{onAuthError: (err: ApiError) => void, onRemoved: () => void}} hooks
   */
  constructor(file, options, hooks) {
    this.file = file;
    this.options = options;
    this.hooks = hooks;
    this.stem = file.name.replace(/\.[^.]*$/, "") || "transcript";
    this.doc = null;
    this.segments = new Map(); // segment id -> its row: {li, segment, text, speaker, translation, translated}
    this.colours = new SpeakerColours();
    this.query = "";
    this.controller = new AbortController();
    this.audioUrl = URL.createObjectURL(file);
    this.node = this.build();
  }

  build() {
    const id = uid("job");
    this.title = el("h3", { id: `${id}-title` }, this.file.name);
    this.cancelButton = el("button", {
      type: "button", class: "secondary", onclick: () => (this.finished ? this.remove() : this.cancel()),
    }, "Cancel");
    this.progress = el("progress", { id: `${id}-progress`, max: 1, "aria-describedby": `${id}-status` });
    this.status = el("p", { id: `${id}-status`, class: "status", role: "status", "aria-live": "polite" }, "Uploading…");
    this.error = el("p", { class: "error", role: "alert", hidden: true });
    this.audio = el("audio", { controls: true, preload: "metadata", src: this.audioUrl, "aria-label": `Audio of ${this.file.name}` });
    this.audio.addEventListener("timeupdate", () => this.follow());
    this.audio.addEventListener("seeked", () => this.follow());

    this.search = el("input", { id: `${id}-search`, type: "search", autocomplete: "off", placeholder: "Words, a speaker…" });
    this.search.addEventListener("input", () => this.filter(this.search.value.trim()));
    this.matches = el("span", { class: "matches", "aria-live": "polite" });
    this.versionSelect = el("select", { id: `${id}-version` },
      el("option", { value: "original" }, "Original"),
      el("option", { value: "translated" }, "Translation"));
    this.versionField = el("span", { class: "field inline", hidden: true },
      el("label", { for: `${id}-version` }, "Version"), this.versionSelect);
    this.downloadButtons = ["json", "txt", "srt", "vtt"].map((format) =>
      el("button", {
        type: "button", class: "secondary", disabled: true, "data-format": format,
        "aria-label": `Download ${format.toUpperCase()}`, onclick: () => this.download(format),
      }, format.toUpperCase()));

    this.meta = el("p", { class: "doc-meta", hidden: true });
    this.legend = el("ul", { class: "legend", "aria-label": "Speakers" });
    this.legendBox = el("div", { class: "legend-box", hidden: true }, el("h4", {}, "Speakers"), this.legend);
    this.punctuation = el("div", { class: "punctuation" });
    this.summary = el("div", { class: "summary-box" });
    this.columns = el("div", { class: "seg-columns", "aria-hidden": "true", hidden: true },
      el("span", {}, "Time"), el("span", {}, ""), el("span", {}, "Original"),
      el("span", { class: "translation-heading" }, "Translation"));
    this.list = el("ol", { class: "segments", "aria-label": `Segments of ${this.file.name}` });
    this.list.addEventListener("click", (event) => {
      const item = event.target.closest("li.seg");
      if (item && !window.getSelection()?.toString()) this.seek(Number(item.dataset.start));
    });
    if (this.options.translateTo) {
      this.list.classList.add("with-translation");
      this.columns.querySelector(".translation-heading").textContent = `Translation (${this.options.translateTo})`;
    }

    return el("article", { class: "job", "aria-labelledby": `${id}-title`, "data-state": "running" },
      el("header", { class: "job-head" }, this.title,
        el("span", { class: "size" }, `${(this.file.size / 1e6).toFixed(1)} MB`), this.cancelButton),
      el("div", { class: "progress-row" }, el("label", { for: `${id}-progress` }, "Progress"), this.progress),
      this.status, this.error, this.audio,
      this.tools = el("div", { class: "job-tools", hidden: true },
        el("span", { class: "field inline" }, el("label", { for: `${id}-search` }, "Search"), this.search, this.matches),
        el("div", { class: "downloads" }, this.versionField,
          el("span", { class: "download-buttons", role: "group", "aria-label": "Download" },
            el("span", { class: "group-label", "aria-hidden": "true" }, "Download"), ...this.downloadButtons))),
      this.meta, this.legendBox, this.summary, this.punctuation,
      el("section", { class: "transcript", "aria-label": "Transcript" }, this.columns, this.list));
  }

  form() {
    const o = this.options;
    const form = new FormData();
    form.append("file", this.file, this.file.name);
    form.append("stream", "true");
    form.append("task", o.task);
    form.append("punctuate", String(o.punctuate));
    form.append("summarize", String(o.summarize));
    if (o.language) form.append("language", o.language);
    if (o.model) form.append("model", o.model);
    if (o.translateTo) form.append("translate_to", o.translateTo);
    if (o.diarize) {
      form.append("diarize", "true");
      if (o.numSpeakers) form.append("num_speakers", String(o.numSpeakers));
    }
    return form;
  }

  async run() {
    try {
      const response = await apiFetch("v1/transcribe", { method: "POST", body: this.form(), signal: this.controller.signal });
      this.setStatus("Uploaded; cutting the audio into windows…");
      for await (const { event, data } of serverSentEvents(response)) {
        if (event === "progress") this.onProgress(data);
        else if (event === "segment") this.addSegment(data);
        else if (event === "translation") this.setTranslation(data);
        else if (event === "document") this.onDocument(data);
        else if (event === "error") throw errorFromBody(data) || new ApiError(String(data));
      }
      if (!this.doc) throw new ApiError("The answer ended before the document came. Try the file again.");
    } catch (err) {
      if (err.name === "AbortError") {
        this.finish("cancelled", "Cancelled.");
        return;
      }
      this.fail(err);
    }
  }

  cancel() {
    this.controller.abort();
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  finish(state, text) {
    this.finished = true;
    this.node.dataset.state = state;
    this.cancelButton.textContent = "Remove";
    this.cancelButton.setAttribute("aria-label", `Remove ${this.file.name}`);
    this.setStatus(text);
  }

  remove() {
    this.audio.removeAttribute("src");
    this.audio.load();
    URL.revokeObjectURL(this.audioUrl);
    this.node.remove();
    this.hooks.onRemoved?.();
  }

  fail(err) {
    if (!this.progress.hasAttribute("value")) this.progress.value = 0; // not spinning on
    this.error.hidden = false;
    this.error.textContent = err.message || String(err);
    this.finish("failed", "Failed.");
    if (err.status === 401) this.hooks.onAuthError(err);
  }

  onProgress(p) {
    this.sawProgress = true;
    if (!p.planning_done) {
      const planned = p.duration_s ? ` of ${seconds(p.duration_s)}` : "";
      this.setStatus(`Cutting the audio into windows: ${seconds(p.audio_planned_s)}${planned} planned, ` +
        `${p.windows_done} of ${p.windows_total} windows transcribed so far.`);
    } else if (p.windows_done < p.windows_total) {
      this.setStatus(`Transcribing: ${p.windows_done} of ${p.windows_total} windows ` +
        `(${seconds(p.audio_seconds_done)} of ${seconds(p.audio_seconds_total)} of speech).`);
    } else {
      this.setStatus(`Transcribed ${p.windows_total} windows${this.pendingWork()}`);
    }
    if (p.windows_total > 0) {
      this.progress.max = p.windows_total;
      this.progress.value = p.windows_done;
    }
  }

  pendingWork() {
    const o = this.options;
    const work = [o.diarize && "speakers", o.translateTo && "translation", o.punctuate && "punctuation",
      o.summarize && "summary"].filter(Boolean);
    return work.length ? `; waiting for ${work.join(", ")}…` : ".";
  }

  addSegment(segment) {
    const text = el("p", { class: "seg-text" });
    const time = el("button", {
      type: "button", class: "seg-time",
      "aria-label": `Play from ${spokenTime(segment.start)}`,
    }, clock(segment.start));
    const speaker = el("span", { class: "speaker-slot" });
    const translation = el("p", { class: "seg-translation", "data-translated": "pending" });
    const li = el("li", { class: "seg", "data-id": segment.id, "data-start": segment.start, "data-end": segment.end },
      time, speaker, text, this.options.translateTo ? translation : null);
    const entry = { li, segment, text, speaker, translation, translated: null };
    this.segments.set(segment.id, entry);
    this.paintSpeaker(entry);
    this.paintText(entry);
    this.list.append(li);
    this.columns.hidden = !this.options.translateTo;
  }

  paintSpeaker(entry) {
    const label = entry.segment.speaker;
    entry.speaker.replaceChildren();
    if (!label) return;
    entry.li.dataset.speaker = label;
    entry.speaker.append(el("span", { class: this.colours.className(label), title: `Speaker ${label}` },
      el("span", { class: "sr-only" }, "Speaker "), label));
    entry.li.classList.add(`by-speaker-c${this.colours.index(label)}`);
  }

  paintText(entry) {
    entry.text.replaceChildren(...highlighted(entry.segment.text.trim(), this.query));
    const t = entry.translated;
    if (!this.options.translateTo) return;
    entry.translation.replaceChildren(el("span", { class: "sr-only" }, "Translation: "));
    if (!t) {
      entry.translation.append(el("span", { class: "pending" }, "translating…"));
      return;
    }
    entry.translation.dataset.translated = String(t.translated);
    entry.translation.append(...highlighted(t.text.trim(), this.query));
    if (!t.translated) {
      entry.translation.append(" ", el("span", { class: "untranslated" }, `not translated: ${t.reason || t.fallback || "no reason given"}`));
    }
  }

  setTranslation(translated) {
    const entry = this.segments.get(translated.id);
    if (!entry) return;
    entry.translated = translated;
    this.paintText(entry);
  }

  onDocument(doc) {
    this.doc = doc;
    if (!this.sawProgress) {
      this.progress.max = 1; // nothing to transcribe (silence): the work is done all the same
      this.progress.value = 1;
    }
    // The document is what counts: segments again (now with their speakers), and translations.
    this.segments.clear();
    this.list.replaceChildren();
    for (const speaker of doc.speakers || []) this.colours.index(speaker.speaker);
    for (const segment of doc.segments) this.addSegment(segment);
    for (const translated of doc.translation?.segments || []) this.setTranslation(translated);
    if (doc.translation) {
      this.columns.querySelector(".translation-heading").textContent = `Translation (${doc.translation.language})`;
      this.versionSelect.options[1].textContent = `Translation (${doc.translation.language})`;
      this.versionSelect.value = "translated";
      this.versionField.hidden = false;
    }
    this.renderMeta(doc);
    this.renderSpeakers(doc);
    this.renderSummary(doc.summary || {});
    this.renderPunctuation(doc.punctuation || {});
    for (const button of this.downloadButtons) button.disabled = false;
    this.tools.hidden = false;
    this.filter(this.query);
    const kept = doc.translation?.untranslated || 0;
    const untranslated = kept ? `, ${kept} segment${kept === 1 ? "" : "s"} not translated` : "";
    const count = doc.segments.length;
    this.finish("done", `Done: ${count} segment${count === 1 ? "" : "s"} from ${seconds(doc.duration_s)} of audio ` +
      `in ${seconds(doc.timings.total_s)}${untranslated}.`);
  }

  renderMeta(doc) {
    this.meta.hidden = false;
    this.meta.textContent = `Language: ${doc.language} · task: ${doc.task} · ${seconds(doc.duration_s)} of audio · ` +
      `real-time factor ${Number(doc.real_time_factor).toFixed(2)}`;
  }

  renderSpeakers(doc) {
    this.legend.replaceChildren();
    const speakers = doc.speakers || [];
    this.legendBox.hidden = speakers.length === 0;
    for (const s of speakers) {
      this.legend.append(el("li", { "data-speaker": s.speaker },
        el("span", { class: this.colours.className(s.speaker) }, s.speaker),
        ` ${seconds(s.talk_s)} in ${s.turns} turn${s.turns === 1 ? "" : "s"}`));
    }
  }

  renderSummary(result) {
    const box = this.summary;
    box.replaceChildren();
    const summary = result.summary;
    if (!summary) {
      box.append(el("p", { class: "note summary-reason" }, el("strong", {}, "No summary: "), result.reason || "none was written."));
      return;
    }
    box.append(el("section", { class: "summary", "aria-label": "Summary" },
      el("h4", {}, "Summary"),
      el("p", { class: "summary-abstract" }, summary.abstract),
      el("ul", { class: "summary-bullets" }, summary.bullets.map((b) => el("li", {}, b))),
      summary.speaker_points?.length
        ? [el("h5", {}, "Who said what"),
          el("ul", { class: "speaker-points" }, summary.speaker_points.map((p) =>
            el("li", {}, el("span", { class: this.colours.className(p.speaker) }, p.speaker), ` ${p.point}`)))]
        : null));
  }

  renderPunctuation(result) {
    const box = this.punctuation;
    box.replaceChildren();
    if (result.applied && typeof result.text === "string") {
      box.append(el("section", { class: "punctuated", "aria-label": "Punctuated text" },
        el("h4", {}, "Punctuated text"), el("p", { class: "punctuated-text" }, result.text)));
      if (result.reason) box.append(el("p", { class: "note punctuation-note" }, result.reason));
      return;
    }
    box.append(el("p", { class: "note punctuation-note" }, el("strong", {}, "Punctuation not applied: "),
      result.reason || "no reason given."));
  }

  /** The segment playing is highlighted (and marked for screen readers). */
  follow() {
    const t = this.audio.currentTime;
    for (const { li, segment } of this.segments.values()) {
      const now = t >= segment.start && t < segment.end;
      li.classList.toggle("current", now);
      if (now) li.setAttribute("aria-current", "true");
      else li.removeAttribute("aria-current");
    }
  }

  seek(start) {
    this.audio.currentTime = start;
    this.follow();
    this.audio.play().catch(() => {}); // no sound device, or the browser refused: the seek stands
  }

  filter(query) {
    this.query = query;
    let shown = 0;
    const needle = query.toLowerCase();
    for (const entry of this.segments.values()) {
      const haystack = [entry.segment.text, entry.translated?.text || "", entry.segment.speaker || ""].join("\n").toLowerCase();
      const match = !needle || haystack.includes(needle);
      entry.li.hidden = !match;
      shown += match ? 1 : 0;
      this.paintText(entry);
    }
    this.matches.textContent = query ? `${shown} of ${this.segments.size} segments` : "";
  }

  download(format) {
    if (!this.doc) return;
    const translated = Boolean(this.doc.translation) && this.versionSelect.value === "translated";
    const suffix = translated && format !== "json" ? `.${this.doc.translation.language}` : "";
    saveFile(`${this.stem}${suffix}.${format}`, render(this.doc, format, translated), MEDIA_TYPES[format]);
  }
}
