"""``python -m pipeline``: transcribe files in this process, with no Ray and no server."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import SpeechgraphError
from pipeline.formats import FORMATS, render
from pipeline.settings import PipelineSettings, load_pipeline_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tx = sub.add_parser("transcribe", help="transcribe audio files in this process")
    tx.add_argument("files", nargs="+", type=Path, metavar="FILE")
    tx.add_argument("--config", type=Path,
                    help="settings YAML, or a Serve config (its first application's args); "
                         "default: built-in settings")
    tx.add_argument("--language", help="language code (default: detect)")
    tx.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    tx.add_argument("--no-punctuate", dest="punctuate", action="store_false",
                    help="skip LLM punctuation")
    tx.add_argument("--no-summarize", dest="summarize", action="store_false",
                    help="skip the LLM summary")
    tx.add_argument("--format", choices=FORMATS, default="json")
    tx.add_argument("--output-dir", type=Path,
                    help="write FILE's result as OUTPUT_DIR/<name>.<format> instead of to stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = load_pipeline_settings(args.config) if args.config else PipelineSettings()

    from pipeline.runner import InProcessPipeline  # heavy imports after argument errors

    pipeline = InProcessPipeline(settings)
    failures = 0
    for path in args.files:
        with tqdm(total=None, desc=path.name, unit="window", file=sys.stderr, leave=False) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            try:
                result = pipeline.transcribe(path, language=args.language, task=args.task,
                                             punctuate=args.punctuate, summarize=args.summarize,
                                             progress=progress)
            except (SpeechgraphError, FileNotFoundError) as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                failures += 1
                continue
        text = render(result, args.format)
        if args.output_dir:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            out = args.output_dir / f"{path.stem}.{args.format}"
            out.write_text(text)
            print(f"{path} -> {out} ({result.duration_s:.1f} s audio, "
                  f"RTF {result.real_time_factor:.3f})", file=sys.stderr)
        else:
            sys.stdout.write(text)
    return 1 if failures else 0
