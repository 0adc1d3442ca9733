"""The experiment configuration: typed sections, YAML loading and ``--a.b=value`` overrides.

A config is refused before training when any field is wrong; the message names the field, the
value and what is allowed (see :mod:`mmbalance.structured`). Dataset-, encoder- and
method-specific options are free-form mappings here and are validated by the component that
owns them (``get_default_config()`` dataclasses), when the experiment is built.
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmbalance.errors import ConfigError
from mmbalance.structured import check_positive, fill_defaults, from_dict, init_fields, to_dict


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers: ``1e-3``, ``1E5``, ``.5`` and ``5.`` are
    floats. PyYAML implements YAML 1.1, whose float needs a dot and a signed exponent, so
    ``lr: 1e-3`` would otherwise arrive as the string ``'1e-3'`` and be refused."""


YAMLLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`YAMLLoader` (every number form a person writes)."""
    return yaml.load(text, Loader=YAMLLoader)


@dataclass
class DataConfig:
    """Which dataset, which modalities, how it is split and batched."""

    name: str = "mfeat"
    # classification: class indices; regression: float targets [N] or [N, T] (docs/regression.md)
    task: Literal["classification", "regression"] = "classification"
    modalities: list[str] | None = None  # None: every modality the dataset has
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific, validated there
    val_fraction: float = 0.15  # carved (stratified, seeded) from train when there is no val split
    test_fraction: float = 0.2  # only for datasets that ship no test split
    split_seed: int = 0
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 0
    # A dataset the project generates (``mmbalance list``: digits_av, digits_seq, digits_vec),
    # written into ``options.root`` the first time that folder is missing, then read by the
    # loader ``name`` like any other folder (``docs/benchmarks.md``).
    generate: str | None = None

    def validate(self, where: str) -> None:
        if self.generate is not None:
            from mmbalance.data.prepare.generate import generated_names

            if self.generate not in generated_names():
                raise ConfigError(
                    f"{where}.generate: got {self.generate!r}; expected one of "
                    f"{', '.join(generated_names())}"
                )
            if not self.options.get("root"):
                raise ConfigError(
                    f"{where}.options.root: required with {where}.generate (the folder the "
                    "generated dataset is written to and read from)"
                )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{where}.{name}: got {value!r}; expected 0 <= value < 1")
        check_positive(self.batch_size, f"{where}.batch_size")
        check_positive(self.eval_batch_size, f"{where}.eval_batch_size")
        check_positive(self.num_workers, f"{where}.num_workers", allow_zero=True)
        if self.modalities is not None and not self.modalities:
            raise ConfigError(
                f"{where}.modalities: got []; expected the modality names to use, or null for all"
            )
        if self.modalities is not None and len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"{where}.modalities: got {self.modalities!r}; names must be unique")


@dataclass
class ModelConfig:
    """Encoders (one per modality), fusion and head.

    ``encoder`` applies to every modality; ``encoders`` overrides it per modality name. An
    encoder block is a mapping with ``type`` (``auto``, ``resnet18``, ``transformer``, ``mlp``)
    and that encoder's options.
    """

    encoder: dict[str, Any] = field(default_factory=lambda: {"type": "auto"})
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fusion: str = "concat"
    fusion_options: dict[str, Any] = field(default_factory=dict)
    unimodal_heads: bool = True  # light heads on detached features: per-modality accuracy
    pretrained: dict[str, str] = field(default_factory=dict)  # modality -> weights file

    def validate(self, where: str) -> None:
        """Every encoder mapping checked now (family, option names, values); ``auto`` and the
        defaults are resolved when the data's shapes are known, and a run's config.yaml
        records the result per modality (``model.encoders``)."""
        from mmbalance.models.builder import check_encoder_spec

        check_encoder_spec(self.encoder, f"{where}.encoder")
        for m, spec in self.encoders.items():
            check_encoder_spec(spec, f"{where}.encoders.{m}")


def _resolved_data_options(name: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """The dataset's options with every default filled in, at every depth (a synthetic
    modality's ``strength``, ``noise``, ...), so ``config.yaml`` holds the whole dataset section;
    unknown names are refused here, at every depth. Values are checked when the data is built
    (:func:`check_data_options` checks them without building), and written as given (``~``
    not expanded: a run folder's config.yaml stays usable on another machine)."""
    from mmbalance.data.registry import DATASETS

    if name not in DATASETS:
        raise ConfigError(
            f"{where.rsplit('.', 1)[0]}.name: got {name!r}; expected one of {', '.join(DATASETS)}"
        )
    return fill_defaults(DATASETS[name].options_cls, options, where)


def check_data_options(config: ExperimentConfig) -> None:
    """The checks the dataset's options get when the data is built (types, ranges, required
    fields), without building it: what ``--print-config`` runs before printing."""
    from mmbalance.data.registry import DATASETS

    from_dict(
        DATASETS[config.data.name].options_cls, copy.deepcopy(config.data.options), "data.options"
    )


@dataclass
class MethodConfig:
    """The balancing method and its hyper-parameters (validated by the method itself)."""

    name: str = "joint"
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        """Check the name and the options against the method's own ``Options`` now, and keep
        them resolved (every default filled in), so ``config.yaml`` holds the whole method."""
        from mmbalance.methods import METHODS

        if self.name not in METHODS:
            raise ConfigError(
                f"{where}.name: got {self.name!r}; expected one of {', '.join(METHODS)}"
            )
        self.options = init_fields(
            from_dict(METHODS[self.name].Options, self.options, f"{where}.options")
        )


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and gradient clipping."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: Literal["step", "cosine", "none"] = "step"
    step_size: int = 70
    gamma: float = 0.1
    min_lr: float = 0.0
    grad_clip: float | None = None  # max global L2 norm; None disables clipping

    def validate(self, where: str) -> None:
        check_positive(self.lr, f"{where}.lr")
        check_positive(self.weight_decay, f"{where}.weight_decay", allow_zero=True)
        check_positive(self.momentum, f"{where}.momentum", allow_zero=True)
        check_positive(self.step_size, f"{where}.step_size")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"{where}.betas: got {self.betas!r}; expected two numbers in [0, 1)")
        if self.grad_clip is not None:
            check_positive(self.grad_clip, f"{where}.grad_clip")


