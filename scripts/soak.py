#!/usr/bin/env python3
"""Soak test: `shopfloor serve` (release build) under a fixed rate of requests for a long time.

Half the requests go through the gateway (`POST /v1/chat/completions`, a third of them
streamed), half through the workflow API (`POST /v1/workflows/triage/runs`). The upstream is
a fake OpenAI-compatible server in this process that fails 10% of its calls (500, 429 or a
closed connection) so that retries and fallbacks are exercised all along. Every minute one
line: requests sent and answered by status, the server's RSS and open file descriptors, and
the runs it has recorded. At the end, every request that was answered with a run id must be
a recorded run: nothing lost.

    cargo build --release
    scripts/soak.py                    # 60 minutes at 20 requests/s
    scripts/soak.py --minutes 5 --rate 50

Standard library only; prints figures, writes nothing outside a temporary folder.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "shopfloor"


class Upstream(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: a label for prompts, 10% faults."""

    protocol_version = "HTTP/1.1"
    calls = Counter()
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        fault = random.random()
        with Upstream.lock:
            Upstream.calls["total"] += 1
        if fault < 0.04:
            return self.reply(500, {"error": {"message": "upstream fault", "type": "server_error"}})
        if fault < 0.07:
            return self.reply(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                              [("Retry-After", "0")])
        if fault < 0.10:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        time.sleep(random.uniform(0.005, 0.05))
        text = random.choice(["billing", "bug", "account", "other"])
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = [text[: len(text) // 2], text[len(text) // 2:]]
            for piece in pieces:
                self.chunk({"id": "c", "object": "chat.completion.chunk", "model": "soak",
                            "choices": [{"index": 0, "delta": {"content": piece},
                                         "finish_reason": None}]})
            self.chunk({"id": "c", "object": "chat.completion.chunk", "model": "soak",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 30, "completion_tokens": 2,
                                  "total_tokens": 32}})
            self.raw_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.reply(200, {
            "id": "c", "object": "chat.completion", "model": "soak",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32},
        })

    def chunk(self, event):
        self.raw_chunk(b"data: " + json.dumps(event).encode() + b"\n\n")

    def raw_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


PROJECT = """
[policy.pii]
detect = ["email", "phone", "credit_card", "iban", "ssn", "ip", "secret"]
on_external = "redact"
on_store = "redact"

[models.fast]
provider = "openai-compatible"
model = "soak"
base_url = "http://127.0.0.1:{port}/v1"
data_classes = ["public", "internal"]

[models.backup]
provider = "openai-compatible"
model = "soak-backup"
base_url = "http://127.0.0.1:{port}/v1"
data_classes = ["public", "internal"]

[gateway]
timeout_ms = 5000
retries = 2
fallbacks = {{ fast = ["backup"] }}
"""

WORKFLOW = """description = "soak"
owner = "soak@example.com"
risk = "low"
data_class = "internal"

[input]
schema = { type = "object", required = ["text"], properties = { text = { type = "string" } } }

[prompt]
user = "Classify: {{ text }}"

[output]
labels = ["billing", "bug", "account", "other"]

[route]
models = ["fast", "backup"]
timeout_ms = 5000
retries = 2
"""


def run_cli(project, *args):
    out = subprocess.run([str(BINARY), *args], cwd=project, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"shopfloor {' '.join(args)} failed: {out.stderr}")
    return out.stdout.strip()


def proc_figures(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) // 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


class Load:
    """Requests at a fixed rate from a pool of threads; what came back, by kind and status."""

    def __init__(self, port, key, rate):
        self.port, self.key, self.rate = port, key, rate
        self.statuses = Counter()
        self.run_ids = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.tickets = 0

    def one(self, n):
        kind = ("workflow", "chat", "workflow", "stream")[n % 4]
        if kind == "workflow":
            path = "/v1/workflows/triage/runs"
            body = {"input": {"text": f"ticket {n} from dana{n}@client.example"}}
        else:
            path = "/v1/chat/completions"
            body = {"model": "fast", "stream": kind == "stream",
                    "messages": [{"role": "user", "content": f"Classify: ticket {n}"}]}
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("POST", path, json.dumps(body),
                         {"Authorization": f"Bearer {self.key}",
                          "Content-Type": "application/json"})
            response = conn.getresponse()
            run_id = response.getheader("x-shopfloor-run-id")
            response.read()
            conn.close()
            status = response.status
        except Exception as e:  # a connection the server dropped is a figure, not a crash
            status, run_id = f"error:{type(e).__name__}", None
        with self.lock:
            self.statuses[f"{kind}:{status}"] += 1
            if run_id:
                self.run_ids.add(run_id)

    def drive(self):
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        n = 0
        while not self.stop.is_set():
            threading.Thread(target=self.one, args=(n,), daemon=True).start()
            n += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.tickets = n


def run_count(project):
    """Runs the server has written so far (a reader beside its writer: SQLite's WAL allows it)."""
    db = sqlite3.connect(f"file:{project / '.shopfloor' / 'shopfloor.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        db.close()


def recorded_runs(project):
    """The ids of the runs in the project's SQLite file, read once the server has exited."""
    db = sqlite3.connect(project / ".shopfloor" / "shopfloor.db")
    try:
        return {row[0] for row in db.execute("SELECT id FROM runs")}
    finally:
        db.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=20, help="requests per second")
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: run `cargo build --release` first")

    upstream = ThreadingServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    project = Path(tempfile.mkdtemp(prefix="shopfloor-soak-"))
    (project / "workflows").mkdir()
    (project / "shopfloor.toml").write_text(PROJECT.format(port=upstream.server_address[1]))
    (project / "workflows" / "triage.toml").write_text(WORKFLOW)
    key = run_cli(project, "keys", "create", "--name", "soak", "--role", "operator")

    log = open(project / "serve.log", "w")
    server = subprocess.Popen([str(BINARY), "serve", "--listen", "127.0.0.1:0", "--no-dashboard"],
                              cwd=project, stdout=subprocess.PIPE, stderr=log, text=True)
    first = server.stdout.readline()
    port = int(first.split("http://127.0.0.1:")[1].split()[0])
    load = Load(port, key, args.rate)
    driver = threading.Thread(target=load.drive)
    started = time.monotonic()
    driver.start()
    print(f"soak: {args.minutes:g} min at {args.rate:g} requests/s against pid {server.pid}, "
          f"10% upstream faults; project {project}")
    print("minute    sent  answered(2xx)  other  rss_mb   fds  runs_recorded  upstream_calls")
    minute = 0
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(max(0.0, started + (minute + 1) * 60 - time.monotonic()))
            minute += 1
            rss, fds = proc_figures(server.pid)
            with load.lock:
                total = sum(load.statuses.values())
                ok = sum(v for k, v in load.statuses.items() if k.split(":")[1].startswith("2"))
            runs = run_count(project)
            print(f"{minute:6d} {total:7d} {ok:14d} {total - ok:6d} {rss:7d} {fds:5d} "
                  f"{runs:14d} {Upstream.calls['total']:15d}", flush=True)
    finally:
        load.stop.set()
        driver.join()
        time.sleep(35)  # the last requests finish (client timeout 30 s)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    recorded = recorded_runs(project)
    lost = load.run_ids - recorded
    print("statuses:", dict(sorted(load.statuses.items())))
    print(f"answered with a run id: {len(load.run_ids)}; recorded runs: {len(recorded)}; "
          f"lost: {len(lost)}")
    if lost:
        print("lost run ids (first 10):", sorted(lost)[:10])
        sys.exit(1)
    shutil.rmtree(project)


if __name__ == "__main__":
    main()
