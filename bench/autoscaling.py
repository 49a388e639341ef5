"""Autoscaling timeline: configs/autoscaling-demo.yaml (ASR 1..3 replicas, up 2 s and down 10 s
after the load changes) under a load burst, then idle. ``serve.status()`` is sampled every second:
running replicas per deployment, and the requests in flight. Draws docs/autoscaling.png and writes
its section of BENCHMARKS.md (when ASR scaled up, how far, when it was back at its minimum).

    .venv/bin/python bench/autoscaling.py [--burst-s 60] [--clients 8]

Needs matplotlib (``pip install -e ".[bench]"``).
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

from bench.harness import ROOT, URL, machine, serve_and_measure, speech, wav_bytes, write_section
from deployments.app_args import load_app_args

CONFIG = ROOT / "configs" / "autoscaling-demo.yaml"
STAGES = ("ingress", "preprocess", "asr", "postprocess")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst-s", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "autoscaling.png")
    opts = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from ray import serve
    from ray.serve.schema import ReplicaState

    args = load_app_args(CONFIG)  # an invalid config fails here, before a cluster starts
    asr_scaling = args.deployments.asr.autoscaling_config
    if asr_scaling is None:
        raise SystemExit(f"{CONFIG}: deployments.asr has no autoscaling_config; this benchmark needs one")
    audio = wav_bytes(speech(40))  # 40 s of speech and pauses: a few windows per request
    samples: list[tuple[float, dict[str, int], int]] = []
    in_flight = [0]
    outcomes: list[int | str] = []
    lock = threading.Lock()
    marks: dict[str, float] = {}

    def client(stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                in_flight[0] += 1
            try:
                r = requests.post(
                    f"{URL}/v1/transcribe",
                    files={"file": ("speech.wav", audio)},
                    data={"language": "en", "punctuate": "false", "summarize": "false"},
                    timeout=300,
                )
                status: int | str = r.status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with lock:
                in_flight[0] -= 1
                outcomes.append(status)

    def sample(stop: threading.Event, t0: float) -> None:
        while not stop.is_set():
            deployments = serve.status().applications["speechgraph"].deployments
            running = {name: deployments[name].replica_states.get(ReplicaState.RUNNING, 0) for name in STAGES}
            with lock:
                samples.append((time.monotonic() - t0, running, in_flight[0]))
            stop.wait(1.0)

    def work() -> list[float]:
        t0 = time.monotonic()
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=sample, args=(stop_sampling, t0), daemon=True)
        sampler.start()
        time.sleep(10)
        marks["burst_start"] = time.monotonic() - t0
        stop_load = threading.Event()
        clients = [
            threading.Thread(target=client, args=(stop_load,), daemon=True) for _ in range(opts.clients)
        ]
        for c in clients:
            c.start()
        time.sleep(opts.burst_s)
        stop_load.set()
        for c in clients:
            c.join(300)
        marks["burst_end"] = time.monotonic() - t0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if samples and samples[-1][1]["asr"] == 1 and samples[-1][0] > marks["burst_end"] + 5:
                break
            time.sleep(1)
        time.sleep(10)
        stop_sampling.set()
        sampler.join(10)
        return []

    serve_and_measure(
        args,
        work,
        lambda: requests.post(
            f"{URL}/v1/transcribe",
            files={"file": ("speech.wav", audio)},
            data={"language": "en", "punctuate": "false", "summarize": "false"},
            timeout=300,
        ).raise_for_status(),
    )

    t = [s[0] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in STAGES:
        top.step(t, [s[1][name] for s in samples], where="post", label=name)
    top.set_ylabel("running replicas")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.legend(loc="upper right")
    bottom.step(t, [s[2] for s in samples], where="post", color="black")
    bottom.set_ylabel("requests in flight")
    bottom.set_xlabel("seconds")
    for ax in (top, bottom):
        ax.axvspan(marks["burst_start"], marks["burst_end"], color="orange", alpha=0.15)
    top.set_title(
        f"{opts.clients} clients for {opts.burst_s:.0f} s (shaded), then idle: configs/autoscaling-demo.yaml"
    )
    opts.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(opts.plot, dpi=100)

    asr = [(ts, s["asr"]) for ts, s, _ in samples]
    up = next((ts for ts, n in asr if ts >= marks["burst_start"] and n > 1), None)
    peak = max(n for _, n in asr)
    down = next((ts for ts, n in asr if ts >= marks["burst_end"] and n == 1), None)
    counts = {str(k): outcomes.count(k) for k in sorted(set(outcomes), key=str)}
    rows = [
        ("ASR replicas at rest / peak", f"1 / {peak} (max_replicas 3)"),
        (
            "first above 1, after the burst started",
            f"{up - marks['burst_start']:.0f} s" if up is not None else "never",
        ),
        (
            "back to 1, after the burst ended",
            f"{down - marks['burst_end']:.0f} s" if down is not None else "not within 180 s",
        ),
        ("peak requests in flight", f"{max(s[2] for s in samples)}"),
        ("requests by status", ", ".join(f"{k}: {v}" for k, v in counts.items())),
    ]
    table = "\n".join(["| | |", "| --- | --- |", *[f"| {a} | {b} |" for a, b in rows]])
    plot = opts.plot.relative_to(ROOT) if opts.plot.is_relative_to(ROOT) else opts.plot
    text = f"""## Autoscaling timeline ({datetime.date.today().isoformat()})

{machine()}
Command: `.venv/bin/python bench/autoscaling.py --burst-s {opts.burst_s:.0f} --clients {opts.clients}`.
Config `configs/autoscaling-demo.yaml` (tiny models; ASR 1..3 replicas at 2 windows in flight
each, `upscale_delay_s` {asr_scaling.upscale_delay_s:g}, `downscale_delay_s`
{asr_scaling.downscale_delay_s:g}, `look_back_period_s` {asr_scaling.look_back_period_s:g}). 10 s idle, then
{opts.clients} clients send 40 s of speech one request after another for {opts.burst_s:.0f} s, then idle.

{table}

![replicas and requests in flight over time]({plot})
"""
    print(text)
    write_section(opts.out, "autoscaling", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
