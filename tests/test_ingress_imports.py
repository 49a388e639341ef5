"""The ingress holds no model, so its process loads no model library: importing the ingress
module (everything its replica imports to run) in a fresh interpreter loads neither torch nor
transformers, nor the decoder and VAD the preprocessing stage uses."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

MODEL_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "av", "silero_vad", "onnxruntime")


def loaded_in_fresh_interpreter(*modules: str) -> list[str]:
    """The model libraries loaded by importing ``modules`` in a new Python process."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
        f"& set({list(MODEL_LIBRARIES)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_ingress_module_loads_no_model_library():
    # What the ingress replica unpickles besides: its settings and the stages' answers.
    modules = (
        "deployments.ingress",
        "deployments.audio_plan",
        "pipeline.settings",
        "pipeline.schemas",
        "pipeline.errors",
    )
    assert loaded_in_fresh_interpreter(*modules) == []


def test_the_check_sees_a_model_library_when_one_is_imported():
    # The same check on a stage module that does load a model: it must see torch.
    assert "torch" in loaded_in_fresh_interpreter("deployments.asr")
