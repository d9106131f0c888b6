"""Loading, building and measuring the BERT models the pipeline uses."""
from __future__ import annotations

import json
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PreTrainedTokenizerBase,
)

from tinybert.assets import resolve
from tinybert.capture import enable_capture
from tinybert.config import StudentShape
from tinybert.errors import InputError, first_line

if TYPE_CHECKING:
    from tinybert.batching import Encoded

def model_dir(value: str | Path, what: str) -> Path:
    """Resolve a model parameter and check it is a Hugging Face model folder."""
    path = resolve(str(value), what)
    if not (path / "config.json").is_file():
        raise InputError(f"{what}: {path} is not a model folder (no config.json)")
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as err:
        raise InputError(f"{what}: {path / 'config.json'} is not a JSON object: {first_line(err)}") from None
    # Configs converted from the original TensorFlow BERT often carry no model_type at all.
    if model_type is not None and model_type != "bert":
        raise InputError(f"{what}: {path} holds a {model_type!r} model; the pipeline distils BERT models "
                         "(model_type 'bert' in config.json)")
    return path


def load_tokenizer(path: str | Path, what: str = "tokenizer") -> PreTrainedTokenizerBase:
    folder = model_dir(path, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise InputError(f"{what}: cannot load a tokenizer from {folder}: {first_line(err)}") from None
    # A folder saved with model.save_pretrained alone has no vocabulary; transformers then builds
    # a tokenizer of special tokens only, and every word would silently become [UNK].
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise InputError(f"{what}: {folder} has no tokenizer vocabulary (tokenizer.json or vocab.txt); "
                         "save the tokenizer with the model")
    return tokenizer


# Heads a stage adds to a checkpoint and trains itself: their weights may be absent.
NEW_CLASSIFIER_HEAD = ("classifier.", "bert.pooler.")
NEW_MLM_HEAD = ("cls.",)


def load_pretrained(model_class, folder: Path, *, what: str = "model", new: tuple[str, ...] = (), **kwargs):
    """``model_class.from_pretrained(folder)`` with fp32 weights, whatever dtype the folder stores.

    transformers 5 loads a checkpoint in the dtype it was saved in. A teacher or MLM published
    in fp16 or bf16 would then train without loss scaling, and run slowly (fp16: not at all for
    some operators) on a CPU. The weights stay fp32 here; ``precision`` picks the compute dtype.

    transformers fills any weight the checkpoint lacks with random values and only logs it, so a
    folder of another architecture, or a masked-LM without its head, would load "successfully".
    Here only weights under the ``new`` prefixes (a head the stage trains) may be missing.
    """
    if new:  # e.g. a 3-class checkpoint as the backbone of a 2-class task: its head is replaced
        kwargs["ignore_mismatched_sizes"] = True
    try:
        model, info = model_class.from_pretrained(folder, dtype=torch.float32, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        reason = first_line(err)
        if "ignore_mismatched_sizes" in reason:  # its details are in a report transformers logs
            reason = "the checkpoint's weight shapes differ from its config.json"
        raise InputError(f"{what}: cannot load {model_class.__name__} weights from {folder}: {reason}") from None
    resized = sorted(key for key, *_ in info["mismatched_keys"] if not key.startswith(new))
    if resized:
        raise InputError(f"{what}: cannot load {model_class.__name__} weights from {folder}: the checkpoint's weight "
                         f"shapes differ from its config.json ({len(resized)} weights, first: {resized[0]})")
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(new))
    if missing:
        raise InputError(f"{what}: {folder} lacks {len(missing)} of the {model_class.__name__}'s weights "
                         f"(first: {missing[0]}); is it a BERT checkpoint of that kind?")
    return model


def load_encoder(path: str | Path, what: str = "backbone") -> BertModel:
    """A pre-trained BERT encoder (no task head) with pre-softmax attention capture enabled."""
    folder = model_dir(path, what)
    return enable_capture(load_pretrained(BertModel, folder, what=what, add_pooling_layer=False))


def load_classifier(path: str | Path, num_labels: int | None = None, what: str = "model") -> BertForSequenceClassification:
    """A BERT sequence classifier; ``num_labels`` given for a new head on an encoder folder."""
    folder = model_dir(path, what)
    if num_labels is None:
        return load_pretrained(BertForSequenceClassification, folder, what=what)
    return load_pretrained(BertForSequenceClassification, folder, what=what, new=NEW_CLASSIFIER_HEAD,
                           num_labels=num_labels)


def student_config(teacher: BertConfig, shape: StudentShape) -> BertConfig:
    """TinyBERT student: the teacher's vocabulary and positions, a smaller transformer."""
    return BertConfig(
        vocab_size=teacher.vocab_size,
        max_position_embeddings=teacher.max_position_embeddings,
        type_vocab_size=teacher.type_vocab_size,
        pad_token_id=teacher.pad_token_id,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        hidden_act=teacher.hidden_act,
        layer_norm_eps=teacher.layer_norm_eps,
    )


def new_student(teacher: BertConfig, shape: StudentShape) -> BertModel:
    return enable_capture(BertModel(student_config(teacher, shape), add_pooling_layer=False))


@torch.inference_mode()
def batched_logits(model, data: "Encoded", batch_size: int, pad_id: int, progress: str | None = None) -> torch.Tensor:
    """The model's logits for every example, in example order, as float32 (N, C).

    Batches are sorted by length so they carry little padding. With ``progress``, a line per
    tenth of the work goes to stderr under that name."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    out = None
    starts = range(0, len(data), batch_size)
    report_every = max(1, len(starts) // 10)
    began = time.monotonic()
    for n, start in enumerate(starts, start=1):
        chosen = order[start:start + batch_size]
        batch = data.collate(chosen, pad_id=pad_id)
        batch.pop("labels", None)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
        if out is None:
            out = torch.empty(len(data), logits.shape[-1], dtype=torch.float32)
        out[chosen] = logits
        if progress and (n % report_every == 0 or n == len(starts)):
            rate = min(start + batch_size, len(data)) / (time.monotonic() - began)
            print(f"[{progress}] {min(start + batch_size, len(data))}/{len(data)} examples, {rate:.0f}/s",
                  file=sys.stderr, flush=True)
    return out


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def folder_size(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def save_model(model, tokenizer, out: Path) -> None:
    """Save as a Hugging Face folder in safetensors, loadable with the default attention."""
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def publish_trained_model(out_dir: Path, model, tokenizer, logs: dict[str, list[dict]], report: dict,
                          checkpoints: Path | None,
                          *, tensor_files: dict[str, dict] | None = None) -> None:
    """A training stage's output, written atomically: the model folder, one loss-curve CSV per
    log (``NAME.csv``), ``training.json`` and each of ``tensor_files`` (file name -> tensors, in
    safetensors); then the now useless resumable checkpoints go (``None``: a stage that trained nothing).
    With several processes only process 0 writes: they all hold the same weights."""
    from tinybert.runtime import is_main_process

    if not is_main_process():
        return
    from tinybert.io import atomic_dir, write_json
    from tinybert.training import write_log

    # Where each training step ran (TrainingLog.runtime), after any the report carries over from
    # an earlier stage (the task student's intermediate step).
    trained_on = {**report.get("trained_on", {}),
                  **{name.removesuffix("_log"): log.runtime for name, log in logs.items() if getattr(log, "runtime", None)}}
    report = {**report, "trained_on": trained_on} if trained_on else report
    with atomic_dir(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
        for name, log in logs.items():
            write_log(log, tmp / f"{name}.csv")
        write_json(tmp / "training.json", report)
        for name, tensors in (tensor_files or {}).items():
            save_file(tensors, tmp / name)
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
