"""A teacher fine-tuned elsewhere (teacher.model) takes the teacher stage's place in the pipeline."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.integration.conftest import run

pytestmark = pytest.mark.slow


def test_a_given_fine_tuned_teacher_is_the_teacher_task_distillation_reads(built_repo, tmp_path):
    for folder in ("data/task", "data/augmented"):
        shutil.copytree(built_repo / folder, tmp_path / folder)
    given = tmp_path / "models" / "fine-tuned"
    shutil.copytree(built_repo / "data/teacher", given)  # as a user would bring their own
    params = yaml.safe_load((built_repo / "params.yaml").read_text())
    params["teacher"]["model"] = str(given)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    result = run(tmp_path, "tinybert", "teacher")
    assert "[teacher] step" not in result.stderr  # nothing trained
    assert json.loads((tmp_path / "data/teacher/training.json").read_text())["fine_tuned_here"] is False
    run(tmp_path, "tinybert", "teacher-logits")
    # The same weights give the logits the pipeline's own fine-tuned teacher gave, to the bit.
    ours, theirs = tmp_path / "data/teacher_logits", built_repo / "data/teacher_logits"
    assert (ours / "logits.parquet").read_bytes() == (theirs / "logits.parquet").read_bytes()
    info, expected = (json.loads((folder / "info.json").read_text()) for folder in (ours, theirs))
    assert info.pop("teacher") != expected.pop("teacher")  # the digest of another folder...
    assert info == expected  # ...over the same rows
