"""Method registry. Every method module is imported here explicitly (no discovery magic).

``create_method(name, **options)`` builds one; ``list_methods()`` is what the registry test
parametrises over, so a newly registered method is tested automatically.
"""

from __future__ import annotations

from typing import Any

from mmbalance.errors import ConfigError
from mmbalance.methods.agm import AGM
from mmbalance.methods.aim.method import AIM
from mmbalance.methods.base import Method, NoOptions, TrainState
from mmbalance.methods.diag_relearn import DiagRelearn
from mmbalance.methods.gblending import GBlending
from mmbalance.methods.greedy import Greedy
from mmbalance.methods.inforeg import InfoReg
from mmbalance.methods.joint import Joint
from mmbalance.methods.mla import MLA
from mmbalance.methods.mmpareto import MMPareto
from mmbalance.methods.ogm import OGM, OGMGE
from mmbalance.methods.opm import OPM, OPMOGM
from mmbalance.methods.pmr import PMR
from mmbalance.methods.unimodal import Unimodal

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Joint,
        Unimodal,
        AIM,
        OGM,
        OGMGE,
        OPM,
        OPMOGM,
        PMR,
        AGM,
        GBlending,
        Greedy,
        MLA,
        DiagRelearn,
        MMPareto,
        InfoReg,
    )
}


def register_method(cls: type[Method], *, replace: bool = False) -> type[Method]:
    """Make a :class:`Method` subclass known by its ``name`` to configs, ``compare`` grids and
    :func:`mmbalance.train`, without editing the package. Usable as a class decorator::

        @mmbalance.register_method
        class Mine(mmbalance.Method):
            name = "mine"
            def loss(self, output, batch, state): ...

    A name already taken is refused unless ``replace=True``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(f"register_method: expected a Method subclass; got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == Method.name:
        raise ConfigError(
            f"register_method: {cls.__name__} needs a class attribute 'name' of its own "
            "(the name configs use)"
        )
    if name in METHODS and METHODS[name] is not cls and not replace:
        raise ConfigError(
            f"register_method: the name {name!r} is taken by {METHODS[name].__name__}; choose "
            "another name or pass replace=True"
        )
    METHODS[name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of every registered method."""
    return list(METHODS)


def create_method(name: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Method:
    """Build method ``name`` with hyper-parameters from ``options`` and/or keyword arguments."""
    if name not in METHODS:
        raise ConfigError(f"method.name: got {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name].from_config({**(options or {}), **kwargs})


__all__ = [
    "METHODS",
    "Method",
    "NoOptions",
    "TrainState",
    "create_method",
    "list_methods",
    "register_method",
]
