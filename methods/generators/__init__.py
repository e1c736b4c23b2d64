"""Generator registrations: one line per generator."""

from bench.registry import GENERATORS

GENERATORS.register("unet", "methods.generators.unet:UNetGenerator")
