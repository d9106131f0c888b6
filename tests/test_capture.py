import copy

import torch
from transformers import BertForSequenceClassification, BertModel

from tinybert.capture import enable_capture, forward_features


def _pair(config, cls=BertForSequenceClassification):
    torch.manual_seed(0)
    reference = cls(copy.deepcopy(config)).eval()
    captured = cls(copy.deepcopy(config)).eval()
    captured.load_state_dict(reference.state_dict())
    return reference, enable_capture(captured)


def test_softmax_of_captured_scores_equals_the_models_attention_probabilities(tiny_bert_config, padded_batch):
    reference, captured = _pair(tiny_bert_config)
    reference.set_attn_implementation("eager")
    probs = reference(**padded_batch, output_attentions=True).attentions
    features = forward_features(captured, padded_batch)
    assert len(features.scores) == tiny_bert_config.num_hidden_layers
    for scores, p in zip(features.scores, probs):
        assert torch.allclose(torch.softmax(scores, dim=-1), p, atol=1e-6)


def test_captured_scores_are_pre_softmax_with_padding_masked(tiny_bert_config, padded_batch):
    _, captured = _pair(tiny_bert_config)
    scores = forward_features(captured, padded_batch).scores[0]
    # sequence 2 has two real tokens: keys 2.. carry the additive mask, the rest do not
    assert (scores[2, :, :, 2:] < -1e30).all()
    assert (scores[2, :, :, :2].abs() < 100).all()
    # rows are not probabilities
    assert not torch.allclose(scores[0].sum(-1), torch.ones_like(scores[0].sum(-1)))


def test_capturing_leaves_the_outputs_of_the_default_implementation_unchanged(tiny_bert_config, padded_batch):
    reference, captured = _pair(tiny_bert_config)
    assert reference.config._attn_implementation == "sdpa"
    expected = reference(**padded_batch)
    features = forward_features(captured, padded_batch)
    assert torch.allclose(features.logits, expected.logits, atol=1e-5)


def test_capture_returns_embedding_output_and_every_hidden_state(tiny_bert_config, padded_batch):
    reference, captured = _pair(tiny_bert_config, BertModel)
    expected = reference(**padded_batch, output_hidden_states=True).hidden_states
    features = forward_features(captured, padded_batch)
    assert len(features.hidden) == tiny_bert_config.num_hidden_layers + 1
    for got, want in zip(features.hidden, expected):
        assert torch.allclose(got, want, atol=1e-5)


def test_prediction_only_forward_skips_intermediate_features(tiny_bert_config, padded_batch):
    _, captured = _pair(tiny_bert_config)
    features = forward_features(captured, padded_batch, intermediate=False)
    assert features.hidden == () and features.scores == ()
    assert features.logits.shape == (3, 2)
