"""tinybert: TinyBERT distillation (Jiao et al., 2019) as a reproducible pipeline."""

__version__ = "0.1.0"
