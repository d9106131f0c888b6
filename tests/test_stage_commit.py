"""Checking and recording a stage the flow runs: a held DVC lock makes the check and the commit
wait, not fail (a failed commit would make Prefect's retry train the published stage again, a
failed check would fail the run); bad input is not retried."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc.lock import LockError

from tasks.stage_tasks import commit_stage, retry_unless_bad_input, stage_is_up_to_date

HOLD_LOCK = """
import sys, time
from dvc.repo import Repo
repo = Repo(sys.argv[1])
repo.lock.lock()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def one_stage_repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env={"DVC_NO_ANALYTICS": "1", "PATH": _path()})
    (root / "in.txt").write_text("input\n")
    (root / "out.txt").write_text("made from input\n")  # as if the stage had run
    stage = {"cmd": "cp in.txt out.txt", "deps": ["in.txt"], "outs": ["out.txt"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": stage}}))
    return root


def _path() -> str:
    import os

    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def hold_lock(root: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the repository's lock, as a `dvc status` in another shell does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_commit_waits_for_another_dvc_command_to_release_the_lock(tmp_path, capsys, monkeypatch):
    root = one_stage_repo(tmp_path / "repo")
    monkeypatch.chdir(root)  # the flow runs in the repository, where DVC finds the stage by name
    # DVC itself retries for about 3 s; a holder that outlasts that used to fail the commit.
    holder = hold_lock(root, 7)
    started = time.monotonic()
    commit_stage(root, "make", wait_s=60, poll_s=0.2)
    assert time.monotonic() - started >= 3
    holder.wait(timeout=30)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert lock["stages"]["make"]["outs"][0]["path"] == "out.txt"
    assert "waiting to record the stage" in capsys.readouterr().err


def test_a_commit_gives_up_once_the_wait_is_over(tmp_path, monkeypatch):
    root = one_stage_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    holder = hold_lock(root, 10)
    try:
        with pytest.raises(LockError):
            commit_stage(root, "make", wait_s=0, poll_s=0.2)
    finally:
        holder.kill()
        holder.wait()
    assert not (root / "dvc.lock").exists()


def test_the_up_to_date_check_waits_for_another_dvc_command_to_release_the_lock(tmp_path, capsys, monkeypatch):
    root = one_stage_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    holder = hold_lock(root, 7)
    started = time.monotonic()
    assert not stage_is_up_to_date(root, "make", wait_s=60, poll_s=0.2)  # never recorded: must run
    assert time.monotonic() - started >= 3
    holder.wait(timeout=30)
    assert "waiting to check the stage" in capsys.readouterr().err


def test_prefect_retries_a_failed_stage_but_not_bad_input():
    from prefect.states import Failed

    from tinybert.errors import InputError

    assert retry_unless_bad_input(None, None, Failed(data=OSError("disk busy")))
    assert not retry_unless_bad_input(None, None, Failed(data=InputError("task.csv: no column 'label'")))
