"""Dataset registrations (one line each; modules load on first use)."""

from bench.registry import DATASETS

DATASETS.register("synthetic-scenes", "bench.data.synthetic_scenes:make_dataset")
DATASETS.register("gaussians-2d", "bench.data.gaussians:make_dataset")
DATASETS.register("cityscapes", "bench.data.cityscapes:make_dataset")
DATASETS.register("nyu-depth-v2", "bench.data.nyu_depth:make_dataset")
DATASETS.register("mnist", "bench.data.mnist:make_dataset")
DATASETS.register("utkface", "bench.data.utkface:make_dataset")
DATASETS.register("facades", "bench.data.facades:make_dataset")
