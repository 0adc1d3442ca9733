"""mmbalance: balanced multimodal learning in PyTorch.

Quick start on your own tensors::

    import mmbalance as mb
    data = mb.from_tensors({"audio": xa, "video": xv}, labels)
    result = mb.train(data, method="joint", epochs=20)
    print(result.test["test_acc"], result.test["test_acc_audio"])
"""

from mmbalance.api import train
from mmbalance.config import ExperimentConfig, load_config
from mmbalance.data import DataSplits, build_data, from_tensors
from mmbalance.errors import (
    CapabilityError,
    CheckpointError,
    ConfigError,
    DataError,
    MMBalanceError,
    NonFiniteLossError,
)
from mmbalance.experiment import resume_experiment, run_experiment
from mmbalance.methods import Method, create_method, list_methods, register_method
from mmbalance.models import (
    BlockEncoder,
    ModelOutput,
    MultimodalModel,
    build_model,
    register_encoder,
    wrap_encoder,
)
from mmbalance.training.trainer import RunResult, Trainer
from mmbalance.version import __version__

__all__ = [
    "BlockEncoder",
    "CapabilityError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataSplits",
    "ExperimentConfig",
    "MMBalanceError",
    "Method",
    "ModelOutput",
    "MultimodalModel",
    "NonFiniteLossError",
    "RunResult",
    "Trainer",
    "__version__",
    "build_data",
    "build_model",
    "create_method",
    "from_tensors",
    "list_methods",
    "load_config",
    "register_encoder",
    "register_method",
    "resume_experiment",
    "run_experiment",
    "train",
    "wrap_encoder",
]
