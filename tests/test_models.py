"""Loading models: whatever dtype a folder stores, the pipeline trains and runs fp32 weights."""
from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from tinybert.augment.stage import load_mlm
from tinybert.models import load_classifier, load_encoder


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
