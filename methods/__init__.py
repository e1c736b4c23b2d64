"""Method adapters and building blocks (registrations load on first use)."""

from bench.registry import LOSSES, METHODS

import methods.discriminators  # noqa: F401  (registration lines)
import methods.generators  # noqa: F401

METHODS.register("pix2pix", "methods.pix2pix:Pix2Pix")

LOSSES.register("vanilla", "methods.losses:VanillaLoss")
LOSSES.register("lsgan", "methods.losses:LSGANLoss")
LOSSES.register("hinge", "methods.losses:HingeLoss")

METHODS.register("cnn-crf", "methods.cnn_crf:CNNCRF")
