"""Datasets the project generates with real tools (eSpeak NG speech, mfeat handwriting): the
imbalance suite (``docs/benchmarks.md``). Written once into the layouts the field's loaders read,
then read by those loaders like any user's dataset."""

from mmbalance.data.prepare.generate.store import ensure_generated, generate, generated_names

__all__ = ["ensure_generated", "generate", "generated_names"]
