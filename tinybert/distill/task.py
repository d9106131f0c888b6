"""Task distillation in the reference's two steps, as two stages, as the reference runs them
(two invocations, the second loading the first one's student):

- ``task-distill-intermediate``: the general student, with a new task head, learns the teacher's
  embeddings, attention scores and hidden states on the augmented training set;
- ``task-distill``: it then learns the teacher's logits (cached by the teacher-logits stage).

A change to what only the prediction step reads (its schedule, the temperature, the prediction
loss's weight) reruns only the second stage. Switches in ``TaskDistillConfig`` turn components off
for the paper's ablations (w/o GD, w/o TD, w/o DA; a loss is turned off by its weight) or run all
losses in one step: the second stage's, the first then only giving the student its task head."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig, BertConfig, BertForSequenceClassification

from tinybert import task_defaults
from tinybert.batching import encode_task, read_task_labels
from tinybert.capture import enable_capture
from tinybert.config import ObjectiveSwitches, TaskDistillConfig, TrainSchedule
from tinybert.distill.loop import distill
from tinybert.distill.objective import PROJECTIONS_FILE, DistillationObjective, build_objective
from tinybert.distill.teacher_logits import load_teacher_logits
from tinybert.errors import InputError, first_line
from tinybert.io import content_sha256, read_json, read_manifest, read_sharded
from tinybert.models import load_classifier, load_tokenizer, model_dir, publish_trained_model
from tinybert.training import BatchSource, checkpoint_dir, seed_everything, train

FIRST_STEP_REPORT = "training.json"
# The field of FIRST_STEP_REPORT that says where the student started ("general" or "random"); the
# second stage checks it to tell the first stage's report from another training.json.
STUDENT_INIT = "student_init"


def run_intermediate(
    cfg: TaskDistillConfig,
    switches: ObjectiveSwitches,
    *,
    task_dir: Path,
    augmented_dir: Path,
    teacher_dir: Path,
    general_dir: Path,
    out_dir: Path,
) -> None:
    """Stage task-distill-intermediate: the intermediate step. Without task distillation (w/o TD),
    or with ``one_step`` (all losses in the next stage), it only gives the student its new task head."""
    cfg = switches.applied_to(cfg)
    mapping_field = switches.mapping_field("task_distill")
    seed_everything(cfg.intermediate.seed)
    task = _TaskData.read(cfg, task_dir, augmented_dir, teacher_dir)
    student = enable_capture(_student(general_dir, task.labels["num_labels"], pretrained=cfg.general_student))
    if task.regression:
        student.config.problem_type = "regression"
    ckpt = checkpoint_dir(
        "task-distill-intermediate", cfg.intermediate_settings(), task.shards, task.teacher_digest,
        content_sha256(general_dir), module=__name__,
    )
    result = StepResult(None, False, None)
    if cfg.two_steps:
        teacher = enable_capture(load_classifier(teacher_dir, what="teacher"))
        result = _run_step("intermediate", cfg.intermediate, cfg, mapping_field, student, teacher.config, task, ckpt,
                           _general_projections(cfg, general_dir), teacher)
    report = {
        **task.report(),
        STUDENT_INIT: "general" if cfg.general_student else "random",
        **({"projections_init": result.projections} if result.projections else {}),
        **({"intermediate_steps": len(result.log)} if result.log is not None else {}),
    }
    logs = {"intermediate_log": result.log} if result.log is not None else {}
    publish_trained_model(out_dir, student, task.tokenizer, logs, report, ckpt)


def run(
    cfg: TaskDistillConfig,
    switches: ObjectiveSwitches,
    *,
    task_dir: Path,
    augmented_dir: Path,
    teacher_dir: Path,
    intermediate_dir: Path,
    logits_dir: Path,
    general_dir: Path,
    out_dir: Path,
) -> None:
    """Stage task-distill: the prediction step on the cached teacher logits, or with ``one_step``
    all losses at once against the running teacher. The head learns from the labels instead where
    nothing distils it (w/o TD, w/o L_pred)."""
    cfg = switches.applied_to(cfg)
    mapping_field = switches.mapping_field("task_distill")
    seed_everything(cfg.prediction.seed)
    task = _TaskData.read(cfg, task_dir, augmented_dir, teacher_dir)
    student = enable_capture(load_classifier(intermediate_dir, what="intermediate student"))
    first = _first_step_report(Path(intermediate_dir))
    if task.regression:
        student.config.problem_type = "regression"
    ckpt = checkpoint_dir(
        "task-distill", cfg.model_dump(exclude={"intermediate"}), task.shards, task.teacher_digest,
        content_sha256(intermediate_dir), module=__name__,
    )
    logs: dict[str, list[dict]] = {}
    report = dict(first)
    if not cfg.distillation:
        logs["finetune"] = _fine_tune("finetune", student, task.batches, cfg.prediction, ckpt)
    else:
        if cfg.two_steps:
            step = "prediction"
            task.attach_teacher_logits(logits_dir, augmented_dir)
            teacher_config = AutoConfig.from_pretrained(model_dir(teacher_dir, "teacher"))
            result = _run_step(step, cfg.prediction, cfg, mapping_field, student, teacher_config, task, ckpt)
        else:
            step = "one_step"
            teacher = enable_capture(load_classifier(teacher_dir, what="teacher"))
            result = _run_step(step, cfg.prediction, cfg, mapping_field, student, teacher.config, task, ckpt,
                               _general_projections(cfg, general_dir), teacher)
            if result.projections:
                report["projections_init"] = result.projections
        if result.log is not None:
            logs[step] = result.log
        if not result.predicts:
            # Ablation "w/o L_pred" (or a prediction layer weighted 0 in layer_weights): nothing
            # distils the new task head, so it learns from the labels rather than stay random.
            logs["prediction_labels"] = _fine_tune("prediction_labels", student, task.batches, cfg.prediction, ckpt)
    report.update(task.report(), **{f"{k}_steps": len(v) for k, v in logs.items()})
    publish_trained_model(out_dir, student, task.tokenizer, {f"{k}_log": v for k, v in logs.items()}, report, ckpt)


def _general_projections(cfg: TaskDistillConfig, general_dir: Path) -> Path | None:
    """Where W_e / W_h start: general distillation's folder, as the reference, unless the student
    starts at random (w/o GD) or ``general_projections`` is off."""
    return general_dir if cfg.general_student and cfg.general_projections else None


def _first_step_report(intermediate_dir: Path) -> dict:
    path = intermediate_dir / FIRST_STEP_REPORT
    try:
        report = read_json(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: the intermediate student's report is unreadable ({first_line(err)}); "
                         "run task-distill-intermediate first") from None
    if not isinstance(report, dict) or STUDENT_INIT not in report:
        raise InputError(f"{path}: no '{STUDENT_INIT}' field; not written by task-distill-intermediate")
    return report


@dataclass
class _TaskData:
    """The training set both stages read: the augmented rows (or, w/o DA, the original ones),
    encoded with the teacher's tokenizer at the task's length."""

    labels: dict
    regression: bool
    tokenizer: object
    rows: dict  # the columns of the rows used
    kept: list[int]  # each used row's place in the augmented set, where its cached teacher logits are
    augmented_rows: int
    max_seq_len: int
    pad_to_max_length: bool
    shards: list
    teacher_digest: str
    cached_logits: torch.Tensor | None = None

    @classmethod
    def read(cls, cfg: TaskDistillConfig, task_dir: Path, augmented_dir: Path, teacher_dir: Path) -> "_TaskData":
        labels = read_task_labels(task_dir)
        rows = read_sharded(augmented_dir, ["text", "text_b", "label", "is_original"]).to_pydict()
        total = len(rows["text"])
        kept = list(range(total))
        if not cfg.augmented_data:
            kept = [i for i in kept if rows["is_original"][i]]
            rows = {key: [values[i] for i in kept] for key, values in rows.items()}
        return cls(
            pad_to_max_length=cfg.padding == "max_length",
            labels=labels,
            regression=labels["task_type"] == "regression",
            tokenizer=load_tokenizer(teacher_dir, "teacher"),
            rows=rows,
            kept=kept,
            augmented_rows=total,
            max_seq_len=task_defaults.max_seq_len(cfg.max_seq_len, pairs=bool(labels.get("text_b"))),
            shards=read_manifest(augmented_dir)["shards"],
            teacher_digest=content_sha256(teacher_dir),
        )

    @cached_property
    def batches(self) -> BatchSource:
        # Encoded on first use: the first stage of w/o TD trains nothing and never asks.
        encoded = encode_task(self.tokenizer, self.rows, self.max_seq_len)
        pad = self.tokenizer.pad_token_id
        label_dtype = torch.float32 if self.regression else torch.long
        width = self.max_seq_len if self.pad_to_max_length else None

        def collate(indices: list[int]) -> dict:
            batch = encoded.collate(indices, pad_id=pad, label_dtype=label_dtype, width=width)
            if self.cached_logits is not None:
                batch["teacher_logits"] = self.cached_logits[[self.kept[i] for i in indices]]
            return batch

        return BatchSource(len(encoded), collate, encoded.lengths)

    def attach_teacher_logits(self, logits_dir: Path, augmented_dir: Path) -> None:
        """Batches carry the teacher's cached logits from now on (checked against these rows)."""
        self.cached_logits = load_teacher_logits(logits_dir, rows=self.augmented_rows, max_seq_len=self.max_seq_len,
                                                 augmented_dir=augmented_dir, teacher_digest=self.teacher_digest)

    def report(self) -> dict:
        return {"training_rows": len(self.kept), "max_seq_len": self.max_seq_len}


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


def _run_step(step_name: str, schedule: TrainSchedule, cfg: TaskDistillConfig, mapping_field: str,
              student, teacher_config, task: _TaskData, ckpt: Path, general_dir: Path | None = None,
              teacher=None) -> StepResult:
    """One distillation step: intermediate, prediction or one_step. Its projections start from
    ``general_dir``'s when given (and they fit), else fresh. The prediction step reads the
    teacher's logits from the batches; the others run ``teacher``. ``mapping_field`` is the setting
    a mapping error names."""
    objective = build_objective(
        cfg,
        student.config,
        teacher_config,
        intermediate=step_name != "prediction",
        prediction=step_name != "intermediate",
        temperature=cfg.temperature,
        regression=task.regression,
        mapping_field=mapping_field,
    )
    if not objective.matches:
        return StepResult(None, False, None)  # every loss of this step is switched off
    projections = None
    if objective.needs_intermediate:
        projections = _start_projections(objective, general_dir, step_name) if general_dir else "fresh"
    log = distill(
        name=f"task-distill/{step_name}",
        student=student,
        teacher=teacher,
        objective=objective,
        batches=task.batches,
        schedule=schedule,
        checkpoint_to=ckpt / step_name,
    )
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
