import numpy as np
import pytest
import torch

from tinybert.augment.mlm import MlmCandidates, PairInputs, build_mlm_input, sentence_pieces
from tinybert.augment.words import basic_words

from .conftest import make_mlm

SENTENCES = [
    "The cat sat on the unbelievably soft mat.",
    "Héllo, World! It's $3.50 for a zyxqv, isn't it?",
    "A dog.",
    "",
    "Paris is the capital of France and home to the Louvre museum.",
]


@pytest.mark.parametrize("text", SENTENCES)
def test_pieces_of_basic_words_equal_pieces_of_whole_sentence(tokenizer, text):
    (layout,) = sentence_pieces(tokenizer, [basic_words(tokenizer, text)])
    assert layout.ids == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_word_pieces_map_back_to_basic_words(tokenizer):
    words = basic_words(tokenizer, "the unbelievably soft cat")
    (layout,) = sentence_pieces(tokenizer, [words])
    assert [len(p) for p in layout.word_pieces] == [1, 5, 1, 1]  # un ##bel ##ie ##va ##bly
    assert layout.word_pieces[2] == [6]


def test_mlm_input_is_masked_copy_then_original_with_segments():
    ids, types = build_mlm_input([11, 12, 13], 1, cls_id=1, sep_id=2, mask_id=9)
    assert ids == [1, 11, 9, 13, 2, 11, 12, 13, 2]
    assert types == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_mlm_input_is_truncated_at_512():
    ids, types = build_mlm_input(list(range(100, 400)), 0, cls_id=1, sep_id=2, mask_id=9)
    assert len(ids) == len(types) == 512
    assert ids[:3] == [1, 9, 101] and types[301] == 0 and types[302] == 1


def test_batched_pair_inputs_equal_build_mlm_input_row_by_row():
    sentences = [[11, 12, 13], [21, 22], list(range(100, 400))]
    pairs = PairInputs(sentences, cls_id=1, sep_id=2, mask_id=9, pad_id=0)
    asked = [(0, 1), (2, 0), (1, 1), (2, 250), (0, 1)]
    for _ in range(2):  # a batch leaves the sentences' layouts as they were
        inputs, positions = pairs.batch(np.array([s for s, _ in asked]), np.array([p for _, p in asked]))
        width = inputs["input_ids"].shape[1]
        assert width == 512
        for row, (s, piece) in enumerate(asked):
            ids, types = build_mlm_input(sentences[s], piece, cls_id=1, sep_id=2, mask_id=9)
            padding = width - len(ids)
            assert inputs["input_ids"][row].tolist() == ids + [0] * padding
            assert inputs["token_type_ids"][row].tolist() == types + [0] * padding
            assert inputs["attention_mask"][row].tolist() == [1] * len(ids) + [0] * padding
            assert positions[row] == piece + 1


def test_single_piece_word_gets_mlm_candidates(tokenizer):
    model = make_mlm(tokenizer, {"dog": 100.0, "bird": 90.0, "fish": 80.0})
    mlm = MlmCandidates(model, tokenizer, k=3, batch_size=8)
    words = basic_words(tokenizer, "the cat sat")
    assert mlm.candidates([words], [[1, 2]]) == [{1: ["dog", "bird", "fish"], 2: ["dog", "bird", "fish"]}]


def test_multi_piece_word_gets_no_mlm_candidates(tokenizer):
    mlm = MlmCandidates(make_mlm(tokenizer), tokenizer, k=3, batch_size=8)
    words = basic_words(tokenizer, "the unbelievably soft cat")
    assert mlm.candidates([words], [[1, 3]])[0].keys() == {3}


def test_word_piece_candidates_are_dropped_so_sets_can_be_smaller_than_k(tokenizer):
    model = make_mlm(tokenizer, {"##ing": 100.0, "dog": 90.0, "##s": 80.0})
    mlm = MlmCandidates(model, tokenizer, k=3, batch_size=8)
    assert mlm.candidates([["the", "cat"]], [[1]]) == [{1: ["dog"]}]


def test_model_sees_masked_sentence_then_original_with_segment_ids(tokenizer):
    model = make_mlm(tokenizer)
    seen = []
    model.bert.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs), with_kwargs=True)
    mlm = MlmCandidates(model, tokenizer, k=3, batch_size=8)
    mlm.candidates([["the", "cat", "sat"], ["a", "dog"]], [[1], [1]])
    batch = seen[0]
    cls, sep, mask = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    the, cat, sat, a, dog = tokenizer.convert_tokens_to_ids(["the", "cat", "sat", "a", "dog"])
    pad = tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [
        [cls, the, mask, sat, sep, the, cat, sat, sep],  # longest first
        [cls, a, mask, sep, a, dog, sep, pad, pad],
    ]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 0, 0]]
    # As the (batch, 1, query, key) mask transformers builds from the padding: every query sees the row's tokens.
    assert batch["attention_mask"].shape == (2, 1, 9, 9)
    assert batch["attention_mask"][:, 0].tolist() == [[[True] * 9] * 9, [[True] * 7 + [False] * 2] * 9]


def test_lm_head_runs_only_at_masked_positions(tokenizer):
    model = make_mlm(tokenizer)
    rows = []
    model.cls.register_forward_hook(lambda mod, args, out: rows.append(out.shape[0]))
    MlmCandidates(model, tokenizer, k=3, batch_size=8).candidates([["the", "cat", "sat", "down"]], [[1, 2, 3]])
    assert rows == [3]


