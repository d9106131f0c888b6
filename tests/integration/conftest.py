"""Integration fixtures: the repository copied to a temporary folder with the tiny profile."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinybert.training import INTERRUPT_ENV

ROOT = Path(__file__).resolve().parents[2]
# The data/ layout and DVC's own files are recreated in the copy.
SKIP = ("data/", ".dvc/tmp", ".dvc/cache", "dvc.lock")


def env_for(repo: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `tinybert` for dvc's cmd
    env["PYTHONPATH"] = str(repo)  # flows/ and tasks/ of the copy
    env["TINYBERT_CHECKPOINTS"] = str(repo / "checkpoints")
    env["HF_HUB_OFFLINE"] = env["HF_DATASETS_OFFLINE"] = env["DVC_NO_ANALYTICS"] = "1"
    env["PREFECT_HOME"] = str(repo.parent / f"{repo.name}-prefect-home")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.pop(INTERRUPT_ENV, None)
    return env



def run(repo: Path, *args: str, check: bool = True, extra_env: dict | None = None, timeout: int = 900):
    result = subprocess.run(
        list(args), cwd=repo, env={**env_for(repo), **(extra_env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def make_tiny_repo(dest: Path) -> Path:
    """The project's files as git sees them (tracked + untracked, not ignored), tiny params, a fresh git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name in filter(None, files):
        if name.startswith(SKIP) or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    shutil.copy2(ROOT / "profiles" / "tiny.yaml", dest / "params.yaml")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.com"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny profile"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> Path:
    """A tiny-profile copy after one full `dvc repro` (shared; tests that change it say so)."""
    repo = make_tiny_repo(tmp_path_factory.mktemp("dvc") / "repo")
    result = run(repo, "dvc", "repro")
    (repo.parent / "first_repro.log").write_text(result.stdout + result.stderr)
    shutil.copy2(repo / "dvc.lock", repo.parent / "dvc.lock.first")
    return repo


def assert_same_weights_up_to_float_noise(expected_file: Path, actual_file: Path) -> None:
    """Two trainings in different processes that took the same steps from the same state.

    On this CPU they are usually bit-identical, but not always: the threading libraries may sum
    in another order in one process (see ``tinybert/__init__.py``), and Adam turns the sign of a
    gradient that cancels to near zero into a full learning-rate step. So a few elements may
    differ, never many: a resume from the wrong random or data state moves about a third of the
    weights by more than 1e-6 after one step (measured on the tiny teacher)."""
    from safetensors.torch import load_file

    a, b = load_file(expected_file), load_file(actual_file)
    assert a.keys() == b.keys(), actual_file
    total = sum(t.numel() for t in a.values())
    moved = sum(int(((a[k] - b[k]).abs() > 1e-6).sum()) for k in a)
    assert moved <= total // 10_000, f"{actual_file}: {moved} of {total} weights differ by more than 1e-6"


def read_loss_log(path: Path) -> list[dict[str, float]]:
    lines = path.read_text().splitlines()
    names = lines[0].split(",")
    return [{n: float(v) for n, v in zip(names, line.split(",")) if v} for line in lines[1:]]
