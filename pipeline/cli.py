"""``python -m pipeline``: transcribe files in this process (no Ray, no server), or send them to a
running service (``client``), with a progress bar per file, or stream one live (``client --live``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tqdm import tqdm

from pipeline.errors import SpeechgraphError
from pipeline.formats import FORMATS, render
from pipeline.settings import PipelineSettings, load_pipeline_settings
from pipeline.translation import target_language


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tx = sub.add_parser("transcribe", help="transcribe audio files in this process")
    tx.add_argument("files", nargs="+", type=Path, metavar="FILE")
    tx.add_argument(
        "--config",
        type=Path,
        help="settings YAML, or a Serve config (its first application's args); default: built-in settings",
    )
    tx.add_argument("--language", help="language code (default: detect)")
    tx.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    tx.add_argument("--no-punctuate", dest="punctuate", action="store_false", help="skip LLM punctuation")
    tx.add_argument("--no-summarize", dest="summarize", action="store_false", help="skip the LLM summary")
    tx.add_argument(
        "--translate-to",
        type=_language,
        metavar="LANG",
        help="translate the segments into LANG with the LLM (code or English name); "
        "--format srt/vtt then writes the translated subtitles",
    )
    tx.add_argument("--format", choices=FORMATS, default="json")
    tx.add_argument(
        "--output-dir",
        type=Path,
        help="write FILE's result as OUTPUT_DIR/<name>.<format> instead of to stdout",
    )
    cl = sub.add_parser("client", help="send audio files to a running service")
    cl.add_argument("files", nargs="+", type=Path, metavar="FILE")
    cl.add_argument(
        "--live",
        action="store_true",
        help="stream one FILE as if spoken, over /v1/realtime, printing partials and each turn's transcript",
    )
    cl.add_argument(
        "--speed", type=_speed, default=1.0, help="with --live: times real time (default: %(default)s)"
    )
    cl.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default: %(default)s)")
    cl.add_argument(
        "--api-key",
        default=os.environ.get("SPEECHGRAPH_API_KEY"),
        help="API key, when the service needs one (default: $SPEECHGRAPH_API_KEY)",
    )
    cl.add_argument("--language", help="language code (default: detect)")
    cl.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    cl.add_argument("--no-punctuate", dest="punctuate", action="store_false")
    cl.add_argument("--no-summarize", dest="summarize", action="store_false")
    cl.add_argument(
        "--translate-to",
        type=_language,
        metavar="LANG",
        help="translate into LANG with the LLM (srt/vtt: translated)",
    )
    cl.add_argument(
        "--formats",
        default="json,srt,vtt",
        help=f"comma-separated, of {', '.join(FORMATS)} (default: %(default)s)",
    )
    cl.add_argument("--output-dir", type=Path, help="where to write <name>.<format> (default: next to FILE)")
    cl.add_argument("--jobs", type=int, default=4, help="files sent at once (default: %(default)s)")
    return parser


def _language(text: str) -> str | None:
    try:
        return target_language(text)
    except SpeechgraphError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed(text: str) -> float:
    speed = float(text)
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return speed


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "client" and args.live:
        if len(args.files) != 1:
            parser.error("client --live streams exactly one FILE")
        from pipeline.live_client import stream_file

        return stream_file(
            args.files[0], args.url, language=args.language, api_key=args.api_key, speed=args.speed
        )
    if args.command == "client":
        return _client(args)
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
                result = pipeline.transcribe(
                    path,
                    language=args.language,
                    task=args.task,
                    punctuate=args.punctuate,
                    summarize=args.summarize,
                    translate_to=args.translate_to,
                    progress=progress,
                )
            except (SpeechgraphError, FileNotFoundError) as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                failures += 1
                continue
        text = render(result, args.format)
        if args.output_dir:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            out = args.output_dir / f"{path.stem}.{args.format}"
            out.write_text(text)
            print(
                f"{path} -> {out} ({result.duration_s:.1f} s audio, RTF {result.real_time_factor:.3f})",
                file=sys.stderr,
            )
        else:
            sys.stdout.write(text)
    return 1 if failures else 0


def _client(args: argparse.Namespace) -> int:
    from pipeline.client import ServiceError, transcribe_remote

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        print(f"error: unknown format(s) {', '.join(unknown)}; use {', '.join(FORMATS)}", file=sys.stderr)
        return 2

    def one(position: int, path: Path) -> bool:
        with tqdm(
            total=None, desc=path.name, unit="window", file=sys.stderr, position=position, leave=True
        ) as bar:

            def progress(done: int, total: int, seconds: float) -> None:
                bar.total = total
                bar.set_postfix_str(f"{seconds:.0f} s of speech")
                bar.update(done - bar.n)

            try:
                result = transcribe_remote(
                    args.url,
                    path,
                    language=args.language,
                    task=args.task,
                    punctuate=args.punctuate,
                    summarize=args.summarize,
                    translate_to=args.translate_to,
                    api_key=args.api_key,
                    progress=progress,
                )
            except (ServiceError, OSError, requests.RequestException) as exc:
                bar.write(f"error: {path}: {exc}", file=sys.stderr)
                return False
        out_dir = args.output_dir or path.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            (out_dir / f"{path.stem}.{fmt}").write_text(render(result, fmt))
        return True

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        ok = list(pool.map(one, range(len(args.files)), args.files))
    return 0 if all(ok) else 1
