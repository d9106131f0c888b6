"""Stage mlm: the masked language model that proposes augmentation candidates.

A user-supplied ``AutoModelForMaskedLM`` folder is used as it is (only evaluated). Otherwise a
``BertForMaskedLM`` is built on the backbone encoder, its decoder tied to the word embeddings,
and the whole model is trained briefly on the corpus: training the new head alone on a frozen
encoder leaves it predicting function words (assets.md), so the encoder learns too, at a lower
learning rate than the freshly initialised head.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, BertForMaskedLM

from tinybert.batching import Encoded, encode_corpus
from tinybert.config import BackboneConfig, MlmConfig
from tinybert.io import content_sha256, read_manifest
from tinybert.models import NEW_MLM_HEAD, load_pretrained, load_tokenizer, model_dir, publish_trained_model
from tinybert.training import BatchSource, checkpoint_dir, seed_everything, train

IGNORE = -100


def mask_tokens(batch: dict, tokenizer, mask_prob: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: choose ``mask_prob`` of the real tokens; 80% -> [MASK], 10% random, 10% kept.

    Returns (masked input ids, labels with IGNORE everywhere but the chosen positions).
    """
    ids = batch["input_ids"].clone()
    special = torch.tensor(
        [tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True) for row in ids.tolist()], dtype=torch.bool
    )
    eligible = batch["attention_mask"].bool() & ~special
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & eligible
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = torch.rand(ids.shape, generator=generator)
    ids[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[swap] = random_ids[swap]
    return ids, labels


def masked_lm_loss(model, batch: dict, ids: torch.Tensor, labels: torch.Tensor):
    """Cross-entropy at the masked positions only: the vocabulary projection is the costly part."""
    hidden = model.base_model(input_ids=ids, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]).last_hidden_state
    where = labels != IGNORE
    logits = model.cls(hidden[where]) if hasattr(model, "cls") else model.get_output_embeddings()(hidden[where])
    return torch.nn.functional.cross_entropy(logits, labels[where]), logits.argmax(-1) == labels[where]


@torch.no_grad()
def masked_token_accuracy(model, data: Encoded, tokenizer, mask_prob: float, seed: int, batch_size: int = 64) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    hits = total = 0
    for start in range(0, len(data), batch_size):
        batch = data.collate(list(range(start, min(start + batch_size, len(data)))), pad_id=tokenizer.pad_token_id)
        ids, labels = mask_tokens(batch, tokenizer, mask_prob, generator)
        if (labels != IGNORE).any():
            _, correct = masked_lm_loss(model, batch, ids, labels)
            hits += int(correct.sum())
            total += correct.numel()
    return hits / max(total, 1)


def run(backbone: BackboneConfig, cfg: MlmConfig, *, corpus_dir: Path, out_dir: Path) -> None:
    seed_everything(cfg.train.seed)
    source = cfg.model or backbone.model
    what = "mlm.model" if cfg.model else "backbone.model"
    tokenizer = load_tokenizer(source, what)
    corpus = encode_corpus(corpus_dir, cfg.max_seq_len)
    n_eval = min(cfg.eval_sequences, max(1, len(corpus) // 5))
    # Held-out text: the last sequences of the corpus, never trained on.
    held_out = Encoded(corpus.input_ids[-n_eval:])
    train_part = Encoded(corpus.input_ids[:-n_eval])
    report: dict = {"source": source, "held_out_sequences": n_eval, "mask_prob": cfg.mask_prob}
    ckpt = checkpoints_for(cfg, backbone, corpus_dir)  # hashes the backbone folder: once per run

    if cfg.model:
        model = load_pretrained(AutoModelForMaskedLM, model_dir(cfg.model, "mlm.model"), what="mlm.model")
        log = []
    else:
        model = load_pretrained(BertForMaskedLM, model_dir(backbone.model, "backbone.model"), what="backbone.model",
                                new=NEW_MLM_HEAD)
        model.tie_weights()
        report["accuracy_before"] = masked_token_accuracy(model, held_out, tokenizer, cfg.mask_prob, cfg.train.seed)
        print(f"[mlm] masked-token accuracy before training: {report['accuracy_before']:.3f}", file=sys.stderr)
        log = _train(model, tokenizer, train_part, cfg, ckpt)
    report["accuracy"] = masked_token_accuracy(model, held_out, tokenizer, cfg.mask_prob, cfg.train.seed)
    print(f"[mlm] masked-token accuracy on held-out corpus text: {report['accuracy']:.3f}", file=sys.stderr)

    logs = {"train_log": log} if log else {}
    publish_trained_model(out_dir, model, tokenizer, logs, report, ckpt)


def checkpoints_for(cfg: MlmConfig, backbone: BackboneConfig, corpus_dir: Path) -> Path:
    backbone_digest = content_sha256(model_dir(backbone.model, "backbone.model"))
    return checkpoint_dir("mlm", cfg.model_dump(), backbone_digest, read_manifest(corpus_dir)["shards"], module=__name__)


def _train(model, tokenizer, data: Encoded, cfg: MlmConfig, ckpt: Path) -> list[dict]:
    head = [p for n, p in model.named_parameters() if n.startswith("cls.")]
    head_ids = {id(p) for p in head}
    encoder = [p for p in model.parameters() if id(p) not in head_ids]
    pad = tokenizer.pad_token_id
    batches = BatchSource(len(data), lambda idx: data.collate(idx, pad_id=pad))

    def loss_fn(batch: dict, step: int):
        # Masking is drawn from the step number, so a resumed run masks the same tokens.
        generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + step)
        ids, labels = mask_tokens(batch, tokenizer, cfg.mask_prob, generator)
        loss, correct = masked_lm_loss(model, batch, ids, labels)
        return loss, {"accuracy": correct.float().mean().detach()}  # read at log lines, not per step

    return train(
        name="mlm",
        modules={"model": model},
        param_groups=[{"params": encoder, "lr": cfg.train.lr}, {"params": head, "lr": cfg.head_lr}],
        loss_fn=loss_fn,
        batches=batches,
        schedule=cfg.train,
        checkpoint_to=ckpt,
    )
