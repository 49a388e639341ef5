"""The web page (``deployments/web/``) in a real browser: Debian's Chromium, driven by Playwright,
against the graph on a real local cluster. With the tiny random models the text is meaningless, so
these check structure and behaviour: progress, segments, speakers, translation, the notes the
document carries, downloads (rendered in the browser, checked against ``pipeline.formats``),
the audio player, live transcription from Chromium's fake microphone, and the API key.

Each test saves a screenshot; three of them are the README's (``docs/web-*.png``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import srt
from conftest import ROOT, SHARED_AUDIO, graph_args, needs_tool, second_app, second_app_args, serving
from playwright.sync_api import (
    Browser,
    Download,
    FilePayload,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    WebSocket,
    expect,
    sync_playwright,
)

from pipeline.formats import render
from pipeline.schemas import TranscriptionResult

pytestmark = needs_tool("chromium", package="chromium")

JFK = SHARED_AUDIO / "jfk.wav"
SAMPLE = ROOT.parent / "shared" / "fixtures" / "diarization" / "sample.wav"
DOCS = ROOT / "docs"
KEY = "sk-web-page-test"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
DONE_S = 180  # the longest a file may take, on 2 CPUs with CI beside it


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """The graph with the diarization stage, at /."""
    with serving(graph_args(diarization=True)) as url:
        yield url


@pytest.fixture(scope="module")
def keyed(service: str) -> Iterator[str]:
    """The graph again at /keyed, with an API key. Started only by the test that needs it, the
    module's last."""
    with second_app(service, "keyed", second_app_args(api_keys={"SPEECHGRAPH_WEB_TEST_KEY": KEY})) as url:
        yield url


