"""Metric scorer registrations (one line each; modules load on first use).

Pure functions live in the modules themselves: ``metrics.segmentation``, ``metrics.depth``,
``metrics.reconstruction``, ``metrics.fidelity``, ``metrics.diversity``, ``metrics.nrds``,
``metrics.training_log``, ``metrics.lpips``.
"""

from bench.registry import METRICS

METRICS.register("segmentation", "metrics.segmentation:SegmentationScorer")
METRICS.register("depth", "metrics.depth:DepthScorer")
METRICS.register("reconstruction", "metrics.reconstruction:ReconstructionScorer")
METRICS.register("segmenter-score", "metrics.segmenter_score:SegmenterScorer")
METRICS.register("fid", "metrics.fidelity:FIDScorer")
METRICS.register("nrds", "metrics.nrds:NRDSScorer")
METRICS.register("class-accuracy", "metrics.class_agreement:ClassAgreementScorer")
METRICS.register("ms-ssim-diversity", "metrics.diversity:DiversityScorer")
METRICS.register("training-log", "metrics.training_log:TrainingLogScorer")
METRICS.register("lpips", "metrics.lpips:LpipsScorer")
METRICS.register("lpips-diversity", "metrics.lpips:LpipsDiversityScorer")
