"""The table the main command ends with, built from the evaluate stage's metrics."""
from __future__ import annotations

from pathlib import Path

from tinybert.errors import InputError, first_line
from tinybert.io import read_json


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def retention_percent(ratio: float | None) -> str:
    """A student's share of its teacher's score; None when the teacher scored 0 (MCC can)."""
    return "n/a (teacher at 0)" if ratio is None else f"{ratio:.1%}"


def summary_table(metrics_path: str | Path = "data/evaluation/metrics.json") -> str:
    try:
        report = read_json(metrics_path)
        metric = report["metric"]
        t, s = report["teacher"], report["student"]
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise InputError(f"{metrics_path}: not the evaluate stage's metrics ({first_line(err)})") from None
    rows = [
        ("", "teacher", "student", "student / teacher"),
    ]
    splits = report.get("splits", ["dev", "test"])
    rows += [
        (f"{name} {metric}", f"{t[name][metric]:.4f}", f"{s[name][metric]:.4f}", retention_percent(report["retention"][name]))
        for name in splits
    ]
    if "f1" in t["dev"]:
        rows.append(("dev F1", f"{t['dev']['f1']:.4f}", f"{s['dev']['f1']:.4f}", ""))
    rows += [
        ("parameters", f"{t['parameters'] / 1e6:.1f}M", f"{s['parameters'] / 1e6:.1f}M", f"1/{report['size_ratio']:.1f}"),
        ("size on disk", _mb(t["disk_bytes"]), _mb(s["disk_bytes"]), f"{s['disk_bytes'] / t['disk_bytes']:.2f}"),
        ("CPU throughput (ex/s)", f"{t['throughput_per_s']:.1f}", f"{s['throughput_per_s']:.1f}", f"{report['speedup']:.1f}x"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if "majority_baseline" in report:
        base = report["majority_baseline"]
        lines.append("majority-class baseline: " + ", ".join(f"{name} {base[name]:.4f}" for name in splits))
    return "\n".join(lines)
