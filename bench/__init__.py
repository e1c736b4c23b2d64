"""cGAN bench: train conditional GANs, score checkpoints, compare with published tables."""

__version__ = "0.1.0"
