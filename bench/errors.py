"""Errors a user can cause. Each carries a one-line message that says what to do.

The CLI prints ``str(error)`` and exits with status 2; library code raises these
instead of letting a stack trace reach the user.
"""


class BenchError(Exception):
    """Base class: a problem the user can fix (bad input, missing data, bad config)."""


class ConfigError(BenchError):
    """A suite file or a command-line option is malformed."""


class RegistryError(BenchError):
    """An unknown registry name, a duplicate registration, or a plug-in that fails to load."""


class DataError(BenchError):
    """A dataset is missing or has the wrong layout."""


class CheckpointError(BenchError):
    """A checkpoint is missing, truncated or corrupt."""


class DivergenceError(BenchError):
    """Training blew up: a loss became non-finite or exploded, or a model holds non-finite values."""

    def __init__(self, step: int, name: str, value: float, detail: str = ""):
        self.step, self.name, self.value = step, name, value
        what = detail or f"loss '{name}' = {value}"
        super().__init__(f"training diverged: {what} at step {step}")


class MetricError(BenchError):
    """A metric cannot be computed (missing weights, wrong input)."""


class PluginError(BenchError):
    """A plug-in (method, component, loss, metric) broke its contract: wrong output type or shape."""
