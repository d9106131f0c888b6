"""The tiny profile through `dvc repro`: every stage, no-op reruns, targeted reruns, lineage, checkout."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.integration.conftest import assert_same_weights_up_to_float_noise, read_loss_log, run
from tinybert.training import INTERRUPT_ENV
from tinybert.stages import STAGES

pytestmark = pytest.mark.slow


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def set_param(repo, dotted: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dvc_repro_runs_every_stage_and_writes_every_artifact(built_repo):
    log = (built_repo.parent / "first_repro.log").read_text()
    assert ran_stages(log) == [s.name for s in STAGES]
    for stage in STAGES:
        for out in stage.outs.values():
            assert (built_repo / out).is_dir(), out
    metrics = json.loads((built_repo / "data/evaluation/metrics.json").read_text())
    assert set(metrics["teacher"]["dev"]) == {"accuracy", "f1", "mcc"}
    assert metrics["student"]["parameters"] < metrics["teacher"]["parameters"]
    assert (built_repo / "data/evaluation/teacher_vs_student.png").stat().st_size > 1000


def test_the_cached_teacher_logits_record_the_device_that_computed_them(built_repo):
    import torch

    # CPU and GPU logits differ in their last bits, and device: auto decides by the machine
    info = json.loads((built_repo / "data/teacher_logits/info.json").read_text())
    assert info["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_each_trained_model_records_where_each_of_its_steps_trained(built_repo):
    import torch

    # dvc.lock holds device: auto; the model's own report says what that became.
    expected = {"device": "cuda:0" if torch.cuda.is_available() else "cpu", "precision": "fp32", "processes": 1,
                "torch": torch.__version__}
    steps = {"mlm": {"train"}, "teacher": {"train"}, "general_student": {"train"},
             "intermediate_student": {"intermediate"}, "student": {"intermediate", "prediction"}}
    for model, names in steps.items():
        trained_on = json.loads((built_repo / f"data/{model}/training.json").read_text())["trained_on"]
        assert set(trained_on) == names, model
        for where in trained_on.values():
            assert {**where, "device": where["device"].split(" ")[0]} == expected, model


def test_second_dvc_repro_does_nothing_and_status_is_clean(built_repo):
    assert ran_stages(run(built_repo, "dvc", "repro").stdout) == []
    assert "up to date" in run(built_repo, "dvc", "status").stdout


def test_summary_prints_metrics_retention_sizes_and_throughput(built_repo):
    out = run(built_repo, "tinybert", "summary").stdout
    for needle in ("dev accuracy", "test accuracy", "parameters", "size on disk", "CPU throughput", "majority-class baseline"):
        assert needle in out


def test_lineage_names_every_upstream_stage_with_params_hashes_and_revision(built_repo):
    out = run(built_repo, "tinybert", "lineage", "data/student/model.safetensors").stdout
    assert "produced by stage 'task-distill'" in out
    for upstream in ("prepare-corpus", "prepare-task", "mlm", "augment", "teacher", "general-distill",
                     "task-distill-intermediate", "task-distill"):
        assert f"stage {upstream}:" in out
    assert "stage evaluate:" not in out
    assert "augment.p_t = 0.4" in out
    lock = yaml.safe_load((built_repo / "dvc.lock").read_text())
    assert lock["stages"]["augment"]["outs"][0]["md5"] in out
    assert "git revision:" in out
    assert "source: embedded:movie-reviews  sha256 " in out  # the dataset file itself, recorded by prepare-task


def test_lineage_of_a_file_no_stage_writes_is_a_clear_error(built_repo):
    result = run(built_repo, "tinybert", "lineage", "README.md", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: README.md: not an output of any pipeline stage (see dvc.yaml)"


def test_dvc_dag_shows_the_pipeline(built_repo):
    out = run(built_repo, "dvc", "dag", "--md").stdout
    assert "general-distill" in out and "task-distill" in out and "-->" in out


def test_single_stage_rerun_runs_that_stage_only(built_repo):
    out = run(built_repo, "dvc", "repro", "-s", "-f", "evaluate").stdout
    assert ran_stages(out) == ["evaluate"]


def test_interrupted_training_stage_resumes_from_its_checkpoint(built_repo, tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    shutil.copytree(built_repo / "data/teacher", uninterrupted)
    before = (built_repo / "data/teacher/model.safetensors").stat().st_mtime_ns

    crashed = run(built_repo, "tinybert", "teacher", check=False, extra_env={INTERRUPT_ENV: "2"})
    assert crashed.returncode != 0
    assert (built_repo / "data/teacher/model.safetensors").stat().st_mtime_ns == before  # old artifact untouched
    assert list((built_repo / "checkpoints").glob("teacher-*/state.pt"))

    resumed = run(built_repo, "tinybert", "teacher")
    assert "resumed from checkpoint at step 2/3" in resumed.stderr
    assert not list((built_repo / "checkpoints").glob("teacher-*"))  # cleaned up once complete
    # The uninterrupted run's curve and weights: step 3 (the only one run after the resume) sees
    # the same batch, dropout masks and optimizer state. Bit-identity is tested in one process
    # (tests/test_training.py); across processes the CPU may differ in the last bits.
    expected, actual = (read_loss_log(d / "train_log.csv") for d in (uninterrupted, built_repo / "data/teacher"))
    assert [row["step"] for row in actual] == [1, 2, 3]
    for want, got in zip(expected, actual):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4) and got["lr"] == want["lr"]
    assert_same_weights_up_to_float_noise(uninterrupted / "model.safetensors", built_repo / "data/teacher/model.safetensors")
    if "up to date" not in run(built_repo, "dvc", "status", "teacher").stdout:
        # Later tests expect the workspace to match dvc.lock: put the uninterrupted weights back.
        run(built_repo, "dvc", "checkout", "-f", "teacher")


def test_changing_one_parameter_reruns_that_stage_and_its_dependents_only(built_repo):
    set_param(built_repo, "teacher.train.lr", 0.0001)
    out = run(built_repo, "dvc", "repro").stdout
    assert ran_stages(out) == ["teacher", "teacher-logits", "task-distill-intermediate", "task-distill", "evaluate"]
    set_param(built_repo, "teacher.train.lr", 0.00005)
    run(built_repo, "dvc", "repro")


def test_how_augmentation_is_cut_or_batched_is_no_reason_to_rebuild(built_repo):
    # Its output does not depend on them (test_stage: the same bytes for other shard sizes and workers).
    before = (built_repo / "params.yaml").read_text()
    for dotted, value in (("augment.workers", 2), ("augment.shard_rows", 3), ("augment.batch_size", 7),
                          ("augment.batch_tokens", 4096)):
        set_param(built_repo, dotted, value)
    try:
        assert ran_stages(run(built_repo, "dvc", "repro").stdout) == []
    finally:
        (built_repo / "params.yaml").write_text(before)


@pytest.mark.parametrize("dotted, value", [
    ("task_distill.prediction.lr", 0.0002),
    ("task_distill.temperature", 2.0),
    ("task_distill.weights.prediction", 0.0),  # the ablation's w/o L_pred
])
def test_a_prediction_step_setting_reruns_the_prediction_step_not_the_intermediate_one(built_repo, dotted, value):
    # The reference's two steps are two stages: the intermediate student is reused.
    before = (built_repo / "data/intermediate_student/model.safetensors").read_bytes()
    params = (built_repo / "params.yaml").read_text()
    set_param(built_repo, dotted, value)
    try:
        assert ran_stages(run(built_repo, "dvc", "repro").stdout) == ["task-distill", "evaluate"]
        assert (built_repo / "data/intermediate_student/model.safetensors").read_bytes() == before
    finally:
        (built_repo / "params.yaml").write_text(params)
        run(built_repo, "dvc", "repro")


def test_git_checkout_of_an_earlier_commit_and_dvc_checkout_restore_its_artifacts(built_repo):
    run(built_repo, "git", "add", "-A")
    run(built_repo, "git", "commit", "-qm", "tiny run")
    first = (built_repo / "data/general_student/model.safetensors").read_bytes()
    set_param(built_repo, "general_distill.train.lr", 0.001)
    run(built_repo, "dvc", "repro")
    assert (built_repo / "data/general_student/model.safetensors").read_bytes() != first
    run(built_repo, "git", "add", "-A")
    run(built_repo, "git", "commit", "-qm", "higher GD lr")

    run(built_repo, "git", "checkout", "-q", "HEAD~1")
    run(built_repo, "dvc", "checkout")
    assert (built_repo / "data/general_student/model.safetensors").read_bytes() == first
    assert "up to date" in run(built_repo, "dvc", "status").stdout
    run(built_repo, "git", "checkout", "-q", "-")
    run(built_repo, "dvc", "checkout")


def test_a_killed_training_stage_resumes_from_its_last_checkpoint(built_repo, tmp_path):
    import os
    import signal
    import subprocess
    import time

    from tests.integration.conftest import env_for

    params = yaml.safe_load((built_repo / "params.yaml").read_text())
    params["general_distill"]["train"].update(max_steps=40, checkpoint_every=2, log_every=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(built_repo / "data/corpus", tmp_path / "data/corpus")
    env = {**env_for(built_repo), "TINYBERT_CHECKPOINTS": str(tmp_path / "checkpoints")}

    proc = subprocess.Popen(["tinybert", "general-distill"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "checkpoints").glob("general-distill-*/state.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "stage ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "data/general_student").exists()

    resumed = subprocess.run(["tinybert", "general-distill"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"resumed from checkpoint at step \d+/40", resumed.stderr)
    log = (tmp_path / "data/general_student/train_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == list(range(1, 41))  # the curve continues, no gap
