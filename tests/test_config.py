import re
from pathlib import Path

import pytest
import yaml

from tinybert import task_defaults
from tinybert.config import load_params
from tinybert.errors import InputError


def _write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_and_tiny_profile_are_valid():
    default, tiny = load_params("params.yaml"), load_params("profiles/tiny.yaml")
    assert default.general_distill.student.layers == 4 and default.general_distill.student.hidden == 312
    assert tiny.general_distill.student.layers < default.general_distill.student.layers


def test_tiny_profile_sets_the_same_keys_as_params_yaml():
    def keys(d, prefix=""):
        return {prefix + k for k in d} | {x for k, v in d.items() if isinstance(v, dict) for x in keys(v, prefix + k + ".")}

    default = yaml.safe_load(open("params.yaml"))
    tiny = yaml.safe_load(open("profiles/tiny.yaml"))
    assert set(default) == set(tiny)
    assert keys(tiny) - keys(default) <= {k for k in keys(tiny) if ".train." in k or "intermediate." in k or "prediction." in k}


def test_missing_params_file_names_the_file(tmp_path):
    with pytest.raises(InputError, match="nope.yaml: parameters file not found"):
        load_params(tmp_path / "nope.yaml")


def test_invalid_yaml_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="not valid YAML") as err:
        load_params(_write(tmp_path, "task: [unclosed\n"))
    assert "\n" not in str(err.value)



def test_a_yaml_error_names_the_line_and_the_problem(tmp_path):
    with pytest.raises(InputError, match=r"params.yaml: not valid YAML: line 2, column 1: found character '\\t'"):
        load_params(_write(tmp_path, "augment:\n\tp_t: 0.4\n"))


def test_a_key_given_twice_is_an_error_not_the_last_one_winning(tmp_path):
    with pytest.raises(InputError, match=r"params.yaml: not valid YAML: line 3, column 3: key 'p_t' appears twice"):
        load_params(_write(tmp_path, "augment:\n  p_t: 0.4\n  p_t: 0.5\n"))


def test_yaml_merge_keys_still_work_and_an_explicit_key_overrides_the_merged_one(tmp_path):
    text = ("mlm:\n  train: &train {lr: 0.001, batch_size: 8, max_steps: 5}\n"
            "teacher:\n  train:\n    <<: *train\n    lr: 0.002\n")
    params = load_params(_write(tmp_path, text))
    assert (params.teacher.train.batch_size, params.teacher.train.lr) == (8, 0.002)


