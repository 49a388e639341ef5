// The microphone's audio as the realtime API takes it: mono, 24 kHz, 16-bit PCM, posted to the
// page in chunks of about 100 ms (an ArrayBuffer each). Runs in the audio thread.
//
// Resampling from the context's rate (`sampleRate`, usually 48 kHz): a box filter as wide as the
// rate ratio against aliasing when going down, then linear interpolation. Plenty for speech.

class PcmWorklet extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.targetRate = opts.targetRate || 24000;
    this.ratio = sampleRate / this.targetRate; // input samples per output sample
    this.chunk = new Int16Array(Math.round((this.targetRate * (opts.chunkMs || 100)) / 1000));
    this.filled = 0;
    this.width = Math.max(1, Math.round(this.ratio)); // box filter
    this.ring = new Float32Array(this.width);
    this.ringAt = 0;
    this.sum = 0;
    this.position = 0; // of the next output sample, in input samples from this block's start
    this.last = 0; // the previous block's last filtered sample
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") {
        this.flush();
        this.running = false;
      }
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (this.running && channels && channels.length) this.take(channels);
    return this.running;
  }

  take(channels) {
    const n = channels[0].length;
    const filtered = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let mono = 0;
      for (const channel of channels) mono += channel[i];
      mono /= channels.length;
      this.sum += mono - this.ring[this.ringAt];
      this.ring[this.ringAt] = mono;
      this.ringAt = (this.ringAt + 1) % this.width;
      filtered[i] = this.sum / this.width;
    }
    if (this.ringAt === 0) this.sum = this.ring.reduce((a, b) => a + b, 0); // no drift
    while (Math.floor(this.position) + 1 < n) {
      const i = Math.floor(this.position);
      const a = i < 0 ? this.last : filtered[i];
      const b = filtered[i + 1];
      this.push(a + (b - a) * (this.position - i));
      this.position += this.ratio;
    }
    this.position -= n;
    this.last = filtered[n - 1];
  }

  push(sample) {
    const clamped = Math.max(-1, Math.min(1, sample));
    this.chunk[this.filled++] = Math.round(clamped < 0 ? clamped * 32768 : clamped * 32767);
    if (this.filled === this.chunk.length) this.flush();
  }

  flush() {
    if (!this.filled) return;
    const out = this.chunk.slice(0, this.filled);
    this.port.postMessage(out.buffer, [out.buffer]);
    this.filled = 0;
  }
}

registerProcessor("pcm-worklet", PcmWorklet);
