"""Task stage: a labelled dataset -> train/dev/test parquet files and ``labels.json``.

The source is read through ``datasets`` (csv, tsv, parquet), as JSON (``json_table``), or in the fixed
``movie-reviews`` layout (tab-separated ``id``, ``sentiment`` score, ``text``), whose score sign
gives the label (negative < 0 < positive; zero scores are dropped) or, for a regression task,
whose score is the label.

Output (through :func:`atomic_dir`): ``train.parquet``, ``dev.parquet`` and ``test.parquet``
with :data:`SCHEMA`, each sorted by ``id`` (the row's 0-based position in the source), and
``labels.json`` (see :func:`run`).
"""
from __future__ import annotations

import glob
import hashlib
import math
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tinybert.assets import resolve
from tinybert.config import TaskConfig
from tinybert.data.glue import GLUE_TASKS, glue_task_name, read_glue_file, split_name
from tinybert.data.json_table import read_json_table
from tinybert.errors import InputError, first_line, first_utf8_error
from tinybert.io import atomic_dir, file_sha256, write_json, write_parquet

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string()), ("text_b", pa.string()), ("label", pa.float64())])
SPLITS = ("train", "dev", "test")
# Later stages read a split's rows range by range (augment shards): small row groups let them
# decode only their range instead of the whole split.
SPLIT_ROW_GROUP_ROWS = 1024
MOVIE_REVIEWS_HEADER = "id\tsentiment\ttext"
MOVIE_REVIEWS_LABELS = ["negative", "positive"]
METRICS = {"classification": ("accuracy", "f1", "mcc"), "regression": ("pearson", "spearman")}
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class Examples:
    """Parallel columns; ``labels`` holds raw values until :func:`encode_labels`."""

    ids: list[int]
    texts: list[str]
    texts_b: list[str] | None
    labels: list
    label_column: str  # for error messages


# ----------------------------------------------------------------------------------- reading
def detect_format(cfg: TaskConfig, path: Path) -> str:
    if cfg.source == "embedded:movie-reviews":
        return "movie-reviews"
    with open(path, "rb") as fh:
        first = fh.readline(256).decode("utf-8-sig", "replace").strip()  # an editor's byte-order mark is not text
    if first == MOVIE_REVIEWS_HEADER:
        return "movie-reviews"
    suffix = path.suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if suffix == ".txt" and "\t" in first:
        return "tsv"
    raise InputError(f"{path}: cannot tell the dataset format from its name; set task.format")


def load_columns(path: Path, fmt: str, text_columns: tuple[str, ...] = ()) -> tuple[dict[str, list], dict]:
    """Read the whole file; return its columns (as lists) and features (``datasets``' types,
    none for JSON, whose values come as written: see ``json_table``).

    ``text_columns`` are read as strings from CSV/TSV, not parsed as numbers ("007" stays "007")."""
    import datasets
    from datasets import load_dataset

    # Our error line says what went wrong; datasets' own log lines and progress bars would bury it.
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)  # it logs parse failures as errors
    datasets.disable_progress_bars()
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if fmt == "json":
        return read_json_table(path), {}
    if fmt in ("csv", "tsv", "movie-reviews"):
        # Only empty fields are missing: a text reading "NA" or "null" is text.
        kwargs = {"keep_default_na": False, "na_values": [""], "converters": {c: str for c in text_columns}}
        if fmt != "csv":
            # Tab-separated sentences carry stray quotes (e.g. 9" TV); quoting would swallow rows.
            kwargs.update(delimiter="\t", quoting=3)
        header = _check_header(path, "," if fmt == "csv" else "\t")
        if fmt != "movie-reviews":
            # Every column as its text: the reader types a column from its first 10,000 rows, so
            # a score of 2.5 after 10,000 integers, or any value late in an unused, mostly empty
            # column, would fail the whole file. Labels are parsed here (numbers sort as numbers).
            names = [name or f"Unnamed: {i}" for i, name in enumerate(header)]  # pandas' names for blank ones
            del kwargs["converters"]  # the string type keeps "007" as written, too
            kwargs["features"] = datasets.Features({name: datasets.Value("string") for name in names})
        builder = "csv"
    else:
        kwargs, builder = {}, fmt
        if fmt == "parquet" and _parquet_rows(path) == 0:
            # datasets would fail on it with "BatchSize must be greater than 0"
            raise InputError(f"{path}: no data rows")
    # A throw-away cache: the stage's only output is out_dir, and a stale cache can never win.
    with tempfile.TemporaryDirectory(prefix="tinybert-task-") as cache:
        try:
            # data_files is a glob pattern: "reviews[1].csv" would match reviews1.csv instead.
            ds = load_dataset(builder, data_files=glob.escape(str(path)), split="train", cache_dir=cache,
                              keep_in_memory=True, **kwargs)
        except (datasets.exceptions.DatasetGenerationError, ValueError, OSError) as err:
            if "corresponds to no data" in str(err):  # datasets' words for a file of no rows
                raise InputError(f"{path}: no data rows (a header at most)") from None
            cause = err.__cause__ or err  # datasets wraps the parser's own, clearer error
            if isinstance(cause, UnicodeDecodeError):
                # The CSV reader decodes in chunks and counts the byte's position in its chunk.
                raise first_utf8_error(path) or InputError(f"{path}: {first_line(cause)}") from None
            raise InputError(f"{path}: cannot read as {fmt}: {first_line(cause)}") from None
        return ds.to_dict(), dict(ds.features)


