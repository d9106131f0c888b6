"""Inputs: the unlabelled corpus for general distillation and the labelled task's splits."""
