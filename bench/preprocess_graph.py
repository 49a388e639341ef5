"""Part 4 of ``bench/preprocess.py``: the whole graph, over HTTP, as a client sees it.

One tree's config (``bench.harness.app_args``: 2 ASR replicas, batches of 8, and 2 preprocess
replicas instead of the config's autoscaling) is served on a local Ray cluster on 127.0.0.1:8000,
and each file is posted to ``/v1/transcribe`` with ``stream=true`` (language en, no punctuation,
no summary). Per request, seconds from its start to: the last byte of the body handed to the socket
("upload"), the first ``progress`` event (upload, probe and the first planned part), the first
``segment`` event, and the ``document``. The long file's request is closed after its first segment.

Each tree runs in its own process, with ``PYTHONPATH`` at that tree for the driver and every Ray
worker (so ``--before-ref``'s checkout runs its own code), as

    .venv/bin/python bench/preprocess_graph.py --measure TREE --config CONFIG --files JSON --json OUT
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve()
FORM = {"language": "en", "punctuate": "false", "summarize": "false", "stream": "true"}


class TimedBody(io.BytesIO):
    """A request body that notes when it was read to its end (the last block is then sent)."""

    done: float | None = None

    def read(self, size: int | None = -1, /) -> bytes:
        block = super().read(size)
        if not block and self.done is None:
            self.done = time.perf_counter()
        return block


def timed_request(url: str, path: Path, until: str) -> dict[str, float]:
    """Seconds from the request's start to the upload's end and to each kind of event's first,
    reading the stream until the first ``until`` event."""
    import requests

    from pipeline.client import sse_events

    form = requests.Request("POST", url, files={"file": (path.name, path.read_bytes())}, data=FORM)
    prepared = form.prepare()
    assert isinstance(prepared.body, bytes)
    body = TimedBody(prepared.body)
    headers = {"Content-Type": prepared.headers["Content-Type"]}
    times: dict[str, float] = {}
    started = time.perf_counter()
    with requests.post(url, data=body, headers=headers, stream=True, timeout=7200) as r:
        r.raise_for_status()
        for name, data in sse_events(r):
            if name == "error":
                raise RuntimeError(f"{path.name}: {data}")
            times.setdefault(name, time.perf_counter() - started)
            if name == until:
                break
    assert body.done is not None and until in times, f"{path.name}: no {until} event"
    times["upload"] = body.done - started
    return times


def measure(config: Path, files: dict[str, Path], repeats: int) -> dict[str, list[dict[str, float]]]:
    """In this process: serve ``config`` (from the tree on ``PYTHONPATH``) and time the files."""
    from bench.harness import URL, app_args, post, serve_and_measure, speech, wav_bytes

    args = app_args(config, asr_replicas=2, max_batch_size=8)
    preprocess = args["deployments"]["preprocess"]
    preprocess.pop("autoscaling_config", None)
    preprocess["num_replicas"] = 2
    short = wav_bytes(speech(30.0))
    url = f"{URL}/v1/transcribe"
    results: dict[str, list[dict[str, float]]] = {"silence-1h": [], "wav-1h": [], "wav-2h": []}

    def work() -> list[float]:
        for name, until, runs in (
            ("silence-1h", "document", repeats),
            ("wav-1h", "document", 1),
            ("wav-2h", "segment", repeats),
        ):
            for _ in range(runs):
                results[name].append(timed_request(url, files[name], until))
                print(f"    {name}: {results[name][-1]}", file=sys.stderr)
                time.sleep(5)  # a stream closed early: its cancelled windows leave the queues
        return []

    serve_and_measure(args, work, warmup=lambda: [post(short) for _ in range(2)])
    return results


def measure_tree(tree: Path, config: Path, files: dict[str, Path], repeats: int) -> dict:
    """:func:`measure` in a process of its own, running ``tree``'s code."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "graph.json"
        command = [
            sys.executable,
            str(HERE),
            "--measure",
            str(tree),
            "--config",
            str(config),
            "--files",
            json.dumps({name: str(path) for name, path in files.items()}),
            "--repeats",
            str(repeats),
            "--json",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run(command, cwd=tree, env=env, check=True, timeout=4 * 3600)
        return json.loads(out.read_text())


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached checkout of ``ref`` in a temporary folder, removed afterwards."""
    root = HERE.parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=root, check=True)
        # The tree finds its test audio beside itself, in ../shared, as this checkout does.
        (Path(tmp) / "shared").symlink_to(root.parent / "shared")
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure", type=Path, required=True, help="the tree on PYTHONPATH")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--files", required=True, help="JSON: name -> path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True, help="where the results go")
    opts = parser.parse_args()
    sys.path.insert(0, str(opts.measure))
    files = {name: Path(path) for name, path in json.loads(opts.files).items()}
    opts.json.write_text(json.dumps(measure(opts.config, files, opts.repeats)))


if __name__ == "__main__":
    main()
