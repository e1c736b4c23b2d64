"""Method adapters and building blocks (registrations load on first use)."""

from bench.registry import LOSSES, METHODS, REGULARIZERS

import methods.discriminators  # noqa: F401  (registration lines)
import methods.generators  # noqa: F401

METHODS.register("pix2pix", "methods.pix2pix:Pix2Pix")
METHODS.register("cnn-crf", "methods.cnn_crf:CNNCRF")
METHODS.register("gaussian", "methods.gaussian:FixedGaussian")

LOSSES.register("vanilla", "methods.losses:VanillaLoss")
LOSSES.register("lsgan", "methods.losses:LSGANLoss")
LOSSES.register("hinge", "methods.losses:HingeLoss")
LOSSES.register("wgan", "methods.losses:WassersteinLoss")
LOSSES.register("ragan", "methods.losses:RelativisticAverageLoss")
LOSSES.register("nonsaturating", "methods.losses:VanillaLoss")         # the same class as "vanilla"
LOSSES.register("minimax", "methods.fdiv_losses:MinimaxLoss")
LOSSES.register("rkl", "methods.fdiv_losses:ReverseKLLoss")
LOSSES.register("kl", "methods.fdiv_losses:ForwardKLLoss")
LOSSES.register("skl", "methods.fdiv_losses:SymmetricKLLoss")
LOSSES.register("rsgan", "methods.relativistic:RelativisticStandardLoss")
LOSSES.register("ralsgan", "methods.relativistic:RelativisticAverageLSLoss")

REGULARIZERS.register("gp", "methods.regularizers:GradientPenalty")
REGULARIZERS.register("r1", "methods.regularizers:R1Penalty")
REGULARIZERS.register("feature-matching", "methods.regularizers:FeatureMatching")
REGULARIZERS.register("r2", "methods.regularizers:R2Penalty")
REGULARIZERS.register("orthogonal", "methods.regularizers:OrthogonalD")
REGULARIZERS.register("orthogonal-g", "methods.regularizers:OrthogonalG")
REGULARIZERS.register("instance-noise", "methods.regularizers:InstanceNoise")
METHODS.register("acgan", "methods.acgan:ACGAN")
METHODS.register("acgan-mod", "methods.acgan:ModifiedACGAN")
METHODS.register("acgan-mod-gcls", "methods.acgan:ModifiedACGANFakeClass")
METHODS.register("cagan", "methods.cagan:CAGAN")
METHODS.register("ed-gan", "methods.decoupled:EDGAN")
METHODS.register("ed-par-gan", "methods.decoupled:EDParGAN")
METHODS.register("pix2pix-par", "methods.pix2pix_par:Pix2PixDecoupled")
METHODS.register("caae", "methods.caae:CAAE")
METHODS.register("caae-par", "methods.caae:CAAEPar")
METHODS.register("gan-rkl", "methods.newlosses:GANRKL")
METHODS.register("vae-perceptual", "methods.vae_gan:VAEPerceptual")
METHODS.register("vaegan", "methods.vae_gan:VAEGAN")
METHODS.register("sdkl", "methods.sdkl:SDKL")
METHODS.register("sdkl-nosample", "methods.sdkl:SDKLNoSample")
METHODS.register("cyclegan", "methods.cyclegan:CycleGAN")
METHODS.register("context-encoder", "methods.context_encoder:ContextEncoder")
METHODS.register("inpaint-nn-hog", "methods.context_encoder:NNInpaint")
METHODS.register("inpaint-border-mean", "methods.context_encoder:BorderMeanFill")
