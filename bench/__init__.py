"""cGAN bench: train conditional GANs, score checkpoints, compare with published tables."""

__version__ = "0.1.0"

# First, before any training or scoring in this process: the worker start method compares the native threads
# with the count taken now (bench.jobs.start_method: never fork after an OpenMP pool started).
from bench import jobs as _jobs  # noqa: E402,F401