def test_a_params_file_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("# r\u00e9sum\u00e9\naugment:\n  p_t: 0.4\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"params.yaml: not UTF-8 text \(byte 0xe9 at offset 3\)"):
        load_params(path)


def test_label_names_are_distinct_and_only_for_classification(tmp_path):
    with pytest.raises(InputError, match=r"task\.label_names: .*repeated: pos"):
        load_params(_write(tmp_path, "task:\n  label_names: [neg, pos, pos]\n"))
    with pytest.raises(InputError, match=r"task: .*label_names is for classification"):
        load_params(_write(tmp_path, "task:\n  task_type: regression\n  metric: pearson\n  label_names: [a, b]\n"))


def test_an_empty_source_is_an_error_not_the_working_folder():
    from tinybert.assets import resolve

    with pytest.raises(InputError, match=r"corpus.source: empty"):
        resolve("", "corpus.source")

def test_unknown_key_names_the_field(tmp_path):
    with pytest.raises(InputError, match=r"augment\.p_threshold: Extra inputs are not permitted"):
        load_params(_write(tmp_path, "augment:\n  p_threshold: 0.4\n"))


def test_out_of_range_value_names_field_and_value(tmp_path):
    with pytest.raises(InputError, match=r"augment\.p_t: .*less than or equal to 1 \(got 1\.5\)"):
        load_params(_write(tmp_path, "augment:\n  p_t: 1.5\n"))


def test_wrong_type_names_field_and_value(tmp_path):
    with pytest.raises(InputError, match=r"teacher\.train\.batch_size: .*\(got 'big'\)"):
        load_params(_write(tmp_path, "teacher:\n  train:\n    batch_size: big\n"))


@pytest.mark.parametrize("field, text", [("augment:\n  workers", "yes"), ("augment:\n  max_examples", "no"),
                                         ("teacher:\n  train:\n    lr", "true"), ("augment:\n  n_aug", "on"),
                                         ("general_distill:\n  mapping", "[yes, 2, 3, 4]"),
                                         ("task_distill:\n  layer_weights", "{3: yes}"),
                                         ("task_distill:\n  layer_weights", "{yes: 0.5}")])
def test_yes_no_true_false_are_refused_for_a_number_rather_than_read_as_1_or_0(tmp_path, field, text):
    where = ".".join(line.strip() for line in field.split(":\n"))
    with pytest.raises(InputError, match=rf"{where}: .*(true|false) is not a value for this field \(YAML reads yes/no/on/off"):
        load_params(_write(tmp_path, f"{field}: {text}\n"))


def test_switches_still_take_true_and_false(tmp_path):
    params = load_params(_write(tmp_path, "task_distill:\n  general_student: no\n  one_step: true\n"))
    assert params.task_distill.general_student is False and params.task_distill.one_step is True


def test_a_number_or_auto_field_names_both_choices_on_one_line(tmp_path):
    assert load_params(_write(tmp_path, "augment:\n  n_aug: auto\n")).augment.n_aug == "auto"
    assert load_params(_write(tmp_path, "teacher:\n  max_seq_len: 128\n")).teacher.max_seq_len == 128
    with pytest.raises(InputError, match=r"params.yaml: augment\.n_aug: .*greater than or equal to 0, or .*'auto' \(got -1\)$"):
        load_params(_write(tmp_path, "augment:\n  n_aug: -1\n"))
    with pytest.raises(InputError, match=r"task_distill\.max_seq_len: .*less than or equal to 512, or .*'auto' \(got 1024\)$"):
        load_params(_write(tmp_path, "task_distill:\n  max_seq_len: 1024\n"))


def test_student_hidden_must_divide_into_heads(tmp_path):
    text = "general_distill:\n  student: {layers: 4, hidden: 310, intermediate: 1200, heads: 12}\n"
    with pytest.raises(InputError, match=r"hidden \(310\) must be a multiple of heads \(12\)"):
        load_params(_write(tmp_path, text))


def test_a_zero_based_mapping_is_refused_in_one_plain_sentence_with_the_value(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_params(_write(tmp_path, "general_distill:\n  mapping: [0, 3, 6, 9]\n"))
    assert str(excinfo.value).endswith(
        "general_distill.mapping: mapping lists teacher layers counted from 1 (got [0, 3, 6, 9])")


@pytest.mark.parametrize("text, message", [
    ("general_distill:\n  student: {layers: 4}\n  mapping: [1, 2, 3]\n",
     "general_distill.mapping: lists 3 teacher layers, the student has 4 (general_distill.student.layers)"),
    ("task_distill:\n  mapping: [1, 2]\n",
     "task_distill.mapping: lists 2 teacher layers, the student has 4 (general_distill.student.layers)"),
    ("objective:\n  mapping: [2, 4, 6]\n",
     "objective.mapping: lists 3 teacher layers, the student has 4 (general_distill.student.layers)"),
    ("task_distill:\n  layer_weights: {6: 2.0, 9: 1.0}\n",
     "task_distill.layer_weights: student layers are 0..5 (0 embeddings, 5 prediction) as the student has 4 "
     "(general_distill.student.layers), got [6, 9]"),
])
def test_settings_that_count_student_layers_are_checked_against_its_shape_on_loading(tmp_path, text, message):
    # task distillation's would otherwise fail only after every stage before it had run
    with pytest.raises(InputError) as excinfo:
        load_params(_write(tmp_path, text))
    assert str(excinfo.value) == f"{tmp_path / 'params.yaml'}: {message}"


def test_a_stage_s_own_mapping_list_is_not_checked_where_objective_mapping_replaces_it(tmp_path):
    text = "objective:\n  mapping: top\ntask_distill:\n  mapping: [1, 2]\n"
    assert load_params(_write(tmp_path, text)).objective.mapping == "top"


@pytest.mark.parametrize("text, message", [
    ("task: {text_b_column: ''}", "task.text_b_column: a column name, not blank"),
    ("task: {text_b_column: text}", "task: text_column and text_b_column are both 'text'"),
    ("task: {label_column: text}", "task: text_column and label_column are both 'text'"),
    ("task: {label_names: [pos]}", "task.label_names: classification needs two or more label names"),
])
def test_task_columns_and_label_names_that_cannot_describe_a_dataset_are_refused_on_loading(tmp_path, text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        load_params(_write(tmp_path, text))


def test_general_distillation_refuses_a_prediction_loss(tmp_path):
    text = "general_distill:\n  weights: {embedding: 1, attention: 1, hidden: 1, prediction: 1}\n"
    with pytest.raises(InputError, match="general distillation never uses the prediction loss"):
        load_params(_write(tmp_path, text))


def test_full_profile_uses_the_reference_task_distillation_hyper_parameters():
    full = load_params(Path(__file__).parents[1] / "profiles" / "full.yaml").task_distill
    for schedule in (full.intermediate, full.prediction):
        assert (schedule.batch_size, schedule.warmup_ratio) == (32, 0.1)
    assert (full.intermediate.lr, full.prediction.lr) == (5e-5, 3e-5)
    assert full.prediction.epochs == 3
    # the reference's length: 64 for the embedded single-sentence task, 128 for pairs
    assert task_defaults.max_seq_len(full.max_seq_len, pairs=False) == 64
    assert task_defaults.max_seq_len(full.max_seq_len, pairs=True) == 128


def test_layer_weights_and_head_fallback_are_validated(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("task_distill:\n  layer_weights: {2: -1.0}\n")
    with pytest.raises(InputError, match="task_distill.layer_weights"):
        load_params(path)
    path.write_text("task_distill:\n  attention_heads: average\n")
    with pytest.raises(InputError, match="task_distill.attention_heads.*'average'"):
        load_params(path)


def test_augment_precision_is_fp32_or_bf16_and_token_budget_has_a_floor(tmp_path):
    assert load_params("params.yaml").augment.precision == "fp32"  # the default is exact Algorithm 1
    with pytest.raises(InputError, match=r"augment\.precision: .*\(got 'fp16'\)"):
        load_params(_write(tmp_path, "augment:\n  precision: fp16\n"))
    with pytest.raises(InputError, match=r"augment\.batch_tokens: .*\(got 100\)"):
        load_params(_write(tmp_path, "augment:\n  batch_tokens: 100\n"))


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", "profiles/full.yaml"])
def test_every_profile_sets_every_parameter_dvc_tracks(profile):
    # DVC refuses to run a stage whose tracked parameter is missing from params.yaml, even
    # when the code has a default for it.
    from tinybert.stages import STAGES

    values = yaml.safe_load(open(profile))
    missing = [name for stage in STAGES for name in stage.params or stage.sections if not _sets(values, name)]
    assert not missing, f"{profile} lacks {missing}"


def _sets(values: dict, dotted: str) -> bool:
    """True when the YAML mapping has the dotted key, an explicit null included."""
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


@pytest.mark.parametrize("text", ["", "# only a comment\n", "null\n", "[]\n", "0\n"])
def test_an_empty_params_file_is_refused_rather_than_read_as_every_default(tmp_path, text):
    # The built-in defaults are not params.yaml's values: a truncated file would start another run.
    with pytest.raises(InputError, match=r"params.yaml: (empty|expected a mapping of sections)"):
        load_params(_write(tmp_path, text))


@pytest.mark.parametrize("field", ["task:\n  seed", "augment:\n  seed", "teacher:\n  train:\n    seed"])
@pytest.mark.parametrize("value", ["-1", "4294967296"])
def test_a_seed_outside_the_generators_range_names_the_field(tmp_path, field, value):
    with pytest.raises(InputError, match=rf"seed: .*\(got {value}\)"):
        load_params(_write(tmp_path, f"{field}: {value}\n"))


@pytest.mark.parametrize("text", ["teacher:\n  train:\n    epochs: .inf", "task_distill:\n  temperature: .inf",
                                  "task_distill:\n  layer_weights: {1: .nan}"])
def test_infinite_and_nan_numbers_are_refused(tmp_path, text):
    with pytest.raises(InputError, match="finite"):
        load_params(_write(tmp_path, text + "\n"))


def test_general_distillation_weights_given_in_part_leave_the_prediction_loss_off(tmp_path):
    params = load_params(_write(tmp_path, "general_distill:\n  weights:\n    attention: 2\n"))
    assert params.general_distill.weights.prediction == 0
    assert params.general_distill.weights.attention == 2 and params.general_distill.weights.hidden == 1


def test_evaluation_scores_at_the_length_the_models_were_trained_at_unless_set(tmp_path):
    assert load_params("params.yaml").evaluate.max_seq_len == "auto"
    assert task_defaults.max_seq_len(load_params("params.yaml").evaluate.max_seq_len, pairs=True) == 128
    assert load_params(_write(tmp_path, "evaluate:\n  max_seq_len: 96\n")).evaluate.max_seq_len == 96
