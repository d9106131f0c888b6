"""The GPU path: the same training loop, distillation objective and MLM candidates run on CUDA.

Skipped where no CUDA GPU is visible (CI has none); on a GPU machine run
``pytest tests/test_gpu.py``. The CPU tests cover the same code; these check what only a GPU
shows: device placement, autocast in bf16 and fp16 with loss scaling, the CUDA RNG in
checkpoints, and that GPU arithmetic does not change the results the CPU gives.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

from tests.training_helpers import fit
from tinybert.augment.glove import GloveNeighbours
from tinybert.augment.mlm import MlmCandidates, build_mlm_input, sentence_pieces
from tinybert.batching import Encoded
from tinybert.capture import enable_capture
from tinybert.config import LossWeights, TrainSchedule
from tinybert.distill.loop import distill
from tinybert.distill.matches import build_matches
from tinybert.distill.objective import DistillationObjective
from tinybert.training import INTERRUPT_ENV, BatchSource, SimulatedInterruption

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

WORDS = ("the a film movie cast story plot actor scene good bad great dull witty clumsy long short "
         "funny sad and but not is was very too it this that of to in with").split()


def _toy(dropout: float = 0.0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(dropout), torch.nn.Linear(16, 1))
    x = torch.randn(48, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(-1, keepdim=True)
    return model, BatchSource(48, lambda idx: {"x": x[idx], "y": y[idx]})


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_loop_learns_on_the_gpu_in_every_precision(tmp_path, precision):
    model, source = _toy()
    schedule = TrainSchedule(epochs=15, batch_size=8, lr=0.02, device="cuda", precision=precision,
                             checkpoint_every=1000, log_every=1000)
    log = fit(model, source, tmp_path, schedule)
    assert log[-1]["loss"] < 0.2 * log[0]["loss"]
    # Trained weights come back to the CPU, where the stages save them.
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_interrupted_gpu_training_resumes_with_the_same_curve(tmp_path, monkeypatch, precision):
    # Dropout draws from the CUDA generator: the checkpoint must carry its state, and in fp16
    # the loss scaler's.
    schedule = TrainSchedule(epochs=2, batch_size=6, lr=0.05, device="cuda", precision=precision,
                             checkpoint_every=2, log_every=1)
    straight, source = _toy(0.3)
    straight_log = fit(straight, source, tmp_path / "straight", schedule)

    monkeypatch.setenv(INTERRUPT_ENV, "5")
    with pytest.raises(SimulatedInterruption):
        model, source = _toy(0.3)
        fit(model, source, tmp_path / "resumed", schedule)
    monkeypatch.delenv(INTERRUPT_ENV)
    saved = torch.load(tmp_path / "resumed" / "state.pt", weights_only=False)
    assert ("scale" in saved["scaler"]) == (precision == "fp16")
    assert saved["rng"][0]["cuda"] is not None
    resumed, source = _toy(0.3)
    resumed_log = fit(resumed, source, tmp_path / "resumed", schedule)

    assert [r["loss"] for r in resumed_log] == pytest.approx([r["loss"] for r in straight_log], rel=1e-5)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def _bert(layers: int, hidden: int, seed: int) -> BertModel:
    torch.manual_seed(seed)
    # No dropout: the CPU and the GPU draw different masks from their own generators.
    config = BertConfig(vocab_size=200, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return enable_capture(BertModel(config, add_pooling_layer=False))


def _general_distillation(tmp_path, device: str, precision: str) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 24, (32,), generator=generator).tolist()
    data = Encoded([torch.randint(5, 200, (n,), generator=generator).tolist() for n in lengths],
                   [[0] * n for n in lengths], [0] * len(lengths))
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=False)
    torch.manual_seed(1)
    objective = DistillationObjective(matches, 32, 64, student_heads=4, teacher_heads=4)
    schedule = TrainSchedule(max_steps=6, batch_size=8, lr=1e-3, device=device, precision=precision,
                             checkpoint_every=1000, log_every=1000)
    return distill(name="gd", student=_bert(2, 32, seed=2), teacher=_bert(4, 64, seed=3), objective=objective,
                   batches=BatchSource(len(data), lambda idx: data.collate(idx)), schedule=schedule,
                   checkpoint_to=tmp_path / f"{device}-{precision}")


def test_general_distillation_on_the_gpu_follows_the_cpu_run(tmp_path):
    cpu = _general_distillation(tmp_path, "cpu", "fp32")
    gpu = _general_distillation(tmp_path, "cuda", "fp32")
    assert [r["loss"] for r in gpu] == pytest.approx([r["loss"] for r in cpu], rel=1e-3)
    for precision in ("bf16", "fp16"):
        half = _general_distillation(tmp_path, "cuda", precision)
        assert half[0]["loss"] == pytest.approx(cpu[0]["loss"], rel=0.05), precision
        assert half[-1]["loss"] < half[0]["loss"], precision


def _near_tie(scores: torch.Tensor, k: int, gap: float = 1e-5) -> bool:
    """Whether two of the k+1 best scores (exact, float64) are closer than ``gap``: there the
    GPU's and the CPU's float32 sums may legitimately order the candidates differently."""
    best = torch.topk(scores, k + 1).values
    return bool((best[:-1] - best[1:]).min() < gap)


def _tokenizer() -> BertTokenizerFast:
    # Built here, not loaded: a GPU machine may lack the embedded assets. (transformers 5 takes
    # the vocabulary as ``vocab``; a ``vocab_file`` argument is ignored and leaves 5 tokens.)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ly"]
    return BertTokenizerFast(vocab={piece: i for i, piece in enumerate(pieces)})


def test_mlm_candidates_on_the_gpu_equal_the_cpu_ones():
    tokenizer = _tokenizer()
    assert len(tokenizer) == len(WORDS) + 7
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64)).eval()
    sentences = [s.split() for s in ("the film was very dull", "a witty and funny story but too long",
                                     "this actor is good", "the plot of the movie is not great")]
    targets = [list(range(len(words))) for words in sentences]
    cpu = MlmCandidates(model, tokenizer, k=8, batch_size=3).candidates(sentences, targets)
    gpu = MlmCandidates(model, tokenizer, k=8, batch_size=3, device="cuda").candidates(sentences, targets)
    assert sum(len(found) for found in cpu) == sum(len(t) for t in targets)
    assert all(len(words) >= 4 for found in cpu for words in found.values())  # real word pieces, few '##'
    exact = copy.deepcopy(model).cpu().double()  # MlmCandidates moved the model itself to the GPU
    special = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, mask_id=tokenizer.mask_token_id)
    compared = 0
    for s, layout in enumerate(sentence_pieces(tokenizer, sentences)):
        for w, (piece,) in enumerate(layout.word_pieces):
            ids, types = build_mlm_input(layout.ids, piece, **special)
            with torch.inference_mode():
                logits = exact(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0, 1 + piece]
            if not _near_tie(logits, 8):
                assert gpu[s][w] == cpu[s][w], (sentences[s], w)
                compared += 1
    assert compared >= 0.8 * sum(len(t) for t in targets)


def test_glove_neighbours_on_the_gpu_equal_the_cpu_ones():
    words = [f"w{i}" for i in range(3000)]
    kv = KeyedVectors(vector_size=20, dtype=np.float32)
    kv.add_vectors(words, np.random.default_rng(0).standard_normal((3000, 20)).astype(np.float32))
    asked = words[::7]
    cpu = GloveNeighbours(kv, k=15, batch_size=64).neighbours(asked)
    gpu = GloveNeighbours(kv, k=15, batch_size=64, device="cuda").neighbours(asked)
    unit = torch.nn.functional.normalize(torch.from_numpy(kv.vectors).double(), dim=1)
    compared = 0
    for word in asked:
        row = kv.key_to_index[word]
        scores = unit @ unit[row]
        scores[row] = -2.0  # the word itself is never its own neighbour
        if not _near_tie(scores, 15):
            assert gpu[word] == cpu[word], word
            compared += 1
    assert compared >= 0.8 * len(asked)
