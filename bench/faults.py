"""Faults under steady load: for each of ASR, preprocessing and the LLM, one replica's actor is
killed while clients keep sending, and every request is counted: sent, answered, refused (503
with Retry-After), failed (anything else, timeouts included), and for the LLM the answers that
came back degraded (raw transcript, post-processing marked unavailable). Writes its section of
BENCHMARKS.md. The CI tests (tests/test_faults.py) assert the same with a shorter load.

    .venv/bin/python bench/faults.py [--seconds 40] [--clients 4]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import CLIP, ROOT, URL, app_args, machine, serve_and_measure, write_section


def fault_args() -> dict:
    """The tiny graph with two preprocessing and two ASR replicas, one LLM replica."""
    args = app_args(ROOT / "configs" / "tiny.yaml", asr_replicas=2, max_batch_size=8)
    pre = args["deployments"]["preprocess"]
    pre.pop("autoscaling_config", None)
    pre["num_replicas"] = 2
    return args


def kill_one(stage: str) -> None:
    import ray

    entry = next(a for a in ray.util.list_named_actors(all_namespaces=True) if f"#{stage}#" in a["name"])
    ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]), no_restart=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=40, help="load per fault; the kill is at a quarter")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    clip = CLIP.read_bytes()
    rows: list[str] = []

    def send() -> tuple[int | str, dict | None]:
        try:
            r = requests.post(
                f"{URL}/v1/transcribe",
                files={"file": ("jfk.wav", clip)},
                data={"language": "en", "summarize": "false"},
                timeout=120,
            )
        except requests.RequestException as exc:
            return type(exc).__name__, None
        retry_after = r.headers.get("retry-after")
        if r.status_code == 503 and retry_after:
            time.sleep(float(retry_after))  # a client honours Retry-After
        return r.status_code, r.json() if r.headers.get("content-type", "").startswith(
            "application/json"
        ) else None

    def work() -> list[float]:
        for stage in ("asr", "preprocess", "postprocess"):
            results: list[tuple[int | str, dict | None]] = []
            stop = threading.Event()

            def client(
                stop: threading.Event = stop, results: list[tuple[int | str, dict | None]] = results
            ) -> None:
                while not stop.is_set():
                    results.append(send())

            threads = [threading.Thread(target=client, daemon=True) for _ in range(opts.clients)]
            for thread in threads:
                thread.start()
            time.sleep(opts.seconds / 4)
            kill_one(stage)
            time.sleep(opts.seconds * 3 / 4)
            stop.set()
            for thread in threads:
                thread.join(130)
            statuses = [s for s, _ in results]
            degraded = sum(
                1
                for s, body in results
                if s == 200 and body is not None and body["punctuation"].get("fallback") == "llm_unavailable"
            )
            ok = statuses.count(200)
            refused = statuses.count(503)
            failed = len(statuses) - ok - refused
            replicas = "1 of 1" if stage == "postprocess" else "1 of 2"
            rows.append(
                f"| {stage} ({replicas} killed) | {len(statuses)} | {ok} ({100 * ok / len(statuses):.1f}%) | "
                f"{degraded} | {refused} | {failed} |"
            )
            print(rows[-1])
            deadline = time.monotonic() + 120
            while requests.get(f"{URL}/readyz", timeout=30).status_code != 200:  # whole again
                assert time.monotonic() < deadline
                time.sleep(1)
            time.sleep(5)
        return []

    serve_and_measure(fault_args(), work, send)
    command = f".venv/bin/python bench/faults.py --seconds {opts.seconds:.0f} --clients {opts.clients}"
    text = f"""## Faults under load ({datetime.date.today().isoformat()})

{machine()}
Command: `{command}`. Tiny models;
two preprocessing and two ASR replicas, one LLM replica. {opts.clients} clients send the 11 s JFK
clip (punctuated) one request after another for {opts.seconds:.0f} s per fault, honouring
`Retry-After`; a quarter of the way in, one replica's actor of the stage is killed (`ray.kill`).

| Killed | Sent | Answered 200 | of which degraded | Refused 503 | Failed |
| --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Degraded: the transcript came back with punctuation marked `llm_unavailable` and why.
"""
    print(text)
    write_section(opts.out, "faults", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
