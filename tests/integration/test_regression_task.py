"""A regression task (STS-B-like: a score per sentence) runs through every task-side stage."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml

from tests.integration.conftest import run

pytestmark = pytest.mark.slow

TASK_STAGES = ("prepare-task", "augment", "teacher", "teacher-logits", "task-distill-intermediate", "task-distill",
               "evaluate")


def test_a_regression_task_is_distilled_with_mse_on_the_logits_and_scored_by_pearson(built_repo, tmp_path):
    # The task-independent artifacts are reused; everything from the task on is rebuilt.
    for folder in ("data/mlm", "data/general_student"):
        shutil.copytree(built_repo / folder, tmp_path / folder)
    params = yaml.safe_load((built_repo / "params.yaml").read_text())
    params["task"].update(task_type="regression", metric="pearson")
    params["teacher"]["max_seq_len"] = params["task_distill"]["max_seq_len"] = params["evaluate"]["max_seq_len"] = "auto"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in TASK_STAGES:
        run(tmp_path, "tinybert", stage)

    labels = json.loads((tmp_path / "data/task/labels.json").read_text())
    assert (labels["task_type"], labels["num_labels"]) == ("regression", 1)
    for model in ("teacher", "student"):
        config = json.loads((tmp_path / f"data/{model}/config.json").read_text())
        assert (len(config["id2label"]), config["problem_type"]) == (1, "regression")

    # Soft cross-entropy over a single logit is always 0: a non-zero prediction loss shows that
    # the prediction step distils the teacher's score with MSE.
    with open(tmp_path / "data/student/prediction_log.csv") as fh:
        losses = [float(row["prediction_loss"]) for row in csv.DictReader(fh)]
    assert losses and all(loss > 0 for loss in losses)

    # "auto": the reference's 64 word pieces for single sentences, the same for logits and student
    for recorded in ("teacher/training.json", "teacher_logits/info.json", "student/training.json"):
        assert json.loads((tmp_path / "data" / recorded).read_text())["max_seq_len"] == 64, recorded

    metrics = json.loads((tmp_path / "data/evaluation/metrics.json").read_text())
    assert metrics["max_seq_len"] == 64  # scored at the length the models were trained at
    assert metrics["metric"] == "pearson"
    for model in ("teacher", "student"):
        assert {"pearson", "spearman"} <= set(metrics[model]["dev"])
