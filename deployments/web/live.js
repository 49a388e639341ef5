// Live transcription: the microphone, through an AudioWorklet (24 kHz mono PCM16 in ~100 ms
// chunks), over the realtime WebSocket (../v1/realtime?intent=transcription, OpenAI's Realtime
// API for transcription sessions). Each turn's words show greyed as they come (delta events) and
// become a final line when the turn is done (completed).

import { apiKey, socketUrl } from "./api.js";
import { el } from "./dom.js";

const RATE = 24000;

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function stamp(ms) {
  const s = ms / 1000;
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${(s % 60).toFixed(1).padStart(4, "0")}`;
}

export class LiveSession {
  /**
   * @param {object} ui the button, status line, error line and transcript list of the live panel
   * @param {{language: () => string, onAuthError: (message: string) => void}} hooks
   */
  constructor(ui, hooks) {
    this.ui = ui;
    this.hooks = hooks;
    this.running = false;
    this.lines = new Map(); // item_id -> {li, text, startMs}
    ui.button.addEventListener("click", () => (this.running ? this.stop("Stopped.") : this.start()));
    ui.clear.addEventListener("click", () => {
      this.lines.clear();
      ui.list.replaceChildren();
    });
  }

  setStatus(text) {
    this.ui.status.textContent = text;
  }

  showError(message) {
    this.ui.error.hidden = !message;
    this.ui.error.textContent = message || "";
  }

  setRunning(running) {
    this.running = running;
    this.ui.button.textContent = running ? "Stop" : "Start microphone";
    this.ui.button.setAttribute("aria-pressed", String(running));
    this.ui.panel.dataset.state = running ? "running" : "stopped";
  }

  async start() {
    this.showError("");
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia || !window.AudioWorkletNode) {
      this.showError("This browser gives the page no microphone here: open the page over https (or on localhost).");
      return;
    }
    this.setRunning(true);
    this.setStatus("Asking for the microphone…");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
      this.context = new AudioContext();
      await this.context.audioWorklet.addModule(new URL("pcm-worklet.js", import.meta.url));
      if (!this.running) return this.release(); // stopped while asking
      this.source = this.context.createMediaStreamSource(this.stream);
      this.node = new AudioWorkletNode(this.context, "pcm-worklet", {
        processorOptions: { targetRate: RATE, chunkMs: 100 },
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
      });
      this.pending = [];
      this.node.port.onmessage = (event) => this.send(event.data);
      this.source.connect(this.node).connect(this.context.destination); // its output is silence
      await this.context.resume();
    } catch (err) {
      this.stop("");
      this.showError(`The microphone could not be used: ${err.message || err.name}.`);
      return;
    }
    this.connect();
  }

  connect() {
    const key = apiKey();
    const protocols = ["realtime", ...(key ? [`openai-insecure-api-key.${key}`] : [])];
    let socket;
    try {
      socket = new WebSocket(socketUrl("v1/realtime?intent=transcription"), protocols);
    } catch (err) {
      this.stop("");
      this.showError(`The live connection could not be opened: ${err.message}.`);
      return;
    }
    this.socket = socket;
    this.setStatus("Connecting…");
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      const transcription = { model: "whisper-1" };
      const language = this.hooks.language();
      if (language) transcription.language = language;
      socket.send(JSON.stringify({
        type: "session.update",
        session: {
          type: "transcription",
          audio: {
            input: {
              format: { type: "audio/pcm", rate: RATE },
              transcription,
              turn_detection: { type: "server_vad", silence_duration_ms: 500 },
            },
          },
        },
      }));
      for (const chunk of this.pending.splice(0)) this.send(chunk);
      this.setStatus("Listening: speak, and each sentence appears when you pause.");
    });
    socket.addEventListener("message", (event) => this.onEvent(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket || !this.running) return; // stopped by the user
      const shown = this.ui.error.hidden ? "" : `${this.ui.error.textContent} `;
      if (event.reason === "invalid_api_key") {
        this.hooks.onAuthError(shown || "The service needs an API key.");
      } else if (event.code === 1006 && !opened) {
        this.showError("The live connection could not be opened. Is the service up?");
      } else if (event.code !== 1000) {
        const why = event.reason ? `: ${event.reason}` : "";
        this.showError(`${shown}The service closed the live connection (code ${event.code}${why}).`);
      }
      this.stop("Disconnected.");
    });
  }

  send(buffer) {
    const socket = this.socket;
    if (!socket || socket.readyState === WebSocket.CONNECTING) {
      if (this.pending && this.pending.length < 50) this.pending.push(buffer); // the first 5 s
      return;
    }
    if (socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(buffer) }));
  }

  line(itemId) {
    let line = this.lines.get(itemId);
    if (!line) {
      const time = el("span", { class: "live-time" });
      const text = el("span", { class: "live-text" });
      const li = el("li", { class: "live-line partial", "data-item": itemId }, time, text);
      line = { li, time, text, startMs: null };
      this.lines.set(itemId, line);
      this.ui.list.append(li);
    }
    return line;
  }

  onEvent(raw) {
    let event;
    try {
      event = JSON.parse(raw);
    } catch {
      return;
    }
    switch (event.type) {
      case "input_audio_buffer.speech_started": {
        const line = this.line(event.item_id);
        line.startMs = event.audio_start_ms;
        line.time.textContent = stamp(event.audio_start_ms);
        this.setStatus("Hearing speech…");
        break;
      }
      case "input_audio_buffer.speech_stopped":
        this.setStatus("Pause heard: finishing the sentence…");
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const line = this.line(event.item_id);
        line.text.textContent += event.delta;
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        const line = this.line(event.item_id);
        line.text.textContent = event.transcript.trim() || "(nothing recognised)";
        line.li.classList.remove("partial");
        line.li.classList.add("final");
        this.setStatus("Listening.");
        break;
      }
      case "conversation.item.input_audio_transcription.failed": {
        const line = this.line(event.item_id);
        line.li.classList.remove("partial");
        line.li.classList.add("failed");
        line.text.textContent = `Not transcribed: ${event.error?.message || "the service gave no reason"}`;
        break;
      }
      case "error":
        this.showError(event.error?.message || "The service sent an error without a message.");
        break;
      default:
        break; // session.created/updated, committed, ...
    }
  }

  release() {
    this.node?.port.postMessage("stop");
    this.node?.disconnect();
    this.source?.disconnect();
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.context?.close().catch(() => {});
    this.node = this.source = this.stream = this.context = null;
  }

  stop(status) {
    this.setRunning(false);
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "stopped by the user");
    this.release();
    for (const [id, line] of this.lines) {
      if (!line.li.classList.contains("partial")) continue;
      line.li.classList.replace("partial", "unfinished");
      if (!line.text.textContent) {
        line.li.remove();
        this.lines.delete(id);
      }
    }
    if (status) this.setStatus(status);
  }
}

export function initLive(hooks) {
  const ui = {
    panel: document.getElementById("live-panel"),
    button: document.getElementById("live-button"),
    clear: document.getElementById("live-clear"),
    status: document.getElementById("live-status"),
    error: document.getElementById("live-error"),
    list: document.getElementById("live-lines"),
  };
  return new LiveSession(ui, hooks);
}