def _parquet_rows(path: Path) -> int | None:
    """The row count in a parquet file's footer; None when unreadable (the reader says why)."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - any failure here is reported by the real read below
        return None


def _check_header(path: Path, delimiter: str) -> list[str]:
    """The header's column names, refusing duplicates: pandas would rename the second one
    ``name.1`` and we would read the first."""
    import csv

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
        try:
            header = next(csv.reader(fh, delimiter=delimiter, quoting=quoting), [])
        except csv.Error:
            return []  # a malformed header: pandas names the problem when it reads the file
    # Empty names (a spreadsheet's trailing commas) are fine: pandas calls them "Unnamed: N".
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once in the header")
    return header


def _at(path: Path, row: int) -> str:
    """A row as a person counts it in the file: from 1, the header not counted (so a CSV's data
    row 1 is its line 2). A 0-based index reads as the row before the one at fault."""
    return f"{path}: data row {row + 1}"


def _column(columns: dict[str, list], name: str, field: str, path: Path) -> list:
    if name not in columns:
        raise InputError(f"{path}: column {name!r} ({field}) not found; columns: {', '.join(columns) or '(none)'}")
    return columns[name]


def _texts(values: list, ids: list[int], name: str, path: Path) -> list[str]:
    out = []
    for i, value in zip(ids, values):
        _not_nested(value, i, name, path)
        text = "" if value is None else " ".join(str(value).split())
        if not text:
            raise InputError(f"{_at(path, i)}: empty text in column {name!r}")
        out.append(text)
    return out


def read_examples(cfg: TaskConfig, path: Path, fmt: str) -> tuple[Examples, list[str] | None]:
    """Rows in source order and, when the format implies them, default label names."""
    if fmt == "movie-reviews":
        _fixed_movie_reviews_columns(cfg, path)
    text_columns = ("text",) if fmt == "movie-reviews" else tuple(c for c in (cfg.text_column, cfg.text_b_column) if c)
    columns, features = load_columns(path, fmt, text_columns)
    if fmt == "movie-reviews":
        scores = _column(columns, "sentiment", "movie-reviews score", path)
        raw_texts = _column(columns, "text", "movie-reviews text", path)
        ids, texts, labels = [], [], []
        for i, (score, text) in enumerate(zip(scores, raw_texts)):
            value = _number(score, i, "sentiment", path)
            if cfg.task_type == "classification":
                if value == 0:
                    continue  # neither positive nor negative: not a binary example
                value = MOVIE_REVIEWS_LABELS[value > 0]
            ids.append(i)
            texts.append(text)
            labels.append(value)
        return Examples(ids, _texts(texts, ids, "text", path), None, labels, "sentiment"), MOVIE_REVIEWS_LABELS

    raw_texts = _column(columns, cfg.text_column, "task.text_column", path)
    raw_b = _column(columns, cfg.text_b_column, "task.text_b_column", path) if cfg.text_b_column else None
    labels = _column(columns, cfg.label_column, "task.label_column", path)
    ids = list(range(len(raw_texts)))
    texts = _texts(raw_texts, ids, cfg.text_column, path)
    texts_b = _texts(raw_b, ids, cfg.text_b_column, path) if raw_b is not None else None
    names = None
    feature = features.get(cfg.label_column)
    if isinstance(getattr(feature, "names", None), list):  # a datasets ClassLabel: ints with names
        names = list(feature.names)
        for i, v in zip(ids, labels):
            if v is not None and not 0 <= v < len(names):  # -1 is datasets' "no label" (GLUE test splits)
                raise InputError(f"{_at(path, i)}: label {v} in column {cfg.label_column!r} is not a class of "
                                 f"{names}{' (-1: unlabelled row)' if v == -1 else ''}")
        labels = [None if v is None else names[v] for v in labels]
    return Examples(ids, texts, texts_b, list(labels), cfg.label_column), names


def _fixed_movie_reviews_columns(cfg: TaskConfig, path: Path) -> None:
    """The movie-reviews layout's columns are fixed: a column set by hand would be ignored, and a
    second text column would silently make a pair task single-sentence."""
    defaults = TaskConfig.model_fields
    for field in ("text_column", "text_b_column", "label_column"):
        value = getattr(cfg, field)
        if value != defaults[field].default:
            raise InputError(f"{path}: task.{field}={value!r}, but the movie-reviews layout has fixed columns "
                             "(id, sentiment, text); leave task.text_column, text_b_column and label_column "
                             "at their defaults, or set task.format: tsv to choose columns")


def _not_nested(value, row: int, column: str, path: Path) -> None:
    # str() would silently turn ["good", "movie"] into the text "['good', 'movie']".
    if isinstance(value, (list, dict, bytes)):
        raise InputError(f"{_at(path, row)}: column {column!r} holds a {type(value).__name__}, not a single value "
                         "(a JSON file needs one object per row)")


def _finite_number(value) -> float | None:
    """An int or float, or (CSV/TSV, read as text) a string that reads as a finite one; else None.
    True and False are not numbers here, although Python would add them."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(value, row: int, column: str, path: Path) -> float:
    number = _finite_number(value)
    if number is None:
        raise InputError(f"{_at(path, row)}: label {value!r} in column {column!r} is not a number")
    return number


