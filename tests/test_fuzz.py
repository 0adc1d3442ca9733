"""Property tests: hostile configs, overrides and arrays end in a documented, clear error
(:class:`MMBalanceError`) or a valid object — never another exception.

CI runs the ``ci`` profile; ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py``
runs 40x more examples per property.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmbalance.config import ExperimentConfig, apply_overrides
from mmbalance.data.registry import from_tensors
from mmbalance.errors import MMBalanceError
from mmbalance.methods import METHODS, create_method
from mmbalance.models.builder import build_model

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

KEYS = {
    "data": [
        "name",
        "modalities",
        "options",
        "val_fraction",
        "test_fraction",
        "batch_size",
        "eval_batch_size",
        "num_workers",
        "split_seed",
    ],
    "model": ["encoder", "encoders", "fusion", "fusion_options", "unimodal_heads", "pretrained"],
    "method": ["name", "options"],
    "optim": [
        "name",
        "lr",
        "momentum",
        "weight_decay",
        "betas",
        "scheduler",
        "step_size",
        "gamma",
        "grad_clip",
    ],
    "train": ["epochs", "device", "select_metric", "progress", "deterministic"],
}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def configs(draw: st.DrawFn) -> dict:
    out: dict = {}
    for section, keys in KEYS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from([*keys, "bogus"]), max_size=4, unique=True))
            out[section] = {k: draw(values) for k in chosen}
    if draw(st.booleans()):
        out[draw(st.sampled_from(["seed", "name", "output_dir", "extra"]))] = draw(values)
    return out


@given(configs())
def test_any_config_is_valid_or_a_clear_error(raw: dict) -> None:
    try:
        cfg = ExperimentConfig.from_dict(raw)
    except MMBalanceError:
        return
    assert isinstance(cfg, ExperimentConfig)
    if cfg.method.name in METHODS:  # a valid config builds its method or says why not
        with contextlib.suppress(MMBalanceError):
            create_method(cfg.method.name, cfg.method.options)


@given(
    st.lists(
        st.sampled_from([f"{s}.{k}" for s, ks in KEYS.items() for k in ks]), min_size=1, max_size=3
    ),
    st.lists(st.text(max_size=15), min_size=3, max_size=3),
)
def test_any_override_is_applied_or_a_clear_error(keys: list[str], raws: list[str]) -> None:
    data = ExperimentConfig().to_dict()
    for key, raw in zip(keys, raws, strict=False):
        try:
            data = apply_overrides(data, [f"--{key}={raw}"])
        except MMBalanceError:
            continue
    with contextlib.suppress(MMBalanceError):
        ExperimentConfig.from_dict(data)


dims = st.lists(st.integers(0, 6), min_size=0, max_size=4)


@given(
    n=st.integers(0, 30),
    shapes=st.dictionaries(st.sampled_from(["a", "b", "c"]), dims, min_size=0, max_size=3),
    label_kind=st.sampled_from(["int", "float", "negative", "2d", "short"]),
    poison=st.sampled_from([None, "nan", "inf"]),
)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_any_arrays_become_splits_and_a_model_or_a_clear_error(
    n: int, shapes: dict, label_kind: str, poison: str | None
) -> None:
    rng = np.random.default_rng(0)
    inputs = {m: rng.standard_normal((n, *s)).astype(np.float32) for m, s in shapes.items()}
    if poison and inputs and n and all(math.prod(s) for s in shapes.values()):
        next(iter(inputs.values())).flat[0] = np.nan if poison == "nan" else np.inf
    labels = {
        "int": rng.integers(0, 3, n),
        "float": rng.random(n),
        "negative": -rng.integers(1, 3, n),
        "2d": rng.integers(0, 3, (n, 2)),
        "short": rng.integers(0, 3, max(n - 1, 0)),
    }[label_kind]
    try:
        data = from_tensors(inputs, labels, val_fraction=0.2, test_fraction=0.2)
    except MMBalanceError:
        return
    try:
        model = build_model(_model_cfg(), data.shapes, data.num_classes)
    except MMBalanceError:
        return
    batch = {m: torch.as_tensor(np.asarray(x[:2])) for m, x in inputs.items()}
    if all(len(x) == 2 for x in batch.values()):
        model.eval()
        out = model(batch)
        assert out.logits.shape == (2, data.num_classes)


def _model_cfg():
    from mmbalance.config import ModelConfig

    return ModelConfig()


@pytest.mark.parametrize("bad", ["--optim.lr", "--=3", "--optim.lr=[", "--optim.lr.x=1"])
def test_malformed_overrides_are_clear_errors(bad: str) -> None:
    with pytest.raises(MMBalanceError):
        apply_overrides(ExperimentConfig().to_dict(), [bad])


@given(
    blob=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda b: b"\x93NUMPY" + b, st.binary(max_size=200)),
        st.builds(lambda b: b"\x80\x04" + b, st.binary(max_size=200)),
        st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=200)),
    ),
    suffix=st.sampled_from([".npy", ".pkl", ".pt"]),
)
def test_any_file_bytes_load_or_give_a_clear_error(
    tmp_path_factory, blob: bytes, suffix: str
) -> None:
    from mmbalance.data.media.audiovisual import load_array
    from mmbalance.training.checkpoint import load_checkpoint

    path = tmp_path_factory.mktemp("blob") / f"x{suffix}"
    path.write_bytes(blob)
    for load in (load_array, load_checkpoint):
        with contextlib.suppress(MMBalanceError):
            load(path)
