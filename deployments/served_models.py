"""The model names the API serves (``GET /v1/models``) and what each one selects.

A request names a model (``model`` on OpenAI's routes and on ``/v1/transcribe``); the service never
loads one on demand, so a name is either one of these or a 404. The names are the aliases
(``whisper-1``), the configured Whisper, each Whisper LoRA adapter (``asr.adapters``: the name
selects that fine-tune for the request's windows), and the diarizing aliases when the diarization
stage is deployed. With an adapter merged at start (``asr.merge_adapter``) every name decodes with
the merged weights: its name is listed, and selects nothing more.
"""

from __future__ import annotations

from deployments.app_args import ApiSettings
from deployments.http_errors import ModelNotFound
from pipeline.settings import AsrSettings


class ServedModels:
    def __init__(self, asr: AsrSettings, api: ApiSettings, diarizing: bool):
        self.default = asr.model
        adapters = list(asr.adapters)
        diarize = api.diarize_model_aliases if diarizing else []
        self.names = list(dict.fromkeys([*api.model_aliases, asr.model, *adapters, *diarize]))
        """In the order ``GET /v1/models`` lists them."""
        self._adapters = {} if asr.merge_adapter else {name: name for name in adapters}

    def resolve(self, name: str | None) -> str:
        """``name``, or the configured Whisper when left out; 404 ``model_not_found`` when the
        service does not serve it."""
        if name is None or name.strip() == "":
            return self.default
        if name not in self.names:
            raise ModelNotFound(
                f"The model {name[:200]!r} does not exist here. Use one of "
                f"{', '.join(self.names)} (see GET /v1/models)."
            )
        return name

    def adapter(self, name: str | None) -> str | None:
        """The LoRA adapter that ``name`` selects (None: the model as loaded)."""
        return self._adapters.get(self.resolve(name))
