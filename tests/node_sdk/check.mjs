// The official OpenAI Node SDK against speechgraph's OpenAI routes, as a Node user calls them.
//   node check.mjs BASE_URL GOOD_AUDIO BAD_FILE...
// Prints one JSON object: for each bad file, the SDK error class it raised (with status, code and
// param), then what the good file gave in json and srt. tests/test_openai_api.py asserts on it.
import fs from "node:fs";
import path from "node:path";
import OpenAI, { toFile } from "openai";

const [baseURL, good, ...bad] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "not-checked-here", maxRetries: 0, timeout: 120_000 });

async function upload(file) {
  return toFile(fs.readFileSync(file), path.basename(file));
}

async function errorOf(call) {
  try {
    await call();
    return { error: null };
  } catch (err) {
    return {
      error: err.constructor.name,
      badRequest: err instanceof OpenAI.BadRequestError,
      status: err.status ?? null,
      code: err.code ?? null,
      param: err.param ?? null,
    };
  }
}

const refused = {};
for (const file of bad) {
  refused[path.basename(file)] = {
    transcription: await errorOf(async () =>
      client.audio.transcriptions.create({ model: "whisper-1", file: await upload(file) }),
    ),
    translation: await errorOf(async () =>
      client.audio.translations.create({ model: "whisper-1", file: await upload(file) }),
    ),
  };
}
const json = await client.audio.transcriptions.create({ model: "whisper-1", file: await upload(good) });
const srt = await client.audio.transcriptions.create({
  model: "whisper-1",
  file: await upload(good),
  response_format: "srt",
});
console.log(JSON.stringify({ refused, text: json.text, srt }));
