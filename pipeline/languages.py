"""Whisper's languages: codes, English names, and a request's ``language`` read as one of them.

The table is Whisper's own (the 100 languages of its tokenizer, and the other English names its
tokenizer accepts), kept here rather than imported from transformers so that the ingress, which
has no model, never loads transformers or torch to check a form field. ``tests/test_languages.py``
holds it equal to transformers' table.
"""

from __future__ import annotations

from pipeline.errors import InvalidParameter

#: Whisper's language codes and their English names, in its tokenizer's order.
LANGUAGES: dict[str, str] = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}

#: Other English names Whisper accepts for a language.
NAME_ALIASES: dict[str, str] = {
    "burmese": "my",
    "valencian": "ca",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "pushto": "ps",
    "panjabi": "pa",
    "moldavian": "ro",
    "moldovan": "ro",
    "sinhalese": "si",
    "castilian": "es",
    "mandarin": "zh",
}

#: Every English name (lower case) to its code.
CODES_BY_NAME: dict[str, str] = {**{name: code for code, name in LANGUAGES.items()}, **NAME_ALIASES}


def normalize_language(language: str | None) -> str | None:
    """Map a language code or English name (``en``, ``English``) to Whisper's code.

    Raises :class:`InvalidParameter` naming the parameter for anything Whisper does not know.
    """
    if language is None or language.strip() == "":
        return None
    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    if key in CODES_BY_NAME:
        return CODES_BY_NAME[key]
    raise InvalidParameter(
        f"Unknown language {language!r}. Give an ISO-639-1 code Whisper knows (e.g. 'en', 'de') "
        "or leave it out to detect the language.",
        param="language",
    )


def language_name(code: str) -> str:
    """The language's English name in lower case (``english``), as OpenAI writes it."""
    return LANGUAGES.get(code, code)
