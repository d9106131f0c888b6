"""Distillation: one loop and one objective, run by the general and the task distillation stages."""
