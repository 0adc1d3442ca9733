"""Datasets: built-in (synthetic, UCI mfeat), users' arrays, and the split machinery."""

from mmbalance.data.base import DataSplits, MultimodalTensorDataset, check_arrays
from mmbalance.data.datasets.assemble import assemble_splits
from mmbalance.data.datasets.synthetic import (
    SyntheticModality,
    SyntheticOptions,
    generate_synthetic,
)
from mmbalance.data.registry import DATASETS, build_data, from_tensors
from mmbalance.data.splits import stratified_split

__all__ = [
    "DATASETS",
    "DataSplits",
    "MultimodalTensorDataset",
    "SyntheticModality",
    "SyntheticOptions",
    "assemble_splits",
    "build_data",
    "check_arrays",
    "from_tensors",
    "generate_synthetic",
    "stratified_split",
]
