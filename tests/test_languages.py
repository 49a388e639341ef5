"""Whisper's language table, kept in pipeline.languages so the ingress needs no transformers: it
must stay transformers' own, and a request's ``language`` is read as Whisper reads it."""

from __future__ import annotations

import pytest
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from deployments.http_errors import http_status
from pipeline import languages
from pipeline.errors import InvalidParameter


def test_the_table_is_transformers_whisper_table_in_its_order():
    assert list(languages.LANGUAGES.items()) == list(LANGUAGES.items())
    assert languages.CODES_BY_NAME == TO_LANGUAGE_CODE


@pytest.mark.parametrize(
    "given,code",
    [("en", "en"), ("EN", "en"), (" English ", "en"), ("castilian", "es"), ("mandarin", "zh"), ("", None)],
)
def test_codes_and_english_names_are_read_as_whisper_codes(given, code):
    assert languages.normalize_language(given) == code


def test_an_unknown_language_names_the_parameter():
    with pytest.raises(InvalidParameter) as info:
        languages.normalize_language("klingon")
    assert info.value.param == "language" and http_status(info.value) == 400
    assert "klingon" in str(info.value)


def test_names_are_openais_lower_case_english_names():
    assert languages.language_name("de") == "german" and languages.language_name("xx") == "xx"
