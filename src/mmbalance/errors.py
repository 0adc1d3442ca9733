"""Exceptions raised for bad user input.

Every error names *what* was wrong (field, file or modality), the offending value and what would
have been accepted, so a user can fix the input without reading the source.
"""

from __future__ import annotations


class MMBalanceError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(MMBalanceError, ValueError):
    """An invalid configuration value, refused before any training starts."""


class DataError(MMBalanceError, ValueError):
    """Input data that cannot be used as given (shapes, sample counts, labels, files)."""


class CapabilityError(MMBalanceError, ValueError):
    """A method asked to run on a model or data it does not support."""


class NonFiniteLossError(MMBalanceError, RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept on disk."""


class CheckpointError(MMBalanceError, RuntimeError):
    """A checkpoint is missing, truncated or does not match the run it is loaded into."""


class RunFolderError(MMBalanceError, RuntimeError):
    """A file of a run folder (config, metadata, metrics, summary) could not be written: the
    folder is read-only, the disk is full, or the path is not a folder."""
