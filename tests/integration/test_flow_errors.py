"""Bad input inside a flow run ends it as the CLI does: one `error:` line, exit status 2, no
traceback (Prefect logs one for any exception that escapes a flow), and no output written."""
from __future__ import annotations

import pytest
import yaml

from tests.integration.conftest import make_tiny_repo, run

pytestmark = pytest.mark.slow


def assert_failed_on_bad_input(result, needle: str) -> None:
    log = result.stdout + result.stderr
    assert result.returncode == 2, log[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], log[-3000:]
    assert "Traceback" not in log, log[-5000:]
    # The run's state carries the message too (what a deployment's UI shows).
    assert any("Finished in state Failed(" in line and needle in line for line in log.splitlines())


def test_a_stage_with_bad_input_fails_the_pipeline_flow_in_one_line(tmp_path):
    repo = make_tiny_repo(tmp_path / "repo")
    (tmp_path / "reviews.csv").write_text("sentence,label\na fine film,1\na dull film,0\n")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["task"]["source"] = str(tmp_path / "reviews.csv")
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    result = run(repo, "python", "-m", "flows.pipeline", check=False)

    assert_failed_on_bad_input(result, "reviews.csv: column 'text' (task.text_column) not found")
    assert (repo / "data" / "corpus").is_dir()  # the stage before it ran
    assert not (repo / "data" / "task").exists() and not list((repo / "data").glob(".task.tmp-*"))


def test_a_sharded_stage_with_missing_input_fails_its_flow_in_one_line(tmp_path):
    repo = make_tiny_repo(tmp_path / "repo")

    result = run(repo, "python", "-m", "flows.sharded", "augment", "--workers", "1", check=False)

    assert_failed_on_bad_input(result, "run `dvc repro prepare-task` first")
    assert not (repo / "data" / "augmented").exists()