# ----------------------------------------------------------------------------------- labels
def _label_key(value) -> str:
    """The class a label names: its text without the blanks around it and, for a number, its
    value. CSV/TSV columns are read as text, so "1", "1.0" and " 1" must be one class, "1", as
    the float 1.0 of a JSON file or of an integer column with gaps is."""
    text = str(value).strip()
    if isinstance(value, bool):
        return text
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return str(int(text))  # exact however many digits
    number = _finite_number(text)
    if number is None:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


# How spreadsheets and R write a missing value. Texts keep them ("NA" can be a sentence); a label
# column holding one is missing a label, not showing one more class.
MISSING_MARKERS = frozenset({"NA", "N/A", "#N/A", "NaN", "nan", "NULL", "null"})


def encode_labels(cfg: TaskConfig, ex: Examples, path: Path, implied: list[str] | None) -> list[str] | None:
    """Replace ``ex.labels`` by floats (class ids or values); return the label names."""
    column = ex.label_column
    for i, value in zip(ex.ids, ex.labels):
        _not_nested(value, i, column, path)
    if cfg.task_type == "regression":
        ex.labels = [_number(v, i, column, path) for i, v in zip(ex.ids, ex.labels)]
        return None
    for i, value in zip(ex.ids, ex.labels):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise InputError(f"{_at(path, i)}: missing label in column {column!r}")
        if isinstance(value, float) and math.isinf(value):
            raise InputError(f"{_at(path, i)}: label {value!r} in column {column!r} is not a finite number")
        if isinstance(value, str) and value.strip() in MISSING_MARKERS and value.strip() not in (cfg.label_names or ()):
            raise InputError(f"{_at(path, i)}: missing label in column {column!r} ({value!r}; if it is a class, "
                             "list it in task.label_names)")
    if cfg.label_names is not None:
        names = list(cfg.label_names)
    elif implied is not None:
        names = implied
    else:
        distinct = {_label_key(v) for v in ex.labels}
        numbers = {key for key in distinct if _finite_number(key) is not None}
        numeric = numbers == distinct
        if numbers and not numeric:
            _refuse_labels_mixing_numbers_and_words(ex, column, path)
        names = sorted(distinct, key=(lambda k: float(k)) if numeric else None)
    index: dict[str, int] = {}
    for k, name in enumerate(names):
        key = _label_key(name)
        if key in index:
            raise InputError(f"task.label_names: {names[index[key]]!r} and {name!r} name the same class")
        index[key] = k
    encoded = []
    for i, value in zip(ex.ids, ex.labels):
        key = _label_key(value)
        if key not in index:
            raise InputError(f"{_at(path, i)}: label {key!r} is not in label_names {names}")
        encoded.append(float(index[key]))
    if len(names) < 2:
        raise InputError(f"{path}: column {column!r}: the single label {names[0]!r}; classification needs two or more")
    ex.labels = encoded
    return names


