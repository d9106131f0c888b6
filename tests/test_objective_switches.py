"""Each row of the paper's ablation tables is one parameter change, obeyed by both distillation stages."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides

from tinybert.ablation import ABLATIONS, BY_SLUG
from tinybert.config import ObjectiveSwitches, load_params
from tinybert.errors import InputError
from tinybert.stages import BY_NAME as STAGES_BY_NAME

ROOT = Path(__file__).resolve().parents[1]


def params_after(tmp_path, slug: str):
    """params.yaml as `dvc exp run -S ...` leaves it for the row, and the settings each stage uses."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", path)
    apply_overrides(str(path), list(BY_SLUG[slug].overrides))  # what `dvc exp run -S` does
    params = load_params(path)
    return params, params.objective.applied_to(params.general_distill), params.objective.applied_to(params.task_distill)


def test_every_ablation_row_is_one_parameter_change():
    assert [len(row.overrides) for row in ABLATIONS] == [0] + [1] * (len(ABLATIONS) - 1)


@pytest.mark.parametrize("slug, switched_off", [
    ("no-embd", {"embedding"}), ("no-attn", {"attention"}), ("no-hidn", {"hidden"}),
    ("no-trm", {"attention", "hidden"}),
])
def test_a_loss_row_switches_that_loss_off_in_both_stages(tmp_path, slug, switched_off):
    _, general, task = params_after(tmp_path, slug)
    for kind in ("embedding", "attention", "hidden"):
        expected = 0.0 if kind in switched_off else 1.0
        assert getattr(general.weights, kind) == getattr(task.weights, kind) == expected
    assert (general.weights.prediction, task.weights.prediction) == (0.0, 1.0)


def test_the_prediction_loss_row_changes_task_distillation_only(tmp_path):
    _, _, task = params_after(tmp_path, "no-pred")
    assert task.weights.prediction == 0.0


@pytest.mark.parametrize("slug", ["full", "no-gd", "no-td", "no-da", "no-pred"])
def test_rows_that_keep_general_distillation_leave_every_parameter_dvc_tracks_for_it_unchanged(tmp_path, slug):
    # DVC rebuilds a stage when any parameter it tracks changes, even one without effect.
    tracked = STAGES_BY_NAME["general-distill"].params or STAGES_BY_NAME["general-distill"].sections
    committed = load_params(ROOT / "params.yaml")
    row_params, _, _ = params_after(tmp_path / slug, slug)
    for key in tracked:
        section = key.split(".")[0]
        assert getattr(row_params, section) == getattr(committed, section), key


@pytest.mark.parametrize("slug, mapping", [("map-top", "top"), ("map-bottom", "bottom")])
def test_a_mapping_row_sets_the_mapping_of_both_stages(tmp_path, slug, mapping):
    _, general, task = params_after(tmp_path, slug)
    assert general.mapping == task.mapping == mapping


def test_without_switches_each_stage_keeps_its_own_settings(tmp_path):
    params, general, task = params_after(tmp_path, "full")
    assert (general, task) == (params.general_distill, params.task_distill)


def test_an_unknown_loss_kind_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("objective:\n  losses: [embedding, attn]\n")
    with pytest.raises(InputError, match=r"objective\.losses\.1: .*'embedding', 'attention', 'hidden' or 'prediction' \(got 'attn'\)"):
        load_params(path)


def test_general_distillation_with_every_loss_switched_off_is_refused_before_training(tmp_path):
    from tinybert.distill import general

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.json").write_text('{"shards": []}')
    params = load_params(ROOT / "profiles" / "tiny.yaml")
    with pytest.raises(InputError, match="general distillation has every loss switched off"):
        general.run(params.backbone, params.general_distill, ObjectiveSwitches(losses=["prediction"]),
                    corpus_dir=tmp_path / "corpus", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("switches, field", [
    (ObjectiveSwitches(), "general_distill.mapping"),
    (ObjectiveSwitches(mapping=[99, 99]), "objective.mapping"),
])
def test_a_mapping_naming_a_layer_the_teacher_lacks_is_refused_naming_the_setting_it_came_from(tmp_path, switches,
                                                                                                field):
    # Only the teacher's depth reveals this, so loading params.yaml cannot catch it.
    from tinybert.distill import general

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.json").write_text('{"shards": []}')
    params = load_params(ROOT / "profiles" / "tiny.yaml")
    own = params.general_distill.model_copy(update={"mapping": [99] * params.general_distill.student.layers})
    with pytest.raises(InputError, match=rf"^{field}: teacher has layers 1\.\.\d+, mapping names \[99, 99\]$"):
        general.run(params.backbone, own, switches, corpus_dir=tmp_path / "corpus", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_each_stage_s_mapping_is_its_own_setting_unless_the_objective_s_replaces_both():
    assert ObjectiveSwitches().mapping_field("task_distill") == "task_distill.mapping"
    assert ObjectiveSwitches(mapping="top").mapping_field("task_distill") == "objective.mapping"


@pytest.mark.parametrize("text", [
    "objective:\n  losses: []\n",
    "objective:\n  losses: [prediction]\n",
    "objective:\n  losses: [embedding]\ngeneral_distill:\n  weights: {embedding: 0}\n",
])
def test_params_leaving_general_distillation_no_loss_are_refused_on_loading(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=r"params\.yaml: general distillation has every loss switched off"):
        load_params(path)


def test_a_single_intermediate_loss_is_enough_for_general_distillation(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("objective:\n  losses: [hidden]\n")
    assert load_params(path).objective.losses == ["hidden"]
