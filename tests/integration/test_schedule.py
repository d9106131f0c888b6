"""The scheduled deployment: a real `prefect server`, `flows.deploy` serving with a short
interval, and one scheduled run observed to finish."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.integration.conftest import env_for, make_tiny_repo

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or "null")


def wait_for(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{what}: a process exited early:\n{proc.stdout.read()[-3000:]}")
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_served_deployment_runs_on_its_schedule_against_a_real_server(tmp_path):
    repo = make_tiny_repo(tmp_path / "repo")
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    env = {**env_for(repo), "PREFECT_API_URL": base}
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    served = None
    try:
        wait_for(lambda: api(f"{base}/health"), 120, "prefect server health", [server])
        served = subprocess.Popen(
            [sys.executable, "-m", "flows.deploy", "--name", "tiny-schedule", "--interval", "15", "--repo", str(repo)],
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

        def completed_runs():
            runs = api(f"{base}/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
            return [r for r in runs if r.get("deployment_id")]

        runs = wait_for(completed_runs, 420, "a completed scheduled flow run", [server, served])
        deployment = api(f"{base}/deployments/{runs[0]['deployment_id']}")
        assert deployment["name"] == "tiny-schedule"
        assert (repo / "data/evaluation/metrics.json").is_file()
    finally:
        for proc in (served, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
