"""``tinybert lineage PATH``: which stages, data, parameters and code produced an artifact.

Reads what DVC recorded in ``dvc.lock`` (the hashes of every input and output of the last
run of each stage, and the parameter values it used) plus the git revision.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tinybert.errors import InputError
from tinybert.stages import BY_NAME, producer_of


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def upstream(stage_name: str) -> list[str]:
    """``stage_name`` and every stage it depends on, producers first."""
    order: list[str] = []

    def visit(name: str) -> None:
        for dep in BY_NAME[name].deps.values():
            producer = producer_of(dep)
            if producer and producer.name not in order:
                visit(producer.name)
        if name not in order:
            order.append(name)

    visit(stage_name)
    return order


def _flatten(prefix: str, value) -> list[str]:
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in _flatten(f"{prefix}.{k}" if prefix else str(k), v)]
    return [f"{prefix} = {value!r}"]


def _hash(entry: dict) -> str:
    digest = entry.get("md5") or entry.get("etag") or "?"
    extra = f", {entry['nfiles']} files" if "nfiles" in entry else ""
    return f"md5 {digest}{extra}"


def lineage_report(path: str, lock_path: str | Path = "dvc.lock") -> str:
    stage = producer_of(path)
    if stage is None:
        raise InputError(f"{path}: not an output of any pipeline stage (see dvc.yaml)")
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        raise InputError(f"{lock_path}: not found; run `dvc repro` first")
    lock = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
    head = _git("rev-parse", "--short", "HEAD") or "no git revision"
    dirty = " (uncommitted changes)" if _git("status", "--porcelain", "--", "dvc.lock", "params.yaml", "tinybert") else ""
    lines = [
        f"{path} was produced by stage '{stage.name}'",
        f"git revision: {head}{dirty}; dvc.lock last committed in {_git('log', '-1', '--format=%h %ad', '--date=short', '--', str(lock_path)) or 'no commit'}",
    ]
    for name in upstream(stage.name):
        entry = lock.get(name)
        lines.append("")
        lines.append(f"stage {name}: {BY_NAME[name].cmd}")
        if entry is None:
            lines.append("  not run yet (no entry in dvc.lock)")
            continue
        for file_params in (entry.get("params") or {}).values():
            lines.append("  params:")
            lines += [f"    {line}" for line in _flatten("", file_params)]
        lines.append("  inputs:")
        lines += [f"    {d['path']}  {_hash(d)}" for d in entry.get("deps", [])]
        lines.append("  outputs:")
        lines += [f"    {o['path']}  {_hash(o)}" for o in entry.get("outs", [])]
        lines += _source_fingerprints(name)
    return "\n".join(lines)


def _source_fingerprints(name: str) -> list[str]:
    """Sources named by a parameter (a dataset or corpus file) are not DVC dependencies; the stage
    records their checksum in its output, shown here."""
    lines = []
    for out in BY_NAME[name].outs.values():
        for record in ("manifest.json", "labels.json"):
            path = Path(out) / record
            if path.is_file():
                info = yaml.safe_load(path.read_text())
                if isinstance(info, dict) and info.get("source_sha256"):
                    lines.append(f"  source: {info.get('source')}  sha256 {info['source_sha256']}")
    return lines