def _refuse_labels_mixing_numbers_and_words(ex: Examples, column: str, path: Path) -> None:
    """Classes inferred from labels such as 1, 0 and "pos" (or true) would be three: more
    likely a mislabelled row or two datasets joined than a real class."""
    for i, value in zip(ex.ids, ex.labels):
        if _finite_number(_label_key(value)) is None:
            kind = "true/false" if isinstance(value, bool) else "a word"
            raise InputError(f"{_at(path, i)}: label {value!r} in column {column!r} is {kind} but other labels "
                             "are numbers; list every class in task.label_names if it is one")


# ----------------------------------------------------------------------------------- sampling
def sample(ex: Examples, max_examples: int | None, seed: int) -> Examples:
    """A seeded random subset of ``max_examples`` rows, kept in source order."""
    if max_examples is None or max_examples >= len(ex.ids):
        return ex
    keep = np.sort(np.random.default_rng(seed).permutation(len(ex.ids))[:max_examples])
    pick = lambda col: None if col is None else [col[k] for k in keep]  # noqa: E731
    return Examples(pick(ex.ids), pick(ex.texts), pick(ex.texts_b), pick(ex.labels), ex.label_column)


def split_order(labels: list[float], stratified: bool, seed: int) -> np.ndarray:
    """Row positions in the order test, dev, train are cut from.

    Stratified: each class is shuffled, its k-th row placed at (k + 0.5) / class size, and
    all rows sorted by that position, so every contiguous block (each split) holds the classes
    in about their overall proportions, while the split sizes stay exact.
    """
    rng = np.random.default_rng(seed)
    if not stratified:
        return rng.permutation(len(labels))
    by_class: dict[float, list[int]] = {}
    for pos, label in enumerate(labels):
        by_class.setdefault(label, []).append(pos)
    keyed = []
    for label in sorted(by_class):
        members = rng.permutation(by_class[label])
        keyed += [((k + 0.5) / len(members), label, int(pos)) for k, pos in enumerate(members)]
    return np.array([pos for _, _, pos in sorted(keyed)], dtype=np.int64)


def split(cfg: TaskConfig, ex: Examples, path: Path) -> dict[str, list[int]]:
    n = len(ex.ids)
    # ceil, as scikit-learn does: a non-zero fraction never yields an empty dev or test split.
    n_test = math.ceil(n * cfg.test_fraction - 1e-9)
    n_dev = math.ceil(n * cfg.dev_fraction - 1e-9)
    if n - n_test - n_dev < 1:
        raise InputError(
            f"{path}: {n} rows leave the train split empty "
            f"(dev_fraction={cfg.dev_fraction}, test_fraction={cfg.test_fraction}); need at least 3 rows"
        )
    order = split_order(ex.labels, cfg.task_type == "classification", cfg.seed)
    parts = {"test": order[:n_test], "dev": order[n_test:n_test + n_dev], "train": order[n_test + n_dev:]}
    return {name: sorted(int(p) for p in parts[name]) for name in SPLITS}


def _table(ex: Examples, positions: list[int]) -> pa.Table:
    return pa.table({
        "id": [ex.ids[p] for p in positions],
        "text": [ex.texts[p] for p in positions],
        "text_b": [ex.texts_b[p] for p in positions] if ex.texts_b is not None else [None] * len(positions),
        "label": [ex.labels[p] for p in positions],
    }, schema=SCHEMA)


# ----------------------------------------------------------------------------------- stage
def run(cfg: TaskConfig, *, out_dir: Path) -> None:
    """Write the split task dataset to ``out_dir`` (atomically); raise InputError on bad input.

    ``labels.json``: task_type, label_names (null for regression), metric, num_labels (1 for
    regression), source (as configured), source_sha256, rows per split, majority_class (the
    most frequent train class, null for regression), text_b (whether rows are pairs) and
    glue_task (the GLUE task's name, null for other data; :mod:`tinybert.task_defaults`).
    """
    if cfg.metric not in METRICS[cfg.task_type]:
        fitting = ", ".join(METRICS[cfg.task_type])
        raise InputError(f"task.metric: {cfg.metric!r} does not fit a {cfg.task_type} task; use one of: {fitting}")
    path = resolve(cfg.source, "task.source")
    if cfg.format == "glue" and not path.is_dir():
        raise InputError(f"{path}: task.format glue reads a GLUE task folder (train.tsv, dev.tsv), not a file")
    if cfg.format == "glue" or (cfg.format == "auto" and path.is_dir()):
        cfg, examples, names = read_glue(cfg, path)
        train = sample(examples.pop("train"), cfg.max_examples, cfg.seed)
        order = split_order(train.labels, cfg.task_type == "classification", cfg.seed)
        n_test = math.ceil(len(order) * cfg.test_fraction - 1e-9)
        if len(order) - n_test < 1:
            raise InputError(f"{path / 'train.tsv'}: {len(order)} rows leave the train split empty once the held-out "
                             f"test slice (test_fraction={cfg.test_fraction}) is taken; need at least 2 rows")
        # GLUE's test labels are hidden: "test" is a held-out slice of train; dev is GLUE's dev.
        parts = {"train": (train, sorted(int(p) for p in order[n_test:])), "test": (train, sorted(int(p) for p in order[:n_test]))}
        parts.update({name: (ex, list(range(len(ex.ids)))) for name, ex in examples.items()})
        _write(cfg, out_dir, path, names, parts, eval_splits=[*examples, "test"])
        return
    if not path.is_file():
        raise InputError(f"{path}: task.source must be a file, not a folder")
    fmt = detect_format(cfg, path) if cfg.format == "auto" else cfg.format
    examples, implied = read_examples(cfg, path, fmt)
    if not examples.ids:
        raise InputError(f"{path}: no rows left after cleaning (format {fmt})")
    names = encode_labels(cfg, examples, path, implied)
    examples = sample(examples, cfg.max_examples, cfg.seed)
    positions = split(cfg, examples, path)
    _write(cfg, out_dir, path, names, {name: (examples, positions[name]) for name in SPLITS}, eval_splits=["dev", "test"])


