"""Each ablation switch of task distillation is one parameter change (paper, Table 6); the two
steps run as two stages, the second starting from the first one's student."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.integration.conftest import run

pytestmark = pytest.mark.slow

INPUTS = ("data/task", "data/augmented", "data/teacher", "data/general_student", "data/teacher_logits")
STAGES = ("task-distill-intermediate", "task-distill")


def distill_with(built_repo, tmp_path, extra_env=None, without=(), **switches) -> dict:
    """Both task-distillation stages on copies of the built repo's inputs, minus the files in
    ``without``: the student's report, with the stages' stderr."""
    for folder in INPUTS:
        shutil.copytree(built_repo / folder, tmp_path / folder)
    for name in without:
        (tmp_path / name).unlink()
    params = yaml.safe_load((built_repo / "params.yaml").read_text())
    params["task_distill"].update(switches)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    results = [run(tmp_path, "tinybert", stage, extra_env=extra_env) for stage in STAGES]
    return {**json.loads((tmp_path / "data/student/training.json").read_text()),
            "stderr": "".join(result.stderr for result in results)}


def augmented_rows(built_repo) -> tuple[int, int]:
    manifest = json.loads((built_repo / "data/augmented/manifest.json").read_text())
    return manifest["rows"], manifest["original_rows"]


def test_default_runs_the_reference_two_steps_on_the_augmented_set(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path)
    assert set(report) == {"training_rows", "max_seq_len", "student_init", "projections_init", "intermediate_steps",
                           "prediction_steps", "trained_on", "stderr"}
    assert set(report["trained_on"]) == {"intermediate", "prediction"}  # both steps say where they ran
    assert report["student_init"] == "general"
    assert report["projections_init"] == "general"  # the reference's W_h carries over from general distillation
    assert report["training_rows"] == augmented_rows(built_repo)[0]


def test_padding_to_max_length_gives_every_batch_the_stage_s_maximum_width(built_repo, tmp_path):
    from tinybert.config import load_params
    from tinybert.distill.general import corpus_batches
    from tinybert.distill.task import _TaskData

    params = load_params(built_repo / "params.yaml")
    max_len = json.loads((built_repo / "data/corpus/manifest.json").read_text())["max_seq_len"]
    corpus = corpus_batches(built_repo / "data/corpus", "max_length", 0)
    assert {corpus.batch(params.general_distill.train, step)["input_ids"].shape[1] for step in range(6)} == {max_len}

    def task_widths(padding: str) -> tuple[set[int], int]:
        cfg = params.task_distill.model_copy(update={"padding": padding})
        task = _TaskData.read(cfg, built_repo / "data/task", built_repo / "data/augmented", built_repo / "data/teacher")
        return {task.batches.batch(cfg.intermediate, step)["input_ids"].shape[1] for step in range(6)}, task.max_seq_len

    (longest, max_seq_len), (padded, _) = task_widths("longest"), task_widths("max_length")
    assert padded == {max_seq_len} and min(longest) < max_seq_len
    report = distill_with(built_repo, tmp_path, padding="max_length")
    assert report["intermediate_steps"] > 0 and report["prediction_steps"] > 0


def test_without_data_augmentation_only_original_rows_are_used(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path, augmented_data=False)
    total, originals = augmented_rows(built_repo)
    assert report["training_rows"] == originals < total


def test_without_task_distillation_the_student_is_fine_tuned_on_labels(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path, distillation=False)
    assert set(report) == {"training_rows", "max_seq_len", "student_init", "finetune_steps", "trained_on", "stderr"}
    assert set(report["trained_on"]) == {"finetune"}
    assert (tmp_path / "data/student/finetune_log.csv").is_file()


def test_one_step_option_runs_all_losses_together_in_the_second_stage(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path, one_step=True)
    header = (tmp_path / "data/student/one_step_log.csv").read_text().splitlines()[0].split(",")
    assert {"embedding_loss", "attention_loss", "hidden_loss", "prediction_loss"} <= set(header)
    # on the prediction step's schedule (3 steps in the tiny profile), from the general projections
    assert report["one_step_steps"] == 3 and report["projections_init"] == "general"
    assert not [key for key in report if key.startswith(("prediction", "intermediate"))]
    # the first stage only gave the general student its new task head
    assert not list((tmp_path / "data/intermediate_student").glob("*_log.csv"))
    assert set(report["trained_on"]) == {"one_step"}


def embedding_distance_from_general_student(built_repo, tmp_path) -> float:
    from safetensors.torch import load_file

    key = "bert.embeddings.word_embeddings.weight"
    general = load_file(built_repo / "data/general_student/model.safetensors")
    student = load_file(tmp_path / "data/student/model.safetensors")
    general_key = key if key in general else key.removeprefix("bert.")
    return float((student[key] - general[general_key]).abs().mean())


def test_without_general_distillation_the_student_starts_from_random_weights(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path / "random", general_student=False)
    assert report["student_init"] == "random"
    distill_with(built_repo, tmp_path / "general")
    # a few small steps move a student little: only the randomly initialised one is far from GD's
    far = embedding_distance_from_general_student(built_repo, tmp_path / "random")
    near = embedding_distance_from_general_student(built_repo, tmp_path / "general")
    assert near < 0.01 < far


def test_projections_start_fresh_when_switched_off_without_gd_or_when_general_distillation_saved_none(
        built_repo, tmp_path):
    from safetensors.torch import load_file

    saved = load_file(built_repo / "data/general_student/projections.safetensors")
    general = json.loads((built_repo / "data/general_student/config.json").read_text())
    teacher = json.loads((built_repo / "data/teacher/config.json").read_text())
    assert saved["hidden.weight"].shape == (teacher["hidden_size"], general["hidden_size"])

    assert distill_with(built_repo, tmp_path / "off", general_projections=False)["projections_init"] == "fresh"
    assert distill_with(built_repo, tmp_path / "no-gd", general_student=False)["projections_init"] == "fresh"
    missing = distill_with(built_repo, tmp_path / "missing", without=["data/general_student/projections.safetensors"])
    assert missing["projections_init"] == "fresh"
    assert "projections start fresh, not from data/general_student/projections.safetensors: no such file" in missing["stderr"]


def test_two_cpu_processes_run_the_stage_through_torchrun(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path, extra_env={"TINYBERT_PROCESSES": "2"})
    assert report["intermediate_steps"] == report["prediction_steps"] == 3
    assert {where["processes"] for where in report["trained_on"].values()} == {2}
    assert (tmp_path / "data/student/model.safetensors").is_file()
    assert not list((tmp_path / "data").glob(".*student*"))  # process 1 wrote nothing half-way


def test_without_the_prediction_loss_the_head_learns_from_the_labels(built_repo, tmp_path):
    report = distill_with(built_repo, tmp_path, weights={"embedding": 1.0, "attention": 1.0, "hidden": 1.0, "prediction": 0.0})
    assert report["intermediate_steps"] == report["prediction_labels_steps"] == 3
    assert "prediction_steps" not in report


def test_a_prediction_layer_weighted_zero_also_leaves_the_head_to_the_labels(built_repo, tmp_path):
    params = yaml.safe_load((built_repo / "params.yaml").read_text())
    prediction_layer = params["general_distill"]["student"]["layers"] + 1
    report = distill_with(built_repo, tmp_path, layer_weights={prediction_layer: 0.0})
    assert report["intermediate_steps"] == report["prediction_labels_steps"] == 3
    assert "prediction_steps" not in report


def test_killed_in_its_prediction_step_task_distillation_resumes_there(built_repo, tmp_path):
    from tinybert.training import INTERRUPT_ENV

    for folder in INPUTS:
        shutil.copytree(built_repo / folder, tmp_path / folder)
    shutil.copy2(built_repo / "params.yaml", tmp_path / "params.yaml")
    run(tmp_path, "tinybert", "task-distill-intermediate")
    crashed = run(tmp_path, "tinybert", "task-distill", check=False,
                  extra_env={INTERRUPT_ENV: "task-distill/prediction:2"})
    assert crashed.returncode != 0 and not (tmp_path / "data/student").exists()

    resumed = run(tmp_path, "tinybert", "task-distill")
    assert "[task-distill/prediction] resumed from checkpoint at step 2/3" in resumed.stderr
    # the same student as the uninterrupted run of both stages under dvc repro
    assert (tmp_path / "data/student/model.safetensors").read_bytes() == \
        (built_repo / "data/student/model.safetensors").read_bytes()


def test_state_from_another_general_student_is_not_resumed(built_repo, tmp_path):
    from tinybert.training import INTERRUPT_ENV

    for folder in INPUTS:
        shutil.copytree(built_repo / folder, tmp_path / folder)
    shutil.copy2(built_repo / "params.yaml", tmp_path / "params.yaml")
    run(tmp_path, "tinybert", "task-distill-intermediate", check=False,
        extra_env={INTERRUPT_ENV: "task-distill/intermediate:2"})
    # The same path, other contents: under DVC every run reads data/general_student, rebuilt or not.
    (tmp_path / "data/general_student/training.json").write_text("{}\n")
    rerun = run(tmp_path, "tinybert", "task-distill-intermediate")
    assert "resumed from checkpoint" not in rerun.stderr
    assert "[task-distill/intermediate] step 1/3" in rerun.stderr


def test_a_mapping_naming_a_layer_the_teacher_lacks_stops_the_first_stage_naming_task_distill_mapping(
        built_repo, tmp_path):
    for folder in INPUTS:
        shutil.copytree(built_repo / folder, tmp_path / folder)
    params = yaml.safe_load((built_repo / "params.yaml").read_text())
    params["task_distill"]["mapping"] = [99] * params["general_distill"]["student"]["layers"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run(tmp_path, "tinybert", STAGES[0], check=False)
    assert result.returncode != 0
    assert re.search(r"^error: task_distill\.mapping: teacher has layers 1\.\.\d+, mapping names \[99, 99\]$",
                     result.stderr, re.MULTILINE), result.stderr
    assert not (tmp_path / "data/intermediate_student").exists()
