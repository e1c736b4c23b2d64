"""Discriminator registrations: one line per discriminator (a new one is a file plus a line here)."""

from bench.registry import DISCRIMINATORS

DISCRIMINATORS.register("patchgan", "methods.discriminators.patchgan:PatchGAN")
DISCRIMINATORS.register("patchgan-sn", "methods.discriminators.patchgan:PatchGANSN")
DISCRIMINATORS.register("fusion4-sn", "methods.discriminators.fusion4:Fusion4SN")
DISCRIMINATORS.register("vgg16-concat-sn", "methods.discriminators.vgg16_concat:VGG16ConcatSN")
DISCRIMINATORS.register("projection-sn", "methods.discriminators.projection:ProjectionSN")
DISCRIMINATORS.register("vgg16-fusion-sn", "methods.discriminators.vgg16_fusion:VGG16FusionSN")
DISCRIMINATORS.register("class-heads", "methods.discriminators.class_heads:ClassHeadD")
DISCRIMINATORS.register("conv-critic", "methods.generators.conv_ae:ConvCritic")
DISCRIMINATORS.register("mlp-critic", "methods.discriminators.mlp:MLPCritic")
DISCRIMINATORS.register("patchgan-uncond", "methods.discriminators.unconditional:PatchGANUncond")
DISCRIMINATORS.register("dcgan", "methods.discriminators.unconditional:DCGANDiscriminator")
DISCRIMINATORS.register("multiscale-patchgan", "methods.discriminators.multiscale:MultiscalePatchGAN")
DISCRIMINATORS.register("elu-noisy", "methods.discriminators.elu_noisy:ELUNoisyD")
DISCRIMINATORS.register("elu-joint", "methods.discriminators.joint:ELUJointD")
DISCRIMINATORS.register("stargan", "methods.discriminators.stargan:StarGANDiscriminator")
