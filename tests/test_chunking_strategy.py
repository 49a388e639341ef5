"""OpenAI's ``chunking_strategy`` on the transcription route sets the request's VAD.

No Ray cluster: a small FastAPI app with the ingress's form model and error handlers, driven by
the official ``openai`` SDK itself (so the form is encoded exactly as the SDK sends it:
``chunking_strategy[type]=server_vad``, ``chunking_strategy[threshold]=0.3``, ...) and by plain
multipart requests (a JSON string, ``auto``, bad values).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import openai
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from deployments.api_requests import MULTIPART, TranscriptionForm, TranslationForm
from deployments.chunking_strategy import ServerVad
from deployments.http_app import _speechgraph_error, _validation_error
from pipeline.errors import InvalidParameter, SpeechgraphError
from pipeline.settings import VadOptions

#: The service's configured VAD in these tests: unlike VadOptions' defaults and OpenAI's, so a
#: key left out is seen to take it.
CONFIGURED = VadOptions(threshold=0.35, min_silence_s=0.8, speech_pad_s=0.1)

FILE = ("a.wav", b"RIFF....WAVE", "audio/wav")


def _answer(vad: VadOptions | None) -> dict[str, Any]:
    # OpenAI's json transcription shape, so the SDK parses it: the VAD is the text.
    return {"text": json.dumps(vad.model_dump() if vad else None)}


def _app() -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(SpeechgraphError, _speechgraph_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(form: Annotated[TranscriptionForm, MULTIPART]) -> dict[str, Any]:
        return _answer(form.vad_options(CONFIGURED))

    @app.post("/v1/audio/translations")
    async def translations(form: Annotated[TranslationForm, MULTIPART]) -> dict[str, Any]:
        return _answer(form.vad_options(CONFIGURED))

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app())


@pytest.fixture(scope="module")
def sdk(client: TestClient) -> openai.OpenAI:
    """The official SDK, sending its requests to the app through the test client."""
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", max_retries=0, http_client=client)


def vad_of(text: str) -> dict[str, float] | None:
    return json.loads(text)


def post(client: TestClient, fields: dict[str, str], route: str = "transcriptions") -> Any:
    return client.post(f"/v1/audio/{route}", data={"model": "whisper-1", **fields}, files={"file": FILE})


# --- what OpenAI's SDKs send -------------------------------------------------------------------


def test_the_python_sdk_sends_an_object_as_bracketed_fields(sdk: openai.OpenAI):
    # The SDK's own encoding, checked at the source: one form field per key.
    fields = sdk._serialize_multipartform(
        {"model": "whisper-1", "chunking_strategy": {"type": "server_vad", "threshold": 0.3}}
    )
    assert fields == {
        "model": "whisper-1",
        "chunking_strategy[type]": "server_vad",
        "chunking_strategy[threshold]": "0.3",
    }


def test_sdk_server_vad_sets_every_key(sdk: openai.OpenAI):
    result = sdk.audio.transcriptions.create(
        model="whisper-1",
        file=FILE,
        chunking_strategy={
            "type": "server_vad",
            "threshold": 0.3,
            "prefix_padding_ms": 250,
            "silence_duration_ms": 700,
        },
    )
    assert vad_of(result.text) == {"threshold": 0.3, "min_silence_s": 0.7, "speech_pad_s": 0.25}


def test_sdk_server_vad_keys_left_out_take_the_configured_values(sdk: openai.OpenAI):
    result = sdk.audio.transcriptions.create(
        model="whisper-1", file=FILE, chunking_strategy={"type": "server_vad", "silence_duration_ms": 300}
    )
    assert vad_of(result.text) == {"threshold": 0.35, "min_silence_s": 0.3, "speech_pad_s": 0.1}
    only_type = sdk.audio.transcriptions.create(
        model="whisper-1", file=FILE, chunking_strategy={"type": "server_vad"}
    )
    assert vad_of(only_type.text) == CONFIGURED.model_dump()


def test_sdk_auto_and_no_chunking_strategy_use_the_service_vad(sdk: openai.OpenAI):
    auto = sdk.audio.transcriptions.create(model="whisper-1", file=FILE, chunking_strategy="auto")
    assert vad_of(auto.text) is None
    absent = sdk.audio.transcriptions.create(model="whisper-1", file=FILE)
    assert vad_of(absent.text) is None


def test_sdk_bad_value_is_a_bad_request_naming_the_field(sdk: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.audio.transcriptions.create(
            model="whisper-1", file=FILE, chunking_strategy={"type": "server_vad", "threshold": 1.5}
        )
    assert raised.value.status_code == 400
    assert raised.value.param == "chunking_strategy"
    assert raised.value.code == "invalid_parameter"


# --- other ways to send it ---------------------------------------------------------------------


def test_json_string(client: TestClient):
    body = json.dumps({"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 0})
    response = post(client, {"chunking_strategy": body})
    assert response.status_code == 200, response.text
    assert vad_of(response.json()["text"]) == {"threshold": 0.6, "min_silence_s": 0.8, "speech_pad_s": 0.0}


@pytest.mark.parametrize("value", ["auto", '"auto"', "null"])
def test_auto_as_plain_or_json_string(client: TestClient, value: str):
    response = post(client, {"chunking_strategy": value})
    assert response.status_code == 200, response.text
    assert vad_of(response.json()["text"]) is None


def test_bracketed_fields_sent_by_hand(client: TestClient):
    response = post(
        client,
        {"chunking_strategy[type]": "server_vad", "chunking_strategy[silence_duration_ms]": "1500"},
    )
    assert response.status_code == 200, response.text
    assert vad_of(response.json()["text"]) == {"threshold": 0.35, "min_silence_s": 1.5, "speech_pad_s": 0.1}


def test_translations_take_no_chunking_strategy(client: TestClient):
    # OpenAI's translations have no chunking_strategy: as any unknown field, it is ignored.
    response = post(client, {"chunking_strategy": '{"type": "server_vad", "threshold": 0.9}'}, "translations")
    assert response.status_code == 200, response.text
    assert vad_of(response.json()["text"]) is None


# --- refused, with what is wrong and what to send ----------------------------------------------

BAD = {
    "threshold above 1": ({"chunking_strategy": '{"type": "server_vad", "threshold": 1.5}'}, "threshold=1.5"),
    "threshold 0": (
        {"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "0"},
        "threshold='0'",
    ),
    "negative silence": (
        {"chunking_strategy[type]": "server_vad", "chunking_strategy[silence_duration_ms]": "-100"},
        "silence_duration_ms='-100'",
    ),
    "padding too long": (
        {"chunking_strategy": '{"type": "server_vad", "prefix_padding_ms": 60000}'},
        "prefix_padding_ms=60000",
    ),
    "not a number": (
        {"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "high"},
        "threshold='high'",
    ),
    "boolean": ({"chunking_strategy": '{"type": "server_vad", "threshold": true}'}, "boolean"),
    "unknown type": ({"chunking_strategy": '{"type": "semantic_vad"}'}, "type 'semantic_vad'"),
    "no type": ({"chunking_strategy[threshold]": "0.4"}, "no type"),
    "unknown key": (
        {"chunking_strategy[type]": "server_vad", "chunking_strategy[min_speech_ms]": "250"},
        "unknown key 'min_speech_ms'",
    ),
    "not auto nor JSON": ({"chunking_strategy": "server_vad"}, "neither 'auto' nor a JSON object"),
    "JSON not an object": ({"chunking_strategy": "[0.5]"}, "expected 'auto' or an object"),
    "sent twice": (
        {"chunking_strategy": "auto", "chunking_strategy[type]": "server_vad"},
        "both as chunking_strategy and as chunking_strategy[...]",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_chunking_strategy_is_400_naming_it(client: TestClient, case: str):
    fields, says = BAD[case]
    response = post(client, fields)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "chunking_strategy",
        "invalid_parameter",
        "invalid_request_error",
    )
    assert says in error["message"]
    # ... and what to send instead.
    assert "chunking_strategy=auto" in error["message"]
    assert "threshold 0 < x < 1" in error["message"]
    assert "silence_duration_ms 0 <= x <= 10000" in error["message"]


# --- the model itself --------------------------------------------------------------------------


def test_limits_are_vad_options_own_in_milliseconds():
    schema = ServerVad.model_json_schema()["properties"]
    assert schema["threshold"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert schema["prefix_padding_ms"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 5000}
    assert schema["silence_duration_ms"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 10000}


def test_built_in_python():
    form = TranscriptionForm(chunking_strategy={"type": "server_vad", "prefix_padding_ms": 500})
    assert form.vad_options(CONFIGURED) == VadOptions(threshold=0.35, min_silence_s=0.8, speech_pad_s=0.5)
    # Without the service's values, VadOptions' defaults stand in.
    assert form.vad_options() == VadOptions(speech_pad_s=0.5)
    assert TranscriptionForm().vad_options(CONFIGURED) is None
    with pytest.raises(InvalidParameter) as raised:
        TranscriptionForm(chunking_strategy={"type": "server_vad", "threshold": -1})
    assert raised.value.param == "chunking_strategy"


def test_the_openapi_schema_describes_the_field():
    schema = _app().openapi()
    body = schema["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]
    ref = body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    field = schema["components"]["schemas"][ref]["properties"]["chunking_strategy"]
    assert "server_vad" in field["description"]
    choices = field["anyOf"]
    assert {"type": "string", "const": "auto"} in choices or {"const": "auto", "type": "string"} in choices
    assert any(choice.get("$ref", "").endswith("/ServerVad") for choice in choices)


def test_a_huge_or_deeply_nested_value_is_a_short_400(client: TestClient):
    response = post(client, {"chunking_strategy": "[" * 100_000})
    assert response.status_code == 400, response.text
    assert len(response.json()["error"]["message"]) < 1000
    response = post(
        client, {"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "9" * 50_000}
    )
    assert response.status_code == 400, response.text
    assert len(response.json()["error"]["message"]) < 1000
