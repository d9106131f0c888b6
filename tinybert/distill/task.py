"""Stage task-distill: the general student learns the task from the fine-tuned teacher on the
augmented training set, in the reference's two steps: intermediate layers, then prediction layer.

Switches in ``TaskDistillConfig`` turn components off for the paper's ablations (w/o GD, w/o TD,
w/o DA; a loss is turned off by its weight) or run all losses in one step."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification

from tinybert import task_defaults
from tinybert.batching import encode_task, read_task_labels
from tinybert.capture import enable_capture
from tinybert.config import ObjectiveSwitches, TaskDistillConfig, TrainSchedule
from tinybert.distill.loop import distill
from tinybert.distill.objective import PROJECTIONS_FILE, DistillationObjective, build_objective
from tinybert.distill.teacher_logits import load_teacher_logits
from tinybert.errors import InputError, first_line
from tinybert.io import atomic_file, content_sha256, read_manifest, read_sharded
from tinybert.models import load_classifier, load_tokenizer, model_dir, publish_trained_model
from tinybert.runtime import is_main_process
from tinybert.training import BatchSource, checkpoint_dir, seed_everything, train

STEPS = ("intermediate", "prediction")


def run(
    cfg: TaskDistillConfig,
    switches: ObjectiveSwitches,
    *,
    task_dir: Path,
    augmented_dir: Path,
    teacher_dir: Path,
    general_dir: Path,
    logits_dir: Path,
    out_dir: Path,
) -> None:
    cfg = switches.applied_to(cfg)
    labels = read_task_labels(task_dir)
    regression = labels["task_type"] == "regression"
    seed_everything(cfg.intermediate.seed)
    tokenizer = load_tokenizer(teacher_dir, "teacher")
    teacher = enable_capture(load_classifier(teacher_dir, what="teacher")) if cfg.distillation else None
    student = enable_capture(_student(general_dir, labels["num_labels"], pretrained=cfg.general_student))
    if regression:
        student.config.problem_type = "regression"

    rows = read_sharded(augmented_dir, ["text", "text_b", "label", "is_original"]).to_pydict()
    keep = list(range(len(rows["text"])))
    cached_logits = None
    teacher_digest = content_sha256(teacher_dir)  # once: the logits check and the resume key both need it
    max_seq_len = task_defaults.max_seq_len(cfg.max_seq_len, pairs=bool(labels.get("text_b")))
    if cfg.distillation and not cfg.one_step:
        cached_logits = load_teacher_logits(logits_dir, rows=len(keep), max_seq_len=max_seq_len,
                                            augmented_dir=augmented_dir, teacher_digest=teacher_digest)
    if not cfg.augmented_data:
        keep = [i for i in keep if rows["is_original"][i]]
        rows = {key: [values[i] for i in keep] for key, values in rows.items()}
    data = encode_task(tokenizer, rows, max_seq_len)
    pad = tokenizer.pad_token_id
    label_dtype = torch.float32 if regression else torch.long

    def collate(indices: list[int]) -> dict:
        batch = data.collate(indices, pad_id=pad, label_dtype=label_dtype)
        if cached_logits is not None:
            batch["teacher_logits"] = cached_logits[[keep[i] for i in indices]]
        return batch

    batches = BatchSource(len(data), collate, data.lengths)

    ckpt = checkpoint_dir(
        "task-distill", cfg.model_dump(), read_manifest(augmented_dir)["shards"], teacher_digest,
        content_sha256(general_dir), module=__name__,
    )
    logs: dict[str, list[dict]] = {}
    projections = None  # where the projections started, for the report; None: no step had any
    if not cfg.distillation:
        logs["finetune"] = _fine_tune("finetune", student, batches, cfg.prediction, ckpt)
    else:
        steps = [("one_step", cfg.intermediate)] if cfg.one_step else list(zip(STEPS, (cfg.intermediate, cfg.prediction)))
        head_distilled = False
        general = general_dir if cfg.general_student and cfg.general_projections else None
        for step_name, schedule in steps:
            result = _run_step(step_name, schedule, cfg, student, teacher, batches, regression, ckpt, general)
            head_distilled |= result.predicts
            if result.log is not None:
                logs[step_name] = result.log
            if result.projections:
                projections = result.projections
        if not head_distilled:
            # Ablation "w/o L_pred" (or a prediction layer weighted 0 in layer_weights): nothing
            # distils the new task head, so it learns from the labels rather than stay random.
            logs["prediction_labels"] = _fine_tune("prediction_labels", student, batches, cfg.prediction, ckpt)

    report = {
        "training_rows": len(data),
        "max_seq_len": max_seq_len,
        "student_init": "general" if cfg.general_student else "random",
        **({"projections_init": projections} if projections else {}),
        **{f"{k}_steps": len(v) for k, v in logs.items()},
    }
    publish_trained_model(out_dir, student, tokenizer, {f"{k}_log": v for k, v in logs.items()}, report, ckpt)


def _student(general_dir: Path, num_labels: int, *, pretrained: bool):
    """The general student with a new task head, or (ablation "w/o GD") a fresh one of its shape."""
    if pretrained:
        return load_classifier(general_dir, num_labels=num_labels, what="general student")
    config = BertConfig.from_pretrained(model_dir(general_dir, "general student"), num_labels=num_labels)
    return BertForSequenceClassification(config)


def _fine_tune(step_name: str, student, batches: BatchSource, schedule: TrainSchedule, ckpt: Path) -> list[dict]:
    """Learn the task from its labels, with no teacher (ablations "w/o TD" and "w/o L_pred")."""
    inputs = ("input_ids", "attention_mask", "token_type_ids", "labels")
    return train(
        name=f"task-distill/{step_name}",
        modules={"student": student},
        param_groups=[{"params": [p for p in student.parameters() if p.requires_grad]}],
        loss_fn=lambda batch, step: (student(**{k: batch[k] for k in inputs}).loss, {}),
        batches=batches,
        schedule=schedule,
        checkpoint_to=ckpt / step_name,
    )


class StepResult(NamedTuple):
    log: list[dict] | None  # None when every loss of the step has weight 0
    predicts: bool  # the prediction loss was among the step's losses
    projections: str | None  # where W_e / W_h started: "general", "fresh", or None (the step has none)


def _run_step(step_name, schedule: TrainSchedule, cfg, student, teacher, batches, regression, ckpt: Path,
              general_dir: Path | None) -> StepResult:
    """One distillation step: intermediate, prediction or one_step. Its projections start from
    ``general_dir``'s when given (and they fit), else fresh.

    A finished step is remembered in the checkpoint folder, so a resumed stage skips it."""
    done = ckpt / f"{step_name}.done.pt"
    if done.is_file():
        state = torch.load(done, weights_only=False)
        student.load_state_dict(state["student"])
        return StepResult(state["log"], state["predicts"], state.get("projections"))
    objective = build_objective(
        cfg,
        student.config,
        teacher.config,
        intermediate=step_name != "prediction",
        prediction=step_name != "intermediate",
        temperature=cfg.temperature,
        regression=regression,
    )
    if not objective.matches:
        return StepResult(None, False, None)  # every loss of this step is switched off
    projections = None
    if objective.needs_intermediate:
        projections = _start_projections(objective, general_dir, step_name) if general_dir else "fresh"
    log = distill(
        name=f"task-distill/{step_name}",
        student=student,
        # The prediction step reads the teacher's logits from the cache in each batch.
        teacher=None if step_name == "prediction" else teacher,
        objective=objective,
        batches=batches,
        schedule=schedule,
        checkpoint_to=ckpt / step_name,
    )
    if is_main_process():
        with atomic_file(done) as tmp:
            torch.save({"student": student.state_dict(), "log": log, "predicts": objective.needs_logits,
                        "projections": projections}, tmp)
    return StepResult(log, objective.needs_logits, projections)


def _start_projections(objective: DistillationObjective, general_dir: Path, step_name: str) -> str:
    """Start W_e / W_h from general distillation's, as the reference does; "general" if they were
    used, "fresh" (with a note saying why) if the folder has none or they do not fit this pair."""
    path = general_dir / PROJECTIONS_FILE
    try:
        saved = load_file(path) if path.is_file() else None
    except SafetensorError as err:
        raise InputError(f"{path}: not a readable safetensors file: {first_line(err)}") from None
    problem = "no such file" if saved is None else objective.projection_mismatch(saved)
    if problem:
        print(f"[task-distill/{step_name}] note: projections start fresh, not from {path}: {problem}",
              file=sys.stderr, flush=True)
        return "fresh"
    objective.start_projections_from(saved)
    return "general"
