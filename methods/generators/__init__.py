"""Generator registrations: one line per generator."""

from bench.registry import GENERATORS

GENERATORS.register("unet", "methods.generators.unet:UNetGenerator")
GENERATORS.register("class-dcgan", "methods.generators.class_dcgan:ClassDCGAN")
GENERATORS.register("conv-encoder", "methods.generators.conv_ae:ConvEncoder")
GENERATORS.register("conv-decoder", "methods.generators.conv_ae:ConvDecoder")
GENERATORS.register("elu-gauss-encoder", "methods.newlosses:GaussianEncoder")   # the new-losses paper's encoder
GENERATORS.register("resnet", "methods.generators.resnet:ResnetGenerator")
GENERATORS.register("context-encoder", "methods.generators.context_encoder:ContextEncoderGenerator")
GENERATORS.register("pix2pixhd-global", "methods.generators.pix2pixhd:Pix2PixHDGlobalGenerator")
GENERATORS.register("pix2pixhd", "methods.generators.pix2pixhd:Pix2PixHDGenerator")
GENERATORS.register("spade", "methods.generators.spade:SPADEGenerator")
GENERATORS.register("stargan", "methods.generators.stargan:StarGANGenerator")
