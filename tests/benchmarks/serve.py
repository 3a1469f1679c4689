"""The served model under long and hostile requests: wall, status and the server's resident memory
(summed over its processes, sampled every 50 ms from ``/proc``):

    python tests/benchmarks/serve.py --model models:/audioclf-synthetic/16 [--bad 100] [--mlflow]

* ``idle``: after start-up;
* ``hour-wav``: one hour of 22.05-kHz mono 16-bit WAV as ``audio_base64`` (a 212 MB body), every
  window's top label;
* ``hour-samples``: one hour of 16-kHz float samples as JSON (a 433 MB body), sent whole;
* ``hang-up``: the hour of WAV again, the client gone 2 s after sending it: the server's CPU
  seconds over the next 10 s (work that goes on for a request nobody waits for shows here);
* ``bad``: ``--bad`` requests cycling through the hostile kinds (huge ``batch_size``, a zero or
  negative ``sample_rate``, ``top_k`` -1, ``min_score`` NaN, 1e30 samples, text that is not
  base64, base64 that is not audio, ``overlap_s`` out of range, good and bad records together),
  then ``/ping`` and one good request: its latency.

``audioclf serve`` is measured; ``--mlflow`` measures ``mlflow models serve`` on the same requests
after it, for comparison. The tracking store is ``MLFLOW_TRACKING_URI`` (default the
repository's ``sqlite:///mlflow.db``, where ``dvc repro`` registers the model).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.cli import command

log = logging.getLogger("audioclf.benchmarks.serve")
REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.05
GOOD = {"samples": [0.1] * 32000, "sample_rate": 16000}
BAD = [
    ({"dataframe_records": [GOOD], "params": {"batch_size": 10**7}}),
    ({"dataframe_records": [{"samples": [0.1] * 100, "sample_rate": 0}]}),
    ({"dataframe_records": [{"samples": [0.1] * 100, "sample_rate": -5}]}),
    ({"dataframe_records": [GOOD], "params": {"top_k": -1}}),
    ({"dataframe_records": [GOOD], "params": {"min_score": float("nan")}}),
    ({"dataframe_records": [{"samples": [1e30] * 16000, "sample_rate": 16000}]}),
    ({"dataframe_records": [{"audio_base64": "not base64 at all!"}]}),
    ({"dataframe_records": [{"audio_base64": "bm90IGF1ZGlv"}]}),
    ({"dataframe_records": [GOOD], "params": {"overlap_s": 99.0}}),
    ({"dataframe_records": [GOOD, {"samples": [0.1] * 10, "sample_rate": 0}, GOOD]}),
]


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``mlflow models serve`` runs the server in a child)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants."""
    total = 0
    for p in tree(pid):
        try:
            total += 1024 * int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
        except (OSError, IndexError):
            continue
    return total


def peak_rss(pid: int, action: Callable[[], object]) -> tuple[object, int, float]:
    """Run ``action`` while sampling the server's memory: (its result, peak bytes, wall s)."""
    peak, stop = [tree_rss(pid)], threading.Event()

    def sample():
        while not stop.wait(POLL_S):
            peak.append(tree_rss(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        result = action()
    finally:
        wall = time.perf_counter() - start
        stop.set()
        thread.join()
    return result, max(peak), wall


def post(url: str, body: bytes, timeout: float = 600) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = r.read()
            rows = len(json.loads(body)["predictions"])
            return r.status, f"{rows} rows: {body[:200].decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode(errors="replace")
    except OSError as exc:  # the server closed the connection while the body was being sent
        return 0, f"{type(exc).__name__}: {exc}"


def hour_bodies() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    wav = io.BytesIO()
    audio = (0.1 * rng.standard_normal(3600 * 22050)).astype(np.float32)
    sf.write(wav, audio, 22050, subtype="PCM_16", format="WAV")
    del audio
    encoded = base64.b64encode(wav.getvalue()).decode()
    samples = np.round(0.1 * rng.standard_normal(3600 * 16000), 4).tolist()
    return {
        "hour-wav": json.dumps(
            {"dataframe_records": [{"audio_base64": encoded}], "params": {"min_score": 0.0}}
        ).encode(),
        "hour-samples": json.dumps(
            {"dataframe_records": [{"samples": samples, "sample_rate": 16000}]}
        ).encode(),
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and its descendants (the scoring threads)."""
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def hang_up(url: str, body: bytes, pid: int, after_s: float = 2.0, watch_s: float = 10.0) -> float:
    """Send ``body``, hang up ``after_s`` later: the server's CPU seconds in the ``watch_s`` after."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST /invocations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(after_s)
    start = cpu_seconds(pid)
    time.sleep(watch_s)
    return cpu_seconds(pid) - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(cmd: list[str], bodies: dict[str, bytes], n_bad: int, env: dict) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logfile = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-bench-{port}.log", "w")
    server = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited; see {logfile.name}")
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        print(f"  idle: {tree_rss(server.pid) / 1e6:,.0f} MB")
        for name, body in bodies.items():
            (status, text), peak, wall = peak_rss(server.pid, lambda b=body: post(url, b))
            after = tree_rss(server.pid)
            print(
                f"  {name} ({len(body) / 1e6:.0f} MB body): HTTP {status} in {wall:.1f} s; "
                f"peak {peak / 1e6:,.0f} MB, {after / 1e6:,.0f} MB after; {text[:120]!r}"
            )
            if name == "hour-wav":  # before any request whose work could still be running
                spent = hang_up(url, body, server.pid)
                print(f"  hang-up after 2 s: {spent:.1f} CPU s in the server over the next 10 s")
                time.sleep(10)  # whatever still runs for it ends before the next figures
        bad = [json.dumps(BAD[i % len(BAD)]).encode() for i in range(n_bad)]
        statuses, peak, wall = peak_rss(server.pid, lambda: [post(url, b)[0] for b in bad])
        start = time.perf_counter()
        ping = urllib.request.urlopen(f"{url}/ping", timeout=10).status
        status, _ = post(url, json.dumps({"dataframe_records": [GOOD]}).encode())
        print(
            f"  {n_bad} bad requests in {wall:.1f} s (statuses {sorted(set(statuses))}): peak "
            f"{peak / 1e6:,.0f} MB, {tree_rss(server.pid) / 1e6:,.0f} MB after; /ping {ping}, "
            f"a good request HTTP {status} in {time.perf_counter() - start:.3f} s"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        logfile.close()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="models:/<name>/<version> in the store")
    ap.add_argument("--bad", type=int, default=100, help="hostile requests in a row")
    ap.add_argument("--mlflow", action="store_true", help="also mlflow models serve, after")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each figure as it comes, into a log too
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlflow.db'}")
    bodies = hour_bodies()
    print(f"audioclf serve -m {args.model}")
    measure([sys.executable, "-m", "audioclf", "serve", "-m", args.model], bodies, args.bad, env)
    if args.mlflow:
        print(f"mlflow models serve -m {args.model}")
        serve = [sys.executable, "-m", "mlflow", "models", "serve", "-m", args.model]
        measure([*serve, "--env-manager", "local", "--workers", "1"], bodies, args.bad, env)


if __name__ == "__main__":
    command(main)
