"""The source files a stage's code runs through, found from its imports.

DVC rebuilds a stage when one of its declared dependencies changes, and ``dvc.lock`` records
their hashes: that is how a user learns which code made an artifact. Listing the files by hand
drifted (prepare-task read GLUE files through a module it did not list), so each stage's code
dependencies are the modules of this package its module imports, directly or through others,
found by reading the import statements (imports inside functions included), plus the package
``__init__`` files Python runs on the way and the data files those modules read.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "tinybert"
ROOT = Path(__file__).resolve().parent.parent

# Files a module reads at run time, beside its own source.
DATA_FILES = {"tinybert/augment/words.py": ("tinybert/augment/stopwords.txt",)}


def code_dependencies(module: str) -> tuple[str, ...]:
    """Repository-relative paths of every file ``module`` (dotted name) depends on, sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_package_chain(name))
        todo.extend(_imported(name))
    files = {_relative(_source(name)) for name in seen}
    files |= {data for path in list(files) for data in DATA_FILES.get(path, ())}
    return tuple(sorted(files))


def code_sha256(module: str) -> str:
    """One digest of the contents of :func:`code_dependencies`: changes exactly when DVC would
    see the stage's code change."""
    digest = hashlib.sha256()
    for path in code_dependencies(module):
        digest.update(f"{path}\0".encode())
        digest.update(ROOT.joinpath(path).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _package_chain(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@lru_cache(maxsize=None)
def _imported(name: str) -> tuple[str, ...]:
    """Modules of this package that ``name`` imports (``from a import b`` gives a.b when b is a module)."""
    source = _source(name)
    package = name if source.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), filename=str(source))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return tuple(dict.fromkeys(m for m in found if _is_module(m)))


def _is_module(name: str) -> bool:
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return False
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _source(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()
