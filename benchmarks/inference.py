"""Inference throughput: TinyBERT4 student vs a BERT-base-shaped teacher, as users load them.

Both models are randomly initialised (speed does not depend on the weights), saved with
`save_pretrained` and loaded back with `from_pretrained` and the default attention, the way a
user loads `data/student`. Batch 32, length 128, inference mode; best of N timed runs. On the
CPU by default; ``--device cuda`` times the GPU, where ``--dtype bf16|fp16`` loads both models
in half precision as GPU users usually do.

    python benchmarks/inference.py [--repeats 5] [--student data/student] [--paired-rounds 10] [--device cuda --dtype bf16]

Prints both throughputs and the ratio (the paper reports 9.4x; FLOPs allow about 18.75x).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.utils import logging as hf_logging

import tinybert  # noqa: F401  (offline defaults)
from tinybert.config import StudentShape
from tinybert.evaluate import forward_seconds, random_batch, throughput
from tinybert.models import student_config

BERT_BASE = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def saved_and_loaded(config: BertConfig, folder: Path, dtype: torch.dtype):
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    return BertForSequenceClassification.from_pretrained(folder, dtype=dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--student", type=Path, help="a trained student folder (default: a fresh TinyBERT4)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--paired-rounds", type=int, default=0,
                        help="also time N rounds of teacher and student back to back; print the median ratio")
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        teacher = saved_and_loaded(BERT_BASE, Path(tmp) / "teacher", dtype)
        if args.student:
            student = BertForSequenceClassification.from_pretrained(args.student, dtype=dtype)
        else:
            student = saved_and_loaded(student_config(BERT_BASE, StudentShape()), Path(tmp) / "student", dtype)
        results = {}
        for name, model in (("teacher (BERT-base shape)", teacher), ("student (TinyBERT4)", student)):
            params = sum(p.numel() for p in model.parameters())
            results[name] = throughput(model, model.config.vocab_size, args.batch, args.length, args.repeats,
                                       args.device)
            print(f"{name:26s} {params / 1e6:6.1f}M params  {results[name]:8.1f} examples/s  "
                  f"({1000 * args.batch / results[name]:.0f} ms per batch of {args.batch}x{args.length})")
        teacher_rate, student_rate = results.values()
        where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
            f"cpu, torch threads {torch.get_num_threads()}"
        print(f"speed-up student / teacher: {student_rate / teacher_rate:.1f}x  ({where}, {args.dtype})")
        if args.paired_rounds:
            ratios = paired_ratios(teacher, student, args)
            print(f"paired rounds ({len(ratios)}, teacher and student timed back to back): speed-up median "
                  f"{statistics.median(ratios):.1f}x, range {min(ratios):.1f}x-{max(ratios):.1f}x")


def paired_ratios(teacher, student, args) -> list[float]:
    """Teacher / student time per round, the two timed back to back (the student best of 3 within
    the round). The best-of-N figures above time the teacher's runs, then the student's; on a
    shared host whose load drifts between the two, their ratio drifts with it (13x to 17x on the
    same day here). Back to back, both see nearly the same load, and the median of the rounds
    shows what the load leaves of the ratio."""
    vocab = min(teacher.config.vocab_size, student.config.vocab_size)
    inputs = random_batch(vocab, args.batch, args.length, args.device)
    with torch.inference_mode():
        return [forward_seconds(teacher, inputs) / min(forward_seconds(student, inputs) for _ in range(3))
                for _ in range(args.paired_rounds)]


if __name__ == "__main__":
    main()
