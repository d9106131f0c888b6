"""The ablation command puts the workspace back to its commit after every row."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tinybert.ablation import reset_workspace


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def test_a_row_killed_mid_run_leaves_no_staged_parameters_behind(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("objective:\n  losses: [embedding, attention, hidden, prediction]\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "baseline")
    # what a `dvc exp run -S` killed before it finished left: its row's parameters, staged
    (tmp_path / "params.yaml").write_text("objective:\n  losses: [embedding, attention, prediction]\n")
    _git(tmp_path, "add", "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # dvc's command
    reset_workspace()
    assert _git(tmp_path, "status", "--porcelain", "--", "params.yaml", "dvc.lock") == ""
    assert "hidden" in (tmp_path / "params.yaml").read_text()