def test_mlm_forwards_run_under_inference_mode_without_gradients(tokenizer):
    model = make_mlm(tokenizer)
    modes = []
    model.bert.register_forward_hook(
        lambda mod, args, out: modes.append((torch.is_inference_mode_enabled(), out.last_hidden_state.requires_grad)))
    MlmCandidates(model, tokenizer, k=3, batch_size=2).candidates([["the", "cat", "sat", "down"]], [[1, 2, 3]])
    assert modes == [(True, False), (True, False)]  # two batches of at most 2 inputs


def test_masked_logits_equal_full_model_logits(tokenizer):
    model = make_mlm(tokenizer)
    words = ["the", "cat", "sat"]
    (layout,) = sentence_pieces(tokenizer, [words])
    ids, types = build_mlm_input(layout.ids, 1, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
                                 mask_id=tokenizer.mask_token_id)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0, 2]
    expected = [t for t in tokenizer.convert_ids_to_tokens(torch.topk(logits, 15).indices.tolist())
                if not t.startswith("##")]
    assert MlmCandidates(model, tokenizer, k=15, batch_size=8).candidates([words], [[1]]) == [{1: expected}]


def test_batching_does_not_change_candidates(tokenizer):
    model = make_mlm(tokenizer)
    sentences = [basic_words(tokenizer, s) for s in SENTENCES]
    targets = [list(range(len(words))) for words in sentences]
    one = MlmCandidates(model, tokenizer, k=15, batch_size=1).candidates(sentences, targets)
    many = MlmCandidates(model, tokenizer, k=15, batch_size=64).candidates(sentences, targets)
    alone = [MlmCandidates(model, tokenizer, k=15, batch_size=64).candidates([s], [t])[0]
             for s, t in zip(sentences, targets)]
    assert one == many == alone
    assert sum(len(found) for found in one) > 20


def test_single_piece_pushed_past_512_keeps_no_candidates(tokenizer):
    words = ["cat"] * 600  # the input is cut at 512, inside the masked copy
    mlm = MlmCandidates(make_mlm(tokenizer), tokenizer, k=3, batch_size=64)
    (found,) = mlm.candidates([words], [[0, 510, 511]])
    assert found[511] == [] and len(found[510]) > 0 and len(found[0]) > 0


def test_token_budget_caps_padded_tokens_per_forward_without_changing_candidates(tokenizer):
    model = make_mlm(tokenizer)
    sentences = [basic_words(tokenizer, s) for s in SENTENCES]
    targets = [list(range(len(words))) for words in sentences]
    capped = MlmCandidates(model, tokenizer, k=15, batch_size=64, batch_tokens=64)
    shapes = []
    model.bert.register_forward_pre_hook(lambda mod, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                         with_kwargs=True)
    found = capped.candidates(sentences, targets)
    capped_shapes = list(shapes)
    assert found == MlmCandidates(model, tokenizer, k=15, batch_size=64).candidates(sentences, targets)
    assert len(capped_shapes) > 2
    # Every forward holds at most 64 padded tokens, unless one input alone is longer.
    assert all(rows * length <= 64 or rows == 1 for rows, length in capped_shapes)


def test_bf16_precision_still_predicts_the_clear_favourites(tokenizer):
    # bf16 may reorder near-tied scores, never a clear winner: the favourites lead either way.
    model = make_mlm(tokenizer, {"dog": 100.0, "bird": 90.0})
    words = basic_words(tokenizer, "the cat sat down")
    fp32 = MlmCandidates(model, tokenizer, k=4, batch_size=8).candidates([words], [[1, 2]])
    bf16 = MlmCandidates(model, tokenizer, k=4, batch_size=8, precision="bf16").candidates([words], [[1, 2]])
    for found in (fp32, bf16):
        assert found[0][1][:2] == ["dog", "bird"] and found[0][2][:2] == ["dog", "bird"]
        assert all(len(c) <= 4 for c in found[0].values())


def test_unknown_mlm_precision_is_refused(tokenizer):
    with pytest.raises(ValueError, match="precision"):
        MlmCandidates(make_mlm(tokenizer), tokenizer, k=3, batch_size=8, precision="fp8")


@pytest.mark.parametrize("sentences", [[["the", "cat", "sat", "down"], ["a", "dog"]], [["the", "cat"], ["a", "dog"]]],
                         ids=["padded", "unpadded"])
def test_the_mask_handed_to_bert_gives_the_same_states_as_the_padding_mask(tokenizer, sentences):
    model = make_mlm(tokenizer).eval()
    seen = []
    model.bert.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
    MlmCandidates(model, tokenizer, k=3, batch_size=8).candidates(sentences, [[1], [1]])
    given = seen[0]
    if given.get("attention_mask") is None:  # no padding: no mask, as transformers itself decides
        padding = torch.ones_like(given["input_ids"])
    else:
        padding = given["attention_mask"][:, 0, 0].long()
    with torch.inference_mode():
        assert torch.equal(model.bert(**given).last_hidden_state,
                           model.bert(**{**given, "attention_mask": padding}).last_hidden_state)


def test_bf16_candidates_on_a_cpu_that_would_emulate_bf16_say_so_once(tokenizer, monkeypatch, capsys):
    from tinybert import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    runtime.warn_if_bf16_is_emulated.cache_clear()
    try:
        for _ in range(2):  # a model per shard in one worker
            MlmCandidates(make_mlm(tokenizer), tokenizer, k=3, batch_size=8, precision="bf16")
        MlmCandidates(make_mlm(tokenizer), tokenizer, k=3, batch_size=8)
    finally:
        runtime.warn_if_bf16_is_emulated.cache_clear()
    assert [line[:26] for line in capsys.readouterr().err.splitlines()] == ["warning: precision bf16 on"]
