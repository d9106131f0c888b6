"""Loading models: whatever dtype a folder stores, the pipeline trains and runs fp32 weights."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertModel,
)

from tinybert.augment.stage import load_mlm
from tinybert.errors import InputError
from tinybert.models import NEW_MLM_HEAD, load_classifier, load_encoder, load_pretrained, load_tokenizer


def test_a_model_folder_saved_in_half_precision_loads_with_fp32_weights(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    saved = BertForMaskedLM(config).to(torch.float16)
    saved.save_pretrained(tmp_path)
    # A vocabulary of its own: the test needs no installed asset (it also runs on a bare GPU machine).
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]
    BertTokenizerFast(vocab={piece: i for i, piece in enumerate(pieces)}).save_pretrained(tmp_path)

    mlm, _ = load_mlm(tmp_path)
    for model in (mlm, load_encoder(tmp_path), load_classifier(tmp_path, num_labels=2)):
        assert {p.dtype for p in model.parameters()} == {torch.float32}, type(model).__name__
    # the values are the saved ones, widened
    assert torch.equal(mlm.bert.embeddings.word_embeddings.weight, saved.bert.embeddings.word_embeddings.weight.float())


PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]
SMALL = dict(vocab_size=len(PIECES), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def saved(folder, model, *, tokenizer: bool = True):
    model.save_pretrained(folder)
    if tokenizer:
        BertTokenizerFast(vocab={piece: i for i, piece in enumerate(PIECES)}).save_pretrained(folder)
    return folder


def refused(call, *fragments: str) -> str:
    with pytest.raises(InputError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


def test_a_folder_saved_without_its_tokenizer_is_refused_instead_of_reading_every_word_as_unk(tmp_path):
    folder = saved(tmp_path, BertModel(BertConfig(**SMALL)), tokenizer=False)
    refused(lambda: load_tokenizer(folder, "backbone.model"), "backbone.model", str(folder), "no tokenizer vocabulary")


def test_a_checkpoint_of_another_architecture_is_refused_instead_of_loading_random_weights(tmp_path):
    other = DistilBertModel(DistilBertConfig(vocab_size=len(PIECES), dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    folder = saved(tmp_path, other)
    refused(lambda: load_encoder(folder, "backbone.model"), "backbone.model", str(folder), "'distilbert'", "BERT")


def test_weights_of_other_sizes_are_refused(tmp_path):
    folder = saved(tmp_path, BertModel(BertConfig(**SMALL)))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    refused(lambda: load_encoder(folder, "backbone.model"), "backbone.model", "shapes differ from its config.json")


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_an_unreadable_weights_file_is_refused(tmp_path, weights_file):
    folder = saved(tmp_path, BertModel(BertConfig(**SMALL)))
    (folder / "model.safetensors").unlink()
    # what a clone without git-lfs holds in place of the weights
    (folder / weights_file).write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    refused(lambda: load_classifier(folder, num_labels=2, what="teacher"), "teacher", "cannot load")


def test_a_config_without_model_type_as_converted_bert_checkpoints_have_is_accepted(tmp_path):
    folder = saved(tmp_path, BertModel(BertConfig(**SMALL)))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "model_type"}))
    assert load_encoder(folder, "backbone.model").config.hidden_size == 16


def test_a_classifier_with_another_number_of_classes_gets_a_new_head_as_a_backbone(tmp_path):
    folder = saved(tmp_path, BertForSequenceClassification(BertConfig(**SMALL, num_labels=3)))
    model = load_classifier(folder, num_labels=2, what="backbone.model")
    assert model.classifier.out_features == 2 and model.config.num_labels == 2


def test_a_masked_lm_without_its_head_is_refused_but_the_mlm_stage_may_add_one_to_an_encoder(tmp_path):
    folder = saved(tmp_path, BertModel(BertConfig(**SMALL)))
    refused(lambda: load_mlm(folder), str(folder), "lacks", "cls.predictions")
    refused(lambda: load_pretrained(BertForMaskedLM, folder, what="mlm.model"), "mlm.model")
    assert load_pretrained(BertForMaskedLM, folder, what="backbone.model", new=NEW_MLM_HEAD) is not None


def test_a_trained_classifier_must_have_its_head_while_an_encoder_gets_a_new_one(tmp_path):
    folder = saved(tmp_path, BertModel(BertConfig(**SMALL)))
    assert load_classifier(folder, num_labels=3, what="general student").num_labels == 3
    refused(lambda: load_classifier(folder, what="student"), "student", "classifier")
