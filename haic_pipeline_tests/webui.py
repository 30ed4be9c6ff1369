"""Helpers for the tests that start `dagster dev` and talk to its GraphQL API."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@contextmanager
def dagster_dev(timeout: float = 150):
    """`dagster dev` (what `make ui` runs) from the repository root on a free port, in its own
    process group, with the project's instance settings in DAGSTER_HOME (`deploy/dagster.yaml`,
    copied when absent as `make ui` does); yields the port once the code location lists its
    assets, and stops it. Its output goes to `dagster-dev.log` beside DAGSTER_HOME (a file: a pipe
    nobody reads would stop every process of it once 64 KB of logs filled it)."""
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    log = home.parent / "dagster-dev.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if graphql(port, "{ assetNodes { id } }").get("data", {}).get("assetNodes"):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            assert time.time() < deadline, (f"dagster dev did not answer within {timeout:.0f} s\n"
                                             + log.read_text(errors="replace")[-3000:])
            time.sleep(2)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