@dataclass
class TrainConfig:
    """The loop: epochs, device, determinism, model selection, logging."""

    epochs: int = 30
    device: str = "cpu"
    deterministic: bool = True
    # the validation metric that selects the epoch; auto: val_acc (classification), val_r2
    # (regression). Lower is better for val_loss, val_mae, val_rmse
    select_metric: Literal[
        "auto", "val_acc", "val_f1", "val_loss", "val_mae", "val_rmse", "val_r2", "val_corr"
    ] = "auto"
    # the task loss: auto = cross_entropy (classification) / mse (regression); l1, huber
    loss: Literal["auto", "cross_entropy", "mse", "l1", "huber"] = "auto"
    test_every_epoch: bool = True  # logged for curves; never used for selection
    progress: Literal["auto", "always", "never"] = "auto"
    tensorboard: bool = True  # used only when the tensorboard package is installed
    # bf16: forward passes and losses under torch.autocast(bfloat16); method statistics
    # (scores, prototype distances, coefficients) stay float32 (docs/scale.md)
    precision: Literal["fp32", "bf16"] = "fp32"
    # `mmbalance train` also trains joint training and each modality alone (same data, seed,
    # optimiser) and prints each modality inside the fused models beside alone: what the
    # built-in experiment does (a benchmark's config may set it; other commands ignore it)
    compare_with_joint: bool = False

    def validate(self, where: str) -> None:
        check_positive(self.epochs, f"{where}.epochs")
        if not (self.device == "cpu" or self.device.startswith(("cuda", "mps"))):
            raise ConfigError(
                f"{where}.device: got {self.device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'"
            )


_PLUGINS: dict[str, Any] = {}  # what load_plugins imported: name or absolute path -> module


def load_plugins(plugins: Any, where: str = "config.plugins") -> None:
    """Import each plugin, a module name (``my_pkg.encoders``) or a ``.py`` file, once per
    process, so that its ``register_encoder`` / ``register_method`` calls run before the rest
    of the config is checked (and again when a run folder's config.yaml is read to resume,
    evaluate or diagnose it)."""
    import importlib
    import importlib.util

    if plugins is None:
        return
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ConfigError(f"{where}: got {plugins!r}; expected a list of module names or .py files")
    for plugin in plugins:
        if plugin in _PLUGINS:
            continue
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).expanduser()
                if not path.is_file():
                    raise ConfigError(f"{where}: plugin file {plugin!r} does not exist")
                name = f"mmbalance_plugin_{path.stem}"
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                # in sys.modules before it runs, as an import would be (dataclasses need it)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
            else:
                module = importlib.import_module(plugin)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(
                f"{where}: cannot import plugin {plugin!r}: {type(err).__name__}: {err}"
            ) from err
        _PLUGINS[plugin] = module


