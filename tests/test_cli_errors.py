"""Bad input through the CLI: a one-line error naming the problem, exit code 2, no output."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY = yaml.safe_load(Path("profiles/tiny.yaml").read_text())


def tinybert(tmp_path: Path, *args: str, params: dict | str | None = None, env: dict | None = None):
    if params is not None:
        text = params if isinstance(params, str) else yaml.safe_dump(params)
        (tmp_path / "params.yaml").write_text(text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tinybert.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def with_task(**task) -> dict:
    return {**TINY, "task": {**TINY["task"], **task}}


def assert_one_line_error(result, *needles: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [message]
    for needle in needles:
        assert needle in message
    return message


def no_output(tmp_path: Path, folder: str) -> bool:
    return not (tmp_path / folder).exists() and not list((tmp_path / Path(folder).parent).glob(f".{Path(folder).name}.tmp-*"))


def test_missing_column_is_named(tmp_path):
    (tmp_path / "reviews.csv").write_text("sentence,label\ngood film,pos\nbad film,neg\nfine,pos\n")
    result = tinybert(tmp_path, "prepare-task", params=with_task(source="reviews.csv", max_examples=None))
    assert_one_line_error(result, "reviews.csv", "'text'")
    assert no_output(tmp_path, "data/task")



def test_an_unparsable_json_lines_file_gives_our_line_and_nothing_else(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a fine film", "label": "pos"}\n{"text": ')
    result = tinybert(tmp_path, "prepare-task", params=with_task(source="d.jsonl", max_examples=None))
    message = assert_one_line_error(result, "d.jsonl", "line 2 is not a JSON object")
    assert result.stderr.strip().splitlines() == [message]  # no log lines or progress bars from datasets

def test_empty_dataset_is_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("text,label\n")
    result = tinybert(tmp_path, "prepare-task", params=with_task(source="empty.csv", max_examples=None))
    assert_one_line_error(result, "empty.csv")
    assert no_output(tmp_path, "data/task")


def test_unknown_label_names_the_value(tmp_path):
    (tmp_path / "r.csv").write_text("text,label\ngood film,pos\nbad film,neg\nodd film,meh\nfine,pos\n")
    params = with_task(source="r.csv", max_examples=None, label_names=["neg", "pos"])
    result = tinybert(tmp_path, "prepare-task", params=params)
    assert_one_line_error(result, "meh")
    assert no_output(tmp_path, "data/task")


def test_missing_model_folder_is_named(tmp_path):
    params = {**TINY, "backbone": {"model": str(tmp_path / "no-such-model")}}
    result = tinybert(tmp_path, "prepare-corpus", params=params)
    assert_one_line_error(result, "backbone.model", "no-such-model")
    assert no_output(tmp_path, "data/corpus")


def test_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / "empty-model").mkdir()
    params = {**TINY, "backbone": {"model": str(tmp_path / "empty-model")}}
    result = tinybert(tmp_path, "prepare-corpus", params=params)
    assert_one_line_error(result, "not a model folder")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("task: [unclosed\n", "not valid YAML"),
        ("augment:\n  p_t: 2\n", "augment.p_t"),
        ("teacher:\n  train:\n    lr: fast\n", "teacher.train.lr"),
    ],
)
def test_malformed_params_are_named(tmp_path, text, needle):
    result = tinybert(tmp_path, "prepare-task", params=text)
    assert_one_line_error(result, "params.yaml", needle)
    assert no_output(tmp_path, "data/task")


@pytest.mark.parametrize("args, needle", [(["prepare-task", "--bogus"], "No such option: --bogus"),
                                          (["no-such-stage"], "No such command 'no-such-stage'"),
                                          (["prepare-task", "--params"], "Option '--params' requires an argument")])
def test_a_mistyped_command_line_gets_click_s_usage_message_not_a_traceback(tmp_path, args, needle):
    result = tinybert(tmp_path, *args)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("Error: ") and needle in message
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stage, needle", [("general-distill", "data/corpus"), ("teacher", "prepare-task"),
                                           ("evaluate", "prepare-task")])
def test_stage_whose_input_is_missing_says_which_stage_to_run(tmp_path, stage, needle):
    result = tinybert(tmp_path, stage, params=TINY)
    assert_one_line_error(result, needle)


@pytest.mark.parametrize("args, needle", [(["--only", "full,no-such"], "unknown row 'no-such'"),
                                          (["--seeds", "42,one"], "--seeds: expected comma-separated integers, got 'one'")])
def test_an_ablation_study_with_a_bad_row_or_seed_is_refused_before_any_run(tmp_path, args, needle):
    result = tinybert(tmp_path, "ablate", *args, params=TINY)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_process_count_that_is_not_a_positive_number_is_refused(tmp_path, value):
    result = tinybert(tmp_path, "teacher", params=TINY, env={"TINYBERT_PROCESSES": value})
    assert_one_line_error(result, "TINYBERT_PROCESSES", repr(value))
    assert no_output(tmp_path, "data/teacher")


@pytest.mark.parametrize("entry_point", [["flows.pipeline"], ["flows.sharded", "augment"], ["flows.deploy"]])
def test_the_prefect_entry_points_refuse_bad_parameters_in_one_line_too(tmp_path, entry_point):
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run([sys.executable, "-m", *entry_point, "--params", "missing.yaml"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "missing.yaml: parameters file not found")


@pytest.mark.parametrize("entry_point", [["flows.pipeline"], ["flows.sharded", "augment"], ["flows.deploy"]])
@pytest.mark.parametrize("params_file, processes, needle", [
    ("other.yaml", None, "dvc.lock, which tracks params.yaml only"),
    ("params.yaml", "2", "TINYBERT_PROCESSES=2: the flow trains in its own, single process"),
])
def test_the_flows_refuse_what_they_would_record_wrongly_in_dvc_lock(tmp_path, entry_point, params_file, processes,
                                                                       needle):
    for name in ("params.yaml", "other.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    env.pop("TINYBERT_PROCESSES", None)
    if processes:
        env["TINYBERT_PROCESSES"] = processes
    result = subprocess.run([sys.executable, "-m", *entry_point, "--params", params_file], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, needle)