def fake_microphone(path: Path) -> Path:
    """jfk.wav with 2 s of silence after it, as Chromium's fake capture device reads it (a 16-bit
    PCM WAV; the device plays it in a loop, converted to the capture rate). The silence ends the
    last turn whatever the VAD makes of the pauses inside the speech."""
    with wave.open(str(JFK)) as source:
        assert (source.getsampwidth(), source.getnchannels()) == (2, 1)
        rate = source.getframerate()
        frames = source.readframes(source.getnframes())
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames + b"\0\0" * 2 * rate)
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's Chromium (never a downloaded one), headless, on a fresh profile (Playwright gives
    each launch its own temporary user-data-dir), with a fake microphone that plays jfk.wav."""
    mic = fake_microphone(tmp_path_factory.mktemp("mic") / "mic.wav")
    browser = playwright.chromium.launch(
        executable_path=shutil.which("chromium") or "/usr/bin/chromium",
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}",
        ],
    )
    yield browser
    browser.close()


class Watched:
    """A page and what it did: requests, uncaught errors, CSP violations."""

    def __init__(self, page: Page):
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if "Security Policy" in m.text else None,
        )


@pytest.fixture
def watched(browser: Browser, service: str) -> Iterator[Watched]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    watched = Watched(context.new_page())
    yield watched
    context.close()
    assert not watched.errors, watched.errors
    elsewhere = [u for u in watched.requests if not u.startswith((service, "blob:", "data:"))]
    assert not elsewhere, f"the page asked something of another origin: {elsewhere}"


def open_page(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    assert page.url == f"{url}/ui/", "/ redirects to the page"
    expect(page.locator("#opt-model option")).not_to_have_count(1)  # filled from /v1/models


def set_options(page: Page, punctuate: bool = True, summarize: bool = True, **fields: str) -> None:
    page.set_checked("#opt-punctuate", punctuate)
    page.set_checked("#opt-summarize", summarize)
    for selector, value in fields.items():
        page.fill(f"#opt-{selector.replace('_', '-')}", value)


def finished_job(page: Page, state: str = "done") -> Locator:
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-state", state, timeout=DONE_S * 1000)
    return job


def download(page: Page, job: Locator, fmt: str) -> Download:
    with page.expect_download() as info:
        job.locator(f"button[data-format={fmt}]").click()
    return info.value


def download_text(page: Page, job: Locator, fmt: str) -> str:
    return Path(download(page, job, fmt).path()).read_text(encoding="utf-8")


def screenshot(page: Page, path: Path) -> None:
    page.set_viewport_size(VIEWPORT)
    page.evaluate("document.activeElement?.blur()")  # no focus ring in the picture
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def test_a_file_progress_notes_downloads_player(watched: Watched, service: str, tmp_path: Path) -> None:
    page = watched.page
    open_page(page, service)
    expect(page.locator("#ready-badge")).to_have_text("Ready")
    expect(page.locator("#stages-body tr")).to_have_count(4)  # preprocess, asr, postprocess, diarization
    page.set_input_files("#file-input", str(JFK))
    job = finished_job(page)

    doc: dict[str, Any] = json.loads(download_text(page, job, "json"))
    result = TranscriptionResult.model_validate(doc)
    segments = job.locator("li.seg")
    assert doc["segments"], "jfk.wav has speech"
    expect(segments).to_have_count(len(doc["segments"]))
    bar = job.locator("progress").evaluate("p => [p.value, p.max]")
    assert bar == [doc["timings"]["windows"], doc["timings"]["windows"]], "the progress events filled the bar"

    # The tiny LLM's answers are refused: the page says why, in the document's words.
    assert doc["summary"]["summary"] is None and not doc["punctuation"]["applied"]
    expect(job.locator(".summary-reason")).to_contain_text(doc["summary"]["reason"])
    expect(job.locator(".punctuation-note")).to_contain_text(doc["punctuation"]["reason"])

    # Downloads are built in the browser with pipeline/formats.py's rules.
    srt_file = download(page, job, "srt")
    assert srt_file.suggested_filename == "jfk.srt"
    subtitles = Path(srt_file.path()).read_text(encoding="utf-8")
    assert len(list(srt.parse(subtitles))) == len(doc["segments"])
    assert subtitles == render(result, "srt")
    assert download_text(page, job, "vtt") == render(result, "vtt")
    assert download_text(page, job, "txt") == render(result, "text")

    # A click on a segment seeks the player there (from 5 s away), and that segment is the current
    # one; Enter on its time does the same.
    player = job.locator("audio")
    player.evaluate("a => a.readyState || new Promise(r => a.addEventListener('loadedmetadata', r))")
    for i, press in ((len(doc["segments"]) - 1, "click"), (0, "Enter")):
        start = float(doc["segments"][i]["start"])
        away = start + 5 if start + 5 < doc["duration_s"] else start - 5
        player.evaluate("(a, t) => { a.pause(); a.currentTime = t; }", away)
        row = segments.nth(i)
        if press == "click":
            row.locator(".seg-text").click()
        else:
            row.locator("button.seg-time").focus()
            page.keyboard.press("Enter")
        position = player.evaluate("a => a.currentTime")
        assert abs(position - start) < 1.0, (press, position, start)
        expect(row).to_have_class(re.compile(r"\bcurrent\b"))
    player.evaluate("a => a.pause()")

    # Search filters the segments.
    job.locator("input[type=search]").fill("no such words in any transcript")
    expect(job.locator("li.seg:visible")).to_have_count(0)
    job.locator("input[type=search]").fill("")
    expect(job.locator("li.seg:visible")).to_have_count(len(doc["segments"]))

    screenshot(page, DOCS / "web-files.png")
    page.set_viewport_size(PHONE)  # a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_not_audio_shows_the_apis_message(watched: Watched, service: str, tmp_path: Path) -> None:
    page = watched.page
    open_page(page, service)
    notes = b"Meeting notes: nothing here is audio.\n" * 20
    payload: FilePayload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": notes}
    page.set_input_files("#file-input", payload)
    job = finished_job(page, "failed")
    answer = requests.post(
        f"{service}/v1/transcribe", files={"file": ("notes.txt", notes)}, data={"stream": "true"}, timeout=60
    )
    assert answer.status_code >= 400
    expect(job.locator(".error")).to_have_text(answer.json()["error"]["message"])
    screenshot(page, tmp_path / "not-audio.png")


def test_speakers_in_colours_with_a_legend(watched: Watched, service: str) -> None:
    page = watched.page
    open_page(page, service)
    set_options(page, punctuate=False, summarize=False)
    page.check("#opt-diarize")
    page.set_input_files("#file-input", str(SAMPLE))
    job = finished_job(page)

    legend = job.locator(".legend li")
    expect(legend).to_have_count(2)
    labels = legend.evaluate_all("items => items.map(i => i.dataset.speaker)")
    colours = legend.locator(".speaker").evaluate_all(
        "badges => badges.map(b => getComputedStyle(b).backgroundColor)"
    )
    assert len(set(labels)) == 2 and len(set(colours)) == 2, (labels, colours)
    # Each segment wears its speaker's colour, the legend's (the tiny Whisper's few segments may
    # all fall in one speaker's turns).
    badges = job.locator("li.seg .speaker").evaluate_all(
        "bs => bs.map(b => [b.closest('li').dataset.speaker, getComputedStyle(b).backgroundColor])"
    )
    expect(job.locator("li.seg")).to_have_count(len(badges))
    legend_colour = dict(zip(labels, colours, strict=True))
    assert badges and all(colour == legend_colour[label] for label, colour in badges), badges
    vtt = download_text(page, job, "vtt")
    assert all(f"\n<v {label}>" in vtt for label, _ in badges), "VTT cues carry the speakers"
    screenshot(page, DOCS / "web-speakers.png")


def test_translation_beside_each_segment(watched: Watched, service: str, tmp_path: Path) -> None:
    page = watched.page
    open_page(page, service)
    set_options(page, punctuate=False, summarize=False, translate_to="German")
    page.set_input_files("#file-input", str(JFK))
    job = finished_job(page)

    doc = json.loads(download_text(page, job, "json"))
    assert doc["translation"]["language"] == "de"
    rows = job.locator("li.seg")
    expect(rows).to_have_count(len(doc["segments"]))
    states = rows.locator(".seg-translation").evaluate_all("ps => ps.map(p => p.dataset.translated)")
    assert states == [str(t["translated"]).lower() for t in doc["translation"]["segments"]]
    untranslated = [t for t in doc["translation"]["segments"] if not t["translated"]]
    expect(job.locator(".untranslated")).to_have_count(len(untranslated))
    for mark, t in zip(job.locator(".untranslated").all(), untranslated, strict=True):
        expect(mark).to_contain_text(t["reason"])

    expect(job.locator("select")).to_have_value("translated")
    subtitles = download(page, job, "srt")
    assert subtitles.suggested_filename == "jfk.de.srt"
    text = Path(subtitles.path()).read_text(encoding="utf-8")
    assert len(list(srt.parse(text))) == len(doc["segments"])
    assert text == render(TranscriptionResult.model_validate(doc), "srt")
    job.locator("select").select_option("original")
    original = download(page, job, "srt")
    assert original.suggested_filename == "jfk.srt"
    assert [c.content for c in srt.parse(Path(original.path()).read_text(encoding="utf-8"))] == [
        s["text"].strip() for s in doc["segments"]
    ]
    screenshot(page, tmp_path / "translation.png")


def test_live_from_the_fake_microphone(watched: Watched, service: str) -> None:
    page = watched.page
    sockets: list[WebSocket] = []
    frames: list[str] = []

    def opened(socket: WebSocket) -> None:
        sockets.append(socket)
        socket.on("framesent", lambda payload: frames.append(str(payload)))

    page.on("websocket", opened)
    open_page(page, service)
    # Partial text may last a moment only: note each time a greyed line holds words.
    page.evaluate(
        """() => {
          window.partials = 0;
          const lines = document.getElementById('live-lines');
          new MutationObserver(() => {
            const partial = [...lines.querySelectorAll('.live-line.partial .live-text')];
            if (partial.some(t => t.textContent.trim())) window.partials += 1;
          }).observe(lines, {subtree: true, childList: true, characterData: true});
        }"""
    )
    page.click("#live-button")
    expect(page.locator("#live-button")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".live-line.final").first).to_be_visible(timeout=60_000)
    assert page.evaluate("window.partials") > 0, "words showed greyed before the line was final"
    expect(page.locator("#live-error")).to_be_hidden()

    page.click("#live-button")  # stop
    expect(page.locator("#live-button")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#live-panel")).to_have_attribute("data-state", "stopped")
    assert len(sockets) == 1
    if not sockets[0].is_closed():
        sockets[0].wait_for_event("close", timeout=10_000)
    assert sockets[0].url.endswith("/v1/realtime?intent=transcription")

    first = json.loads(frames[0])
    assert first["type"] == "session.update"
    assert first["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    appends = [json.loads(f) for f in frames[1:]]
    assert appends and all(a["type"] == "input_audio_buffer.append" for a in appends)
    sizes = [len(base64.b64decode(a["audio"])) for a in appends]
    assert sizes.count(4800) >= len(sizes) - 1, "100 ms of 24 kHz PCM16 per chunk"
    screenshot(page, DOCS / "web-live.png")


def test_the_page_asks_for_the_api_key_and_then_works(watched: Watched, keyed: str, tmp_path: Path) -> None:
    page = watched.page
    page.goto(f"{keyed}/")
    assert page.url == f"{keyed}/ui/"
    refused = requests.get(f"{keyed}/v1/models", timeout=30)
    assert refused.status_code == 401
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#key-message")).to_have_text(refused.json()["error"]["message"])
    page.get_by_label("API key", exact=True).fill(KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#opt-model option")).not_to_have_count(1)
    expect(page.locator("#stages-body tr")).to_have_count(3)
    assert page.evaluate("sessionStorage.getItem('speechgraph.apiKey')") == KEY

    set_options(page, punctuate=False, summarize=False)
    page.set_input_files("#file-input", str(JFK))
    job = finished_job(page)
    expect(job.locator("li.seg")).not_to_have_count(0)
    assert all(u.startswith(f"{keyed}/") or u.startswith(("blob:", "data:")) for u in watched.requests)

    # The live socket carries the key as a subprotocol: the session opens, with no error.
    with page.expect_websocket() as info:
        page.click("#live-button")
    socket = info.value
    assert socket.url == f"{keyed.replace('http://', 'ws://')}/v1/realtime?intent=transcription"
    first = json.loads(str(socket.wait_for_event("framereceived", timeout=30_000)))
    assert first["type"] == "session.created", first
    page.click("#live-button")
    expect(page.locator("#live-error")).to_be_hidden()
    screenshot(page, tmp_path / "keyed.png")