def _write(cfg: TaskConfig, out_dir: Path, path: Path, names, parts: dict[str, tuple[Examples, list[int]]], eval_splits) -> None:
    if cfg.task_type == "regression":
        # Scored by correlation, which one row cannot give: better now than after training.
        short = next(((name, len(parts[name][1])) for name in eval_splits if len(parts[name][1]) < 2), None)
        if short is not None:
            raise InputError(f"{path}: the {short[0]} split has {short[1]} row(s); a regression task is scored by "
                             "correlation, which needs at least 2 (add rows or raise task.dev_fraction/test_fraction)")
    majority = None
    if names is not None:
        train, positions = parts["train"]
        counts = Counter(train.labels[p] for p in positions)
        majority = names[int(min(counts, key=lambda c: (-counts[c], c)))]
    info = {
        "task_type": cfg.task_type,
        "label_names": names,
        "metric": cfg.metric,
        "num_labels": len(names) if names is not None else 1,
        "source": cfg.source,  # as configured, so labels.json does not depend on the machine
        "source_sha256": _source_sha256(path),
        "rows": {name: len(positions) for name, (_, positions) in parts.items()},
        "eval_splits": list(eval_splits),
        "majority_class": majority,
        "text_b": next(iter(parts.values()))[0].texts_b is not None,
        # for the per-task defaults: set by read_glue for a GLUE folder, or named for a file
        "glue_task": glue_task_name(path, cfg.glue_task) if cfg.glue_task or path.is_dir() else None,
    }
    with atomic_dir(out_dir) as tmp:
        for name, (examples, positions) in parts.items():
            write_parquet(_table(examples, positions), tmp / f"{name}.parquet", row_group_rows=SPLIT_ROW_GROUP_ROWS)
        write_json(tmp / "labels.json", info)


def _source_sha256(path: Path) -> str:
    """The file's sha256; for a folder (GLUE), the sha256 of its files' names and hashes."""
    if path.is_file():
        return file_sha256(path)
    listing = "".join(f"{f.relative_to(path)} {file_sha256(f)}\n" for f in sorted(path.rglob("*.tsv")))
    return hashlib.sha256(listing.encode()).hexdigest()


def read_glue(cfg: TaskConfig, folder: Path) -> tuple[TaskConfig, dict[str, Examples], list[str] | None]:
    """A GLUE task folder: its train and dev splits, labels encoded in the reference's order.

    The task's own label names, task type and metric replace the configured ones."""
    name = glue_task_name(folder, cfg.glue_task)
    spec = GLUE_TASKS[name]
    cfg = cfg.model_copy(update={
        "task_type": "classification" if spec.label_names else "regression",
        "label_names": spec.label_names,
        "metric": spec.metric,
        "glue_task": name,
    })
    examples, names = {}, None
    for file_name in ("train.tsv", *spec.dev_files):
        path = folder / file_name
        rows, texts, texts_b, labels = read_glue_file(path, spec)
        if not rows:
            raise InputError(f"{path}: no rows")
        ex = Examples(
            rows,
            _texts(texts, rows, str(spec.text), path),
            _texts(texts_b, rows, str(spec.text_b), path) if texts_b is not None else None,
            labels,
            str(spec.label),
        )
        names = encode_labels(cfg, ex, path, spec.label_names)
        examples["train" if file_name == "train.tsv" else split_name(file_name)] = ex
    return cfg, examples, names
