// The downloads, built in the browser from the document with the rules of pipeline/formats.py:
// SRT cues start with "[A] " for a speaker, VTT cues carry a voice span "<v A>", times are
// rounded to the millisecond (half to even, as Python's round()), the text is stripped.

/** Python's round() on a float: to the nearest integer, a tie to the even one. */
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function timestamp(seconds, decimal) {
  let ms = Math.max(0, roundHalfEven(seconds * 1000));
  const h = Math.floor(ms / 3_600_000);
  ms -= h * 3_600_000;
  const m = Math.floor(ms / 60_000);
  ms -= m * 60_000;
  const s = Math.floor(ms / 1000);
  ms -= s * 1000;
  const two = (n) => String(n).padStart(2, "0");
  return `${two(h)}:${two(m)}:${two(s)}${decimal}${String(ms).padStart(3, "0")}`;
}

function srtText(cue) {
  const text = cue.text.trim();
  return cue.speaker ? `[${cue.speaker}] ${text}` : text;
}

function vttText(cue) {
  const text = cue.text.trim();
  if (!cue.speaker) return text;
  // A voice annotation is a tag: no "<", ">" or line break may stand in the name.
  const speaker = cue.speaker.replace(/[<>]/g, " ").split(/\s+/).filter(Boolean).join(" ");
  return `<v ${speaker}>${text}`;
}

export function toSrt(cues) {
  return cues
    .map((c, i) => `${i + 1}\n${timestamp(c.start, ",")} --> ${timestamp(c.end, ",")}\n${srtText(c)}\n`)
    .join("\n");
}

export function toVtt(cues) {
  const body = cues.map((c) => `${timestamp(c.start, ".")} --> ${timestamp(c.end, ".")}\n${vttText(c)}\n`);
  return "WEBVTT\n\n" + body.join("\n");
}

/** The original text: the punctuated text when the LLM's punctuation was accepted, else Whisper's. */
export function originalText(doc) {
  const p = doc.punctuation || {};
  return p.applied && typeof p.text === "string" ? p.text : doc.text;
}

/** A download of the document: format json|txt|srt|vtt, translated (when it has a translation) or not. */
export function render(doc, format, translated) {
  const useTranslation = translated && doc.translation;
  const cues = useTranslation ? doc.translation.segments : doc.segments;
  switch (format) {
    case "json":
      return JSON.stringify(doc, null, 2) + "\n";
    case "txt":
      return (useTranslation ? doc.translation.text : originalText(doc)) + "\n";
    case "srt":
      return toSrt(cues);
    case "vtt":
      return toVtt(cues);
    default:
      throw new Error(`unknown format ${format}`);
  }
}

export const MEDIA_TYPES = {
  json: "application/json",
  txt: "text/plain;charset=utf-8",
  srt: "application/x-subrip;charset=utf-8",
  vtt: "text/vtt;charset=utf-8",
};

/** mm:ss (h:mm:ss past an hour) of a time in seconds. */
export function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

/** The same time for a screen reader: "1 minute 5 seconds". */
export function spokenTime(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const parts = [];
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h) parts.push(`${h} hour${h === 1 ? "" : "s"}`);
  if (m) parts.push(`${m} minute${m === 1 ? "" : "s"}`);
  if (s || !parts.length) parts.push(`${s} second${s === 1 ? "" : "s"}`);
  return parts.join(" ");
}
