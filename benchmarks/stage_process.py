"""Run one pipeline stage in a fresh interpreter and measure it, for the memory benchmarks."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_measured(setup: str, call: str, cpu: dict | None = None) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, manifest) of ``call`` run in a fresh Python process; with ``cpu``,
    its user and system CPU seconds (``user``, ``sys``) are stored there too.

    ``setup`` holds the imports; ``call`` is a stage's ``run(...)`` whose ``out_dir`` is written
    ``OUT``. Checkpoints and output go to a temporary folder. Peak RSS is that of the largest
    process: the stage's own, or one of its worker processes."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            f"import os, resource; from pathlib import Path; os.environ['TINYBERT_CHECKPOINTS'] = {tmp!r}; "
            f"{setup}; OUT = Path({tmp!r}) / 'out'; {call}; "
            "me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime, max(me.ru_maxrss, kids.ru_maxrss))"
        )
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        seconds = time.perf_counter() - began
        manifest = json.loads((Path(tmp) / "out" / "manifest.json").read_text())
    user, system, peak = done.stdout.split()[-3:]
    if cpu is not None:
        cpu.update(user=float(user), sys=float(system))
    return seconds, int(peak) / 1024, manifest
