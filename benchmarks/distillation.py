"""Distillation step overhead, and the prediction step with cached teacher logits.

1. One general-distillation step and one task-distillation (intermediate) step through the real
   loop (``tinybert.distill.loop.distill``: feature capture, layer mapping, projections, the
   losses, backward, clipping, AdamW) against the bare cost on the same batches: teacher
   forward under inference mode + student forward + backward + the same AdamW step.
   Target: ratio <= 1.15.
2. The prediction step with the teacher's logits read from the cache (the teacher-logits stage)
   against recomputing them with a teacher forward in every step.

Teacher: the embedded MiniLM (6 layers, 384 hidden, 12 heads) or ``--bert-base`` (a randomly
initialised BERT-base shape); student: TinyBERT4 (4 layers, 312 hidden, 12 heads). Batch 32,
length 64 (the reference's single-sentence length). ``--device cuda`` and ``--precision``
(bf16, fp16) time the GPU path; the bare step then runs under the same autocast.

    python benchmarks/distillation.py [--steps 8] [--bert-base] [--length 64] [--device cuda --precision bf16]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel
from transformers.utils import logging as hf_logging

import tinybert  # noqa: F401  (offline defaults)
from tinybert.batching import Encoded
from tinybert.capture import enable_capture
from tinybert.config import LossWeights, StudentShape, TrainSchedule
from tinybert.distill.loop import distill, frozen_teacher
from tinybert.distill.matches import build_matches
from tinybert.distill.objective import DistillationObjective
from tinybert.models import batched_logits, model_dir, student_config
from tinybert.runtime import Runtime
from tinybert.training import BatchSource, adamw

BERT_BASE = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def teacher_config(bert_base: bool) -> tuple[BertConfig, Path | None]:
    if bert_base:
        return BERT_BASE, None
    folder = model_dir("embedded:minilm", "teacher")
    return BertConfig.from_pretrained(folder), folder


def random_data(n: int, length: int, vocab: int) -> Encoded:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (n, length), generator=generator).tolist()
    return Encoded(ids, [[0] * length for _ in ids], [i % 2 for i in range(n)])


def synchronize(device: str) -> None:
    if device == "cuda":  # GPU work is asynchronous: time it finished, not launched
        torch.cuda.synchronize()


def timed_distill(student, teacher, objective, batches, steps: int, tmp: Path, runtime: Runtime, batch: int) -> float:
    # Two steps beyond those timed: the first warms up, and the last one's interval would end
    # after distill() has returned and moved the models back, which is not a step's cost.
    schedule = TrainSchedule(max_steps=steps + 2, batch_size=batch, lr=1e-4, checkpoint_every=10**6, log_every=10**6,
                             device=runtime.device.type, precision=runtime.precision)
    times: list[float] = []

    original = batches.collate

    def collate(indices):  # marks the start of each step: the loop asks for its batch first
        synchronize(runtime.device.type)
        times.append(time.perf_counter())
        return original(indices)

    source = BatchSource(batches.num_examples, collate)
    distill(name="bench", student=student, teacher=teacher, objective=objective, batches=source,
            schedule=schedule, checkpoint_to=tmp)
    # Each step begins when the loop asks for its batch: a step's time is the gap to the next ask.
    steps_times = [b - a for a, b in zip(times, times[1:])][1:]
    return sum(steps_times) / len(steps_times)


def timed_bare(student, teacher, batches, steps: int, runtime: Runtime, size: int) -> float:
    device = runtime.device
    student.to(device).train()
    teacher = frozen_teacher(teacher, device, runtime.precision)  # as the loop runs it
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = adamw([{"params": params}], lr=1e-4, weight_decay=0.01)  # the loop's kernel
    scaler = runtime.grad_scaler()
    times = []
    for step in range(steps + 1):
        first = step * size % batches.num_examples
        batch = batches.collate(list(range(first, first + size)))
        synchronize(device.type)
        began = time.perf_counter()
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with runtime.autocast():
            with torch.inference_mode():
                teacher(**inputs)
            out = student(**inputs)
            loss = (out.logits if hasattr(out, "logits") else out.last_hidden_state).float().pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        synchronize(device.type)
        if step:
            times.append(time.perf_counter() - began)
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bert-base", action="store_true", help="a BERT-base-shaped teacher instead of MiniLM")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    args = parser.parse_args()
    runtime = Runtime.create(args.device, args.precision)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import tempfile

    t_cfg, t_folder = teacher_config(args.bert_base)
    s_cfg = student_config(t_cfg, StudentShape())
    data = random_data(args.batch * (args.steps + 2), args.length, t_cfg.vocab_size)
    batches = BatchSource(len(data), lambda idx: data.collate(idx))
    print(f"teacher {t_cfg.num_hidden_layers}x{t_cfg.hidden_size}, student TinyBERT4 4x312, batch {args.batch}, length {args.length}, "
          f"{torch.cuda.get_device_name() if args.device == 'cuda' else f'cpu, torch threads {torch.get_num_threads()}'}, "
          f"{args.precision}")

    def encoder_pair():
        torch.manual_seed(0)
        teacher = BertModel.from_pretrained(t_folder, add_pooling_layer=False) if t_folder else BertModel(t_cfg, add_pooling_layer=False)
        return enable_capture(BertModel(s_cfg, add_pooling_layer=False)), enable_capture(teacher)

    def classifier_pair():
        torch.manual_seed(0)
        t_cls = BertConfig.from_dict({**t_cfg.to_dict(), "num_labels": 2})
        teacher = BertForSequenceClassification.from_pretrained(t_folder, num_labels=2) if t_folder else BertForSequenceClassification(t_cls)
        return enable_capture(BertForSequenceClassification(BertConfig.from_dict({**s_cfg.to_dict(), "num_labels": 2}))), enable_capture(teacher)

    def objective(intermediate: bool, prediction: bool) -> DistillationObjective:
        weights = LossWeights(prediction=1.0 if prediction else 0.0)
        matches = build_matches("uniform", 4, t_cfg.num_hidden_layers, weights, intermediate=intermediate, prediction=prediction)
        return DistillationObjective(matches, 312, t_cfg.hidden_size, student_heads=12, teacher_heads=t_cfg.num_attention_heads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        student, teacher = encoder_pair()
        bare = timed_bare(student, teacher, batches, args.steps, runtime, args.batch)
        student, teacher = encoder_pair()
        gd = timed_distill(student, teacher, objective(True, False), batches, args.steps, tmp / "gd", runtime, args.batch)
        rows.append(("general distillation step", gd, bare))
        student, teacher = classifier_pair()
        bare_td = timed_bare(student, teacher, batches, args.steps, runtime, args.batch)
        student, teacher = classifier_pair()
        td = timed_distill(student, teacher, objective(True, False), batches, args.steps, tmp / "td", runtime, args.batch)
        rows.append(("task distillation step (intermediate)", td, bare_td))
        for name, real, base in rows:
            print(f"{name:40s} {real * 1000:7.0f} ms   bare {base * 1000:7.0f} ms   ratio {real / base:.3f}  (target <= 1.15)")

        student, teacher = classifier_pair()
        recompute = timed_distill(student, teacher, objective(False, True), batches, args.steps, tmp / "pred", runtime, args.batch)
        cache = batched_logits(teacher.to(runtime.device), data, 128, 0)

        def with_logits(indices):
            batch = data.collate(indices)
            batch["teacher_logits"] = cache[indices]
            return batch

        student, _ = classifier_pair()
        cached = timed_distill(student, None, objective(False, True), BatchSource(len(data), with_logits), args.steps, tmp / "cached",
                               runtime, args.batch)
        print(f"{'prediction step, teacher recomputed':40s} {recompute * 1000:7.0f} ms")
        print(f"{'prediction step, cached teacher logits':40s} {cached * 1000:7.0f} ms   "
              f"speed-up {recompute / cached:.2f}x")


if __name__ == "__main__":
    main()
