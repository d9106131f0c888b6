"""The teacher stage given a classifier already fine-tuned on the task (teacher.model): it is the
teacher as it is, once its labels fit the task and its word pieces are the backbone's."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

from tinybert import teacher
from tinybert.config import BackboneConfig, TeacherConfig
from tinybert.errors import InputError

# Words of the tokenizers' probes among them, so that a casing difference changes word pieces.
PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "good", "bad", "hello", ",", "world", "!"]
SMALL = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def saved(folder, model, pieces=PIECES, **tokenizer):
    model.save_pretrained(folder)
    BertTokenizerFast(vocab={piece: i for i, piece in enumerate(pieces)}, **tokenizer).save_pretrained(folder)
    return folder


def classifier(folder, num_labels=2, id2label=None, pieces=PIECES, **tokenizer):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(pieces), num_labels=num_labels, **SMALL)
    if id2label is not None:
        config.id2label = dict(enumerate(id2label))
        config.label2id = {name: i for i, name in enumerate(id2label)}
    return saved(folder, BertForSequenceClassification(config), pieces, **tokenizer)


@pytest.fixture
def backbone(tmp_path):
    torch.manual_seed(1)
    return saved(tmp_path / "backbone", BertModel(BertConfig(vocab_size=len(PIECES), **SMALL)), model_max_length=24)


def task_dir(tmp_path, label_names=("neg", "pos")):
    folder = tmp_path / "task"
    folder.mkdir()
    regression = label_names is None
    labels = {"task_type": "regression" if regression else "classification",
              "label_names": None if regression else list(label_names),
              "num_labels": 1 if regression else len(label_names)}
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder


def take(tmp_path, backbone, model, **task):
    out = tmp_path / "teacher_out"
    teacher.run(BackboneConfig(model=str(backbone)), TeacherConfig(model=str(model)),
                task_dir=task_dir(tmp_path, **task), out_dir=out)
    return out


def refused(tmp_path, backbone, model, *fragments, **task):
    with pytest.raises(InputError) as caught:
        take(tmp_path, backbone, model, **task)
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in ("teacher.model", *fragments)), message
    assert not (tmp_path / "teacher_out").exists()  # no half-written teacher
    return message


def test_a_fine_tuned_classifier_is_published_as_the_teacher_unchanged(tmp_path, backbone):
    model = classifier(tmp_path / "sst2", id2label=["NEG", "POS"])
    out = take(tmp_path, backbone, model)
    given, published = load_file(model / "model.safetensors"), load_file(out / "model.safetensors")
    assert published.keys() == given.keys()
    for name, weight in given.items():
        assert torch.equal(published[name], weight), name
    assert BertForSequenceClassification.from_pretrained(out).config.id2label == {0: "neg", 1: "pos"}  # the task's names
    report = json.loads((out / "training.json").read_text())
    assert report == {"fine_tuned_here": False, "source": str(model)}
    assert not list(out.glob("*.csv"))  # no training, no loss curve
    # with the backbone's tokenizer, which the general student learnt, its settings included
    assert BertTokenizerFast.from_pretrained(out).model_max_length == 24


def logits(folder, ids=((2, 5, 6, 3), (2, 7, 8, 3))):
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits


def test_the_same_classes_in_another_order_are_put_in_the_tasks_order(tmp_path, backbone):
    # an MNLI teacher trained on `datasets`' order, for the reference's order of the classes
    model = classifier(tmp_path / "mnli", num_labels=3, id2label=["entailment", "neutral", "contradiction"])
    out = take(tmp_path, backbone, model, label_names=("contradiction", "entailment", "neutral"))
    assert torch.equal(logits(out), logits(model)[:, [2, 0, 1]])
    assert json.loads((out / "training.json").read_text())["outputs_reordered_from"] == [
        "entailment", "neutral", "contradiction"]


def test_classes_numbered_on_both_sides_are_matched_by_number(tmp_path, backbone):
    model = classifier(tmp_path / "m", id2label=["1", "0"])
    out = take(tmp_path, backbone, model, label_names=("0", "1"))
    assert torch.equal(logits(out), logits(model)[:, [1, 0]])


@pytest.mark.parametrize("model_names, task_names", [
    (None, ("neg", "pos")),  # transformers' LABEL_0, LABEL_1
    (["negative", "positive"], ("0", "1")),  # a task labelled by numbers names its classes by index
    (["0", "1"], ("neg", "pos")),
])
def test_classes_named_on_one_side_only_are_taken_by_index(tmp_path, backbone, model_names, task_names):
    model = classifier(tmp_path / "m", id2label=model_names)
    out = take(tmp_path, backbone, model, label_names=task_names)
    assert torch.equal(logits(out), logits(model))
    assert BertForSequenceClassification.from_pretrained(out).config.id2label == dict(enumerate(task_names))


def test_a_regression_model_teaches_a_regression_task(tmp_path, backbone):
    out = take(tmp_path, backbone, classifier(tmp_path / "stsb", num_labels=1), label_names=None)
    assert BertForSequenceClassification.from_pretrained(out).config.problem_type == "regression"


def test_a_classifier_with_another_number_of_labels_is_refused(tmp_path, backbone):
    refused(tmp_path, backbone, classifier(tmp_path / "mnli", num_labels=3), "predicts 3 labels",
            "the task has 2 labels (neg, pos)")


def test_a_classifier_of_other_classes_is_refused_naming_both(tmp_path, backbone):
    refused(tmp_path, backbone, classifier(tmp_path / "m", id2label=["spam", "ham"]),
            "['spam', 'ham']", "['negative', 'positive']", "must predict the task's classes",
            label_names=("negative", "positive"))


def test_a_model_with_another_vocabulary_than_the_backbone_is_refused(tmp_path, backbone):
    other = [*PIECES[:5], "hello", "world", "the", "cat"]
    refused(tmp_path, backbone, classifier(tmp_path / "m", pieces=other), "does not split words as backbone.model")


def test_a_model_that_keeps_case_is_refused_for_a_lowercasing_backbone(tmp_path, backbone):
    # same vocabulary, but "Hello" stays unknown where the backbone reads "hello"
    refused(tmp_path, backbone, classifier(tmp_path / "cased", do_lower_case=False),
            "does not split words as backbone.model")


def test_an_encoder_without_a_classification_head_is_refused(tmp_path, backbone):
    refused(tmp_path, backbone, backbone, "lacks", "classifier")