@dataclass
class ExperimentConfig:
    """A whole experiment; ``mmbalance train --config FILE.yaml`` reads one of these."""

    # modules (or .py files) imported first: where encoders and methods of your own are
    # registered (register_encoder, register_method); docs/encoders.md
    plugins: list[str] = field(default_factory=list)
    seed: int = 0
    name: str = "experiment"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        """Validate a plain mapping (e.g. parsed YAML) into a config (its plugins imported
        first)."""
        load_plugins((data or {}).get("plugins"))
        return from_dict(cls, data, "config")

    def validate(self, where: str) -> None:
        # The data section's defaults are filled in here, whether the section was given or
        # left out (a left-out method section is joint training, which has no options; a
        # given one was resolved by MethodConfig.validate).
        self.data.options = _resolved_data_options(
            self.data.name, self.data.options, f"{where}.data.options"
        )
        regression = self.data.task == "regression"
        metric, loss = self.train.select_metric, self.train.loss
        by_task = {
            "classification": ("val_acc", "val_f1"),
            "regression": ("val_mae", "val_rmse", "val_r2", "val_corr"),
        }
        wrong = by_task["classification" if regression else "regression"]
        if metric in wrong:
            raise ConfigError(
                f"{where}.train.select_metric: got {metric!r}, a "
                f"{'classification' if regression else 'regression'} metric; data.task is "
                f"{self.data.task!r}: expected one of auto, val_loss, "
                + ", ".join(by_task[self.data.task])
            )
        if (loss == "cross_entropy" and regression) or (
            loss in ("mse", "l1", "huber") and not regression
        ):
            raise ConfigError(
                f"{where}.train.loss: got {loss!r}; data.task is {self.data.task!r}: expected "
                + ("auto, mse, l1 or huber" if regression else "auto or cross_entropy")
            )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``--section.key=value`` (or ``section.key=value``) into a key path and a value.

    The value is read as YAML so ``--optim.lr=0.01`` is a float, ``--data.modalities=[fac,mor]``
    a list and ``--optim.grad_clip=null`` None.
    """
    body = text[2:] if text.startswith("--") else text
    if "=" not in body:
        raise ConfigError(f"override {text!r}: expected the form --section.key=value")
    key, raw = body.split("=", 1)
    path = [p for p in key.split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = parse_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from err
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``--a.b=value`` override applied."""
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def shipped_config(name: str) -> Path:
    """Path of a config shipped inside the package (``mmbalance/configs/<name>``)."""
    from importlib import resources

    return Path(str(resources.files("mmbalance") / "configs" / name))


def resolve_config(name: str | Path, relative_to: Path | None = None) -> Path:
    """The one lookup of "a config file, or the name of a shipped one": an existing path (or
    one relative to ``relative_to``) first, then ``mmbalance/configs/<name>``; an error names
    both places when neither exists."""
    path = Path(name).expanduser()
    candidates = [path]
    if relative_to is not None and not path.is_absolute():
        candidates.insert(0, relative_to / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shipped = shipped_config(path.name)
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise ConfigError(
        f"config {str(name)!r} not found: neither a file nor a shipped config (shipped: "
        f"{', '.join(shipped_names())})"
    )


def shipped_names() -> list[str]:
    """The configs shipped with the package."""
    return sorted(p.name for p in shipped_config("x.yaml").parent.glob("*.yaml"))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mapping by mapping (a list or a scalar in ``top`` replaces)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file, on top of the file its ``base:`` names (a path relative to it, or a
    shipped config), recursively."""
    data = load_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"config file {str(path)!r}: base: expected a file or config name")
    base_path = resolve_config(base, path.parent)
    if base_path.resolve() in seen:
        raise ConfigError(f"config file {str(path)!r}: base {base!r} includes itself")
    below = load_yaml_with_base(base_path, (*seen, path.resolve()))
    method, base_method = data.get("method"), below.get("method")
    if (
        isinstance(method, dict)
        and isinstance(base_method, dict)
        and method.get("name", base_method.get("name")) != base_method.get("name")
    ):
        below = {k: v for k, v in below.items() if k != "method"}  # another method's options
    return _merge(below, data)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if not data:  # empty, or only comments: a config that says nothing is a mistake
        raise ConfigError(
            f"config file {str(path)!r} is empty; expected a mapping with at least 'data' "
            "(e.g. data: {name: mfeat}); the shipped configs are listed by 'mmbalance list'"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping at top level")
    return data


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Load a YAML file (or the defaults when None), apply overrides and validate.

    Switching the method on the command line (``--method.name=X`` naming another method than
    the file's) drops the file's ``method.options``: they belong to the other method. Options
    given as overrides (``--method.options.k=v``) still apply.
    """
    data = load_yaml_with_base(Path(path)) if path is not None else {}
    plugins = data.get("plugins")
    if path is not None and isinstance(plugins, list):  # files relative to the config's folder
        data["plugins"] = [
            str((Path(path).parent / p).resolve())
            if isinstance(p, str) and p.endswith(".py") and not Path(p).expanduser().is_absolute()
            else p
            for p in plugins
        ]
    overrides = overrides or []
    parsed = [p for p, _ in map(parse_override, overrides)]
    if path is not None and "data" not in data and not any(p[0] == "data" for p in parsed):
        # every other section has defaults; a file that names no data would silently train
        # the default dataset
        raise ConfigError(
            f"config file {str(path)!r} has no 'data' section; name the dataset (e.g. data: "
            "{name: mfeat}, or data: {name: arrays, options: {root: DIR}}); the shipped "
            "configs are listed by 'mmbalance list'"
        )
    new_name = next((v for p, v in map(parse_override, overrides) if p == ["method", "name"]), None)
    method = data.get("method")
    if isinstance(method, dict) and new_name is not None and new_name != method.get("name"):
        data = {**data, "method": {k: v for k, v in method.items() if k != "options"}}
    return ExperimentConfig.from_dict(apply_overrides(data, overrides))
