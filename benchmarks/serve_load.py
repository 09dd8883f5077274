"""Load test of ``plastispoof serve`` on loopback: bounded, reproducible, one machine.

Starts ``plastispoof serve`` on a free loopback port and, against it:

1. ``--requests`` uploads (POST /v1/score) of clips of ``--min-s``..``--max-s`` seconds at each number of concurrent
   clients in ``--clients``: requests/s, audio seconds scored per wall second, p50/p95/p99 latency, errors (503s
   from the bounded queue counted apart: they are the service refusing by design, with Retry-After);
2. ``--streams`` concurrent WebSocket streams (WS /v1/stream), each sending a clip as 16-bit PCM paced in real time:
   the lag from the moment a window's last sample was sent to the moment its window message arrived;
3. the server's resident memory (VmRSS) before the first phase and after the last;

and, before the server starts (so nothing competes for the cores), ``score`` on a folder of the same clips
(the library call behind ``plastispoof score``, model already loaded) for the throughput ratio serve / score.

    python benchmarks/serve_load.py --run runs/resnet18-baseline                     # the issue's figures
    python benchmarks/serve_load.py --run runs/grnn --requests 40 --clients 4,8 --streams 2   # a quick check

Prints a Markdown table (and writes JSON with ``--out``). Goals (issue 25, ResNet18 on 2 cores): 0 errors other
than deliberate 503s; p95 < 1 s at 16 clients; throughput >= 80 % of score; memory growth < 50 MB; every window
message within 0.5 s of its audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

RATE = 16000


def make_clips(folder: Path, count: int, min_s: float, max_s: float, seed: int) -> list[Path]:
    """``count`` FLAC clips of speech-like audio (a voiced tone with a moving pitch, plus noise), 2-8 s long."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        seconds = rng.uniform(min_s, max_s)
        t = np.arange(int(seconds * RATE)) / RATE
        pitch = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
        audio = (0.15 * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        path = folder / f"clip{index:03d}.flac"
        sf.write(path, audio, RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def score_throughput(run: str, folder: Path) -> dict:
    """Audio seconds per wall second of ``score`` (the verb's library call, the model loaded) on ``folder``."""
    from plastispoof.detectors import load_detector

    detector = load_detector(run)  # as score and serve load it, with the run's calibration
    started = time.perf_counter()
    audio = sum(result.duration_s or 0.0 for result in detector.iter_results([folder]))
    wall = time.perf_counter() - started
    return {"audio_s": audio, "wall_s": wall, "audio_s_per_s": audio / wall}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


async def http_load(url: str, clips: list[tuple[str, bytes, float]], requests: int, clients: int) -> dict:
    """``requests`` uploads by ``clients`` concurrent clients; latencies of the 200s, counts of every status."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    audio = 0.0
    next_request = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal audio
        for index in next_request:
            name, data, seconds = clips[index % len(clips)]
            started = time.perf_counter()
            try:
                answer = await http.post("/v1/score", files={"file": (name, data, "audio/flac")})
                status = str(answer.status_code)
            except httpx.HTTPError as err:
                status = type(err).__name__
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                latencies.append(time.perf_counter() - started)
                audio += seconds

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    errors = sum(count for status, count in statuses.items() if status not in ("200", "503"))
    return {"clients": clients, "requests": requests, "wall_s": wall, "requests_per_s": requests / wall,
            "audio_s_per_s": audio / wall, **percentiles(latencies), "statuses": statuses, "errors": errors,
            "busy_503": statuses.get("503", 0)}


async def one_stream(ws_url: str, audio: np.ndarray, window: int, hop: int, chunk_s: float) -> list[float]:
    """Send ``audio`` as PCM paced in real time; the lag of every window message after its last sample was sent."""
    from websockets.asyncio.client import connect

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    chunk = int(chunk_s * RATE)
    sent_at: list[tuple[int, float]] = []  # (samples sent so far, when)
    lags: list[float] = []
    async with connect(ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"format": "pcm16", "sample_rate": RATE}))
        json.loads(await ws.recv())

        async def receive() -> None:
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "window":
                    end = min(message["index"] * hop + window, len(pcm))
                    sent = next((when for count, when in sent_at if count >= end), sent_at[-1][1])
                    lags.append(time.perf_counter() - sent)
                elif message["type"] in ("result", "error"):
                    return

        receiver = asyncio.create_task(receive())
        started = time.perf_counter()
        for at in range(0, len(pcm), chunk):
            await asyncio.sleep(max(0.0, started + at / RATE - time.perf_counter()))
            await ws.send(pcm[at: at + chunk].tobytes())
            sent_at.append((min(at + chunk, len(pcm)), time.perf_counter()))
        await ws.send(json.dumps({"end": True}))
        sent_at.append((len(pcm), time.perf_counter()))
        await receiver
    return lags


async def streams_load(ws_url: str, clips: list[Path], streams: int, window: int, chunk_s: float) -> dict:
    audios = [sf.read(clips[i % len(clips)], dtype="float32")[0] for i in range(streams)]
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(ws_url, audio, window, max(window // 2, 1), chunk_s)
                                     for audio in audios), return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    lags = [lag for r in results if not isinstance(r, BaseException) for lag in r]
    return {"streams": streams, "wall_s": time.perf_counter() - started, "windows": len(lags),
            "lag_max_s": max(lags) if lags else None, **{f"lag_{k}_s": v for k, v in percentiles(lags).items()},
            "failures": failures}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory to serve")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", default="16,64", help="concurrent clients of each phase")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--clips", type=int, default=64, help="distinct clips (requests cycle through them)")
    parser.add_argument("--min-s", type=float, default=2.0)
    parser.add_argument("--max-s", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2, help="serve --threads")
    parser.add_argument("--max-queue", type=int, default=32, help="serve --max-queue")
    parser.add_argument("--chunk-s", type=float, default=0.1, help="stream chunk length, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, args.clips, args.min_s, args.max_s, args.seed)
        payload = [(p.name, p.read_bytes(), sf.info(p).duration) for p in clips]
        print(f"{len(clips)} clips of {args.min_s:g}-{args.max_s:g} s; score on the folder...", file=sys.stderr)
        score = score_throughput(args.run, folder)
        meta = json.loads((Path(args.run) / "meta.json").read_text())
        window = int(meta["input"]["num_samples"])

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "plastispoof.cli", "serve", "--run", args.run, "--port",
                                   str(port), "--threads", str(args.threads), "--max-queue", str(args.max_queue)],
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.25)
            httpx.post(f"{url}/v1/score", files={"file": payload[0][:2]}, timeout=120)  # warm up
            rss_before = rss_mb(server.pid)
            phases = []
            for clients in (int(c) for c in args.clients.split(",")):
                print(f"{args.requests} requests at {clients} clients...", file=sys.stderr)
                phases.append(asyncio.run(http_load(url, payload, args.requests, clients)))
            print(f"{args.streams} streams...", file=sys.stderr)
            streams = asyncio.run(streams_load(f"ws://127.0.0.1:{port}/v1/stream", clips, args.streams, window,
                                               args.chunk_s))
            rss_after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(60)

    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "run": args.run, "model": meta["model"]["name"], "score": score, "phases": phases, "streams": streams,
              "rss_mb": {"before": rss_before, "after": rss_after, "growth": rss_after - rss_before},
              "command": " ".join(sys.argv)}
    print(f"\nserve load, {report['model']} ({args.run}), {report['machine']}; server --threads {args.threads} "
          f"--max-queue {args.max_queue}; clips {args.min_s:g}-{args.max_s:g} s\n")
    print("| clients | requests | req/s | audio s / s | vs score | p50 s | p95 s | p99 s | errors | 503 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for phase in phases:
        print(f"| {phase['clients']} | {phase['requests']} | {phase['requests_per_s']:.1f} | "
              f"{phase['audio_s_per_s']:.1f} | {phase['audio_s_per_s'] / score['audio_s_per_s']:.0%} | "
              f"{phase['p50'] or float('nan'):.3f} | {phase['p95'] or float('nan'):.3f} | "
              f"{phase['p99'] or float('nan'):.3f} | {phase['errors']} | {phase['busy_503']} |")
    print(f"\nscore on the same clips: {score['audio_s_per_s']:.1f} audio s / s ({score['audio_s']:.0f} s in "
          f"{score['wall_s']:.1f} s)")
    lag = streams["lag_max_s"]
    print(f"{streams['streams']} streams: {streams['windows']} window messages, lag p50 "
          f"{streams['lag_p50_s'] or float('nan'):.3f} s, p95 {streams['lag_p95_s'] or float('nan'):.3f} s, max "
          f"{lag if lag is not None else float('nan'):.3f} s; failures: {len(streams['failures'])}")
    print(f"server RSS: {rss_before:.0f} MB before, {rss_after:.0f} MB after ({rss_after - rss_before:+.0f} MB)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
