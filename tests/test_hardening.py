"""Bad input against the real graph: a corpus of broken files and parameters, property-based
fuzzing of the form fields and bytes (hypothesis), and schemathesis against /openapi.json.

Every answer must be a 4xx in the API's JSON error shape or a valid transcription: never a 5xx,
never a dead replica. A normal request must succeed after each bad one.
"""

from __future__ import annotations

import http.client
import io
import random
import wave

import numpy as np
import pytest
import requests
import schemathesis
from audio_files import FORMATS, empty_wav, encode, tone, video_only_mp4
from conftest import SHARED_AUDIO, TEST_MAX_DURATION_S
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

URL = "/v1/audio/transcriptions"
SHORT = encode(tone(1.0), 16000, "wav")
ENCODED = {fmt: encode(tone(2.0), 16000, fmt) for fmt in FORMATS}


def wav(audio: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = np.repeat((audio * 32767).astype("<i2")[:, None], channels, axis=1)
        w.writeframes(frames.tobytes())
    return buf.getvalue()


def corrupted(data: bytes, seed: int = 7) -> bytes:
    """Every byte after the first 10% overwritten at random in 1 of 20 places."""
    rng = random.Random(seed)
    out = bytearray(data)
    for i in range(len(out) // 10, len(out)):
        if rng.random() < 0.05:
            out[i] = rng.randrange(256)
    return bytes(out)


def multipart(
    fields: list[tuple[str, bytes]], file: tuple[str, bytes] | None, boundary: str = "speechgraphboundary"
) -> tuple[bytes, str]:
    """A multipart body built by hand, so field values may be any bytes (e.g. not UTF-8)."""
    parts = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    if file is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file[0]}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + file[1]
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# name -> (file name, file bytes or None for no file part, form fields)
FILE_CASES: dict[str, tuple[str, bytes | None, dict[str, str]]] = {
    **{
        f"truncated-{fmt}": (f"t.{fmt}", data[: max(64, len(data) // 8)], {}) for fmt, data in ENCODED.items()
    },
    **{f"corrupted-{fmt}": (f"c.{fmt}", corrupted(data), {}) for fmt, data in ENCODED.items()},
    "truncated-shared-flac": ("jfk.flac", (SHARED_AUDIO / "jfk.flac").read_bytes()[:1000], {}),
    "png": ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(300), {}),
    "text-file": ("notes.txt", b"plain text, not audio\n" * 50, {}),
    "zero-length": ("empty.wav", b"", {}),
    "zero-sample-wav": ("silent.wav", empty_wav(), {}),
    "8khz": ("low.wav", wav(tone(2.0, 8000), 8000), {}),
    "96khz": ("high.wav", wav(tone(2.0, 96000), 96000), {}),
    "6-channels": ("surround.wav", wav(tone(2.0), 16000, channels=6), {}),
    "video-only": ("video.mp4", video_only_mp4(), {}),
    "random-bytes": ("noise.bin", bytes(random.Random(1).randrange(256) for _ in range(5000)), {}),
    # The header announces 100 MB of samples; 10 bytes follow.
    "wav-header-lies": (
        "liar.wav",
        wav(tone(1.0), 16000)[:40] + (100 * 2**20).to_bytes(4, "little") + bytes(10),
        {},
    ),
    "too-long": (
        "long.flac",
        encode(np.zeros(16000 * (TEST_MAX_DURATION_S + 30), np.float32), 16000, "flac"),
        {},
    ),
}
PARAM_CASES = {
    "format-xml": {"response_format": "xml"},
    "temperature-text": {"temperature": "warm"},
    "temperature-inf": {"temperature": "1e309"},
    "temperature-nan": {"temperature": "NaN"},
    "temperature-high": {"temperature": "7"},
    "language-unknown": {"language": "zz"},
    "language-huge": {"language": "x" * 10000},
    "model-path": {"model": "../../../../etc/passwd"},
    "model-absolute": {"model": "/root/.cache/huggingface"},
    "model-hub-id": {"model": "openai/whisper-large-v3"},
    "model-empty": {"model": ""},
    "granularity-unknown": {"timestamp_granularities[]": "century"},
    "word-without-verbose": {"timestamp_granularities[]": "word", "response_format": "json"},
    "stream-not-bool": {"stream": "maybe"},
    "stream-srt": {"stream": "true", "response_format": "srt"},
    "punctuate-not-bool": {"punctuate": "perhaps"},
    "prompt-huge": {"prompt": "word " * 30000},
    "prompt-control-chars": {"prompt": "\x00\x01\x02<|endoftext|><|startoftranscript|>"},
}


def assert_json_error_or_transcription(r: requests.Response | http.client.HTTPResponse, body: bytes) -> None:
    status = r.status if isinstance(r, http.client.HTTPResponse) else r.status_code
    assert status < 500, body[:300]
    if status >= 400:
        import json

        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "code", "param"} and error["message"] and error["code"]
    else:
        assert status == 200


def assert_still_serving(base: str) -> None:
    r = requests.post(
        f"{base}{URL}", files={"file": ("ok.wav", SHORT)}, data={"model": "whisper-1"}, timeout=120
    )
    assert r.status_code == 200 and "text" in r.json(), r.text


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_file_corpus(graph, case):
    name, data, fields = FILE_CASES[case]
    r = requests.post(
        f"{graph}{URL}", files={"file": (name, data)}, data={"model": "whisper-1", **fields}, timeout=120
    )
    assert_json_error_or_transcription(r, r.content)
    assert_still_serving(graph)


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_bad_parameter_corpus(graph, case):
    r = requests.post(
        f"{graph}{URL}",
        files={"file": ("ok.wav", SHORT)},
        data={"model": "whisper-1", **PARAM_CASES[case]},
        timeout=120,
    )
    assert_json_error_or_transcription(r, r.content)
    if case.startswith(
        ("format", "temperature", "language", "granularity", "word", "stream", "punctuate", "prompt-huge")
    ):
        assert r.status_code == 400 and r.json()["error"]["param"], r.text
    if case.startswith("model") and case != "model-empty":
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert_still_serving(graph)


def raw_post(
    base: str, body: bytes, content_type: str | None, headers: dict | None = None, path: str = URL
) -> tuple[http.client.HTTPResponse, bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("POST", path)
    for key, value in {
        **({"Content-Type": content_type} if content_type else {}),
        "Content-Length": str(len(body)),
        **(headers or {}),
    }.items():
        conn.putheader(key, value)
    conn.endheaders(message_body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


RAW_CASES = {
    "non-utf8-prompt": lambda: multipart(
        [("model", b"whisper-1"), ("prompt", b"\xff\xfe\xfa caf\xe9")], ("ok.wav", SHORT)
    ),
    "non-utf8-language": lambda: multipart([("language", b"\xc3\x28")], ("ok.wav", SHORT)),
    "no-file-part": lambda: multipart([("model", b"whisper-1")], None),
    "file-as-plain-field": lambda: multipart([("file", b"not an upload")], None),
    "broken-boundary": lambda: (
        multipart([("model", b"whisper-1")], ("ok.wav", SHORT))[0],
        "multipart/form-data; boundary=someotherboundary",
    ),
    "json-body": lambda: (b'{"file": "abc", "model": "whisper-1"}', "application/json"),
    "no-content-type": lambda: (SHORT, None),
    "unterminated-multipart": lambda: (
        multipart([], ("ok.wav", SHORT))[0][:-30],
        "multipart/form-data; boundary=speechgraphboundary",
    ),
}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_malformed_request_corpus(graph, case):
    body, content_type = RAW_CASES[case]()
    response, data = raw_post(graph, body, content_type)
    assert_json_error_or_transcription(response, data)
    assert_still_serving(graph)


def test_huge_declared_content_length_is_refused_at_once(graph):
    host, port = graph.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", URL)
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(10**15))
    conn.endheaders(message_body=b"--x\r\n")
    response = conn.getresponse()
    assert response.status == 413
    assert_json_error_or_transcription(response, response.read())
    conn.close()
    assert_still_serving(graph)


def test_corpus_is_large_enough():
    assert len(FILE_CASES) + len(PARAM_CASES) + len(RAW_CASES) + 1 >= 30


# --- property-based fuzzing -------------------------------------------------------------------

FIELDS = [
    "model",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "stream",
    "punctuate",
    "summarize",
]
_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "whisper-1",
            "tiny-random",
            "en",
            "de",
            "json",
            "text",
            "srt",
            "vtt",
            "verbose_json",
            "word",
            "segment",
            "true",
            "false",
            "0",
            "0.5",
            "1",
            "-1",
            "nan",
            "inf",
        ]
    ),
)
_files = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from(sorted(ENCODED)).flatmap(
        lambda fmt: st.integers(0, len(ENCODED[fmt])).map(lambda n: ENCODED[fmt][:n])
    ),
    st.sampled_from(sorted(ENCODED)).map(lambda fmt: corrupted(ENCODED[fmt], seed=len(fmt))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    fields=st.dictionaries(st.sampled_from(FIELDS), _values, max_size=5),
    data=_files,
    filename=st.text(max_size=20),
)
def test_fuzzed_forms_never_fail_the_server(graph, fields, data, filename):
    body, content_type = multipart(
        [(k, v.encode("utf-8", "surrogatepass")) for k, v in fields.items()],
        (filename.replace('"', "").replace("\r", "").replace("\n", "") or "f", data),
    )
    response, answer = raw_post(graph, body, content_type)
    assert_json_error_or_transcription(response, answer)


def test_service_is_healthy_after_fuzzing(graph):
    assert requests.get(f"{graph}/healthz", timeout=30).status_code == 200
    assert_still_serving(graph)


# --- schemathesis against the served OpenAPI schema -------------------------------------------
# The schema is loaded from the ingress's FastAPI app at collection time (schemathesis' lazy
# fixture loader does not work with pytest 9.2), and the test first checks that the service
# serves exactly that schema; the generated requests then go to the real service.


def _app_schema() -> dict:
    from deployments.ingress import api

    return api.openapi()


schema = schemathesis.openapi.from_dict(_app_schema())


def test_served_schema_is_the_tested_one(graph):
    assert requests.get(f"{graph}/openapi.json", timeout=30).json() == _app_schema()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_openapi_schema_holds(case, graph):
    case.call_and_validate(
        base_url=graph,
        timeout=120,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ],
    )
