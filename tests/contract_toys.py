"""Tiny toy plug-ins, one per cGAN shape the contracts must carry (tests/test_contracts.py).

Loaded with ``--plugin contract_toys`` (this folder on PYTHONPATH), exactly as an outside plug-in
is. Each adapter is the smallest honest version of its family: real losses, real optimisers, real
sampling; only the networks are tiny so two training steps take a fraction of a second on a CPU.

- ``toy-acgan``: class-conditional from a prior (z, class); D with an adversarial logit and a class
  head (a dict output); scored by a sample-fed metric (``toy-class-gap``) on prior samples.
- ``toy-cycle``: unpaired two-G two-D with an image history buffer (in the checkpoint's extra state);
  outputs both directions (``y`` and ``x``), scored per direction on the paired test split.
- ``toy-edgan``: encoder + two decoders (ED//GAN): outputs ``y``, ``y_rec``, ``y_gan``.
- ``toy-inpaint``: fills the task's mask region; scored on the region only.
- ``toy-msd``: a two-scale discriminator returning intermediate features (feature matching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts import (AdvTerms, ComponentArgs, DOutput, FromPrior, MethodAdapter, SampleRequest, Scorer,
                             Slot, TrainContext, registry_ref)
from bench.data.base import DatasetInfo, PairedDataset
from bench.registry import DATASETS, DISCRIMINATORS, GENERATORS, LOSSES, METHODS, METRICS, TASKS
from bench.tasks import Field, TaskSpec

# --------------------------------------------------------------------------------- data and tasks
TOY_INFO = DatasetInfo(name="toy-bars", tasks=("toy-class2image",), num_classes=4,
                       provides=("image", "label", "index"),
                       description="16x16 grey images; class c is a bright horizontal bar in rows 4c..4c+3")


class ToyBars(PairedDataset):
    info = TOY_INFO

    def __init__(self, split: str, n: int):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        self.labels = torch.arange(n) % 4
        self.images = torch.rand(n, 1, 16, 16, generator=g) * 0.2 - 1.0
        for i, c in enumerate(self.labels.tolist()):
            self.images[i, :, 4 * c:4 * c + 4] += 1.6

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}


@DATASETS.register("toy-bars")
def make_toy_bars(split: str, size: int, *, root: Any = None, subset: int | None = None, seed: int = 0,
                  **options: Any) -> ToyBars:
    return ToyBars(split, subset or 32)


TASKS.register("toy-class2image", TaskSpec(
    "toy-class2image", inputs={"c": Field("label", "class")}, targets={"y": Field("image", "image", 1)},
    pairing="none", description="class label -> image, from the prior"))
TASKS.register("toy-reconstruct", TaskSpec(
    "toy-reconstruct", inputs={"x": Field("photo", "image", 3)}, targets={"y": Field("photo", "image", 3)},
    description="photo -> the same photo (encoder-decoder)"))


# --------------------------------------------------------------------------------- components
def _conv(i: int, o: int, stride: int = 1) -> nn.Module:
    return nn.Conv2d(i, o, 3, stride, 1)


@GENERATORS.register("toy-gen")
class ToyGen(nn.Module):
    """in -> out channels at the same size; dropout so resume exactness is tested with noise in G."""

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 32, ngf: int = 8,
                 dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(_conv(in_channels, ngf), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                 _conv(ngf, out_channels), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@GENERATORS.register("toy-cgen")
class ToyClassGen(nn.Module):
    """(z, one-hot class) -> 1 x 16 x 16 image."""

    def __init__(self, z_dim: int, num_classes: int, *, image_size: int = 16, ngf: int = 8):
        super().__init__()
        self.fc = nn.Linear(z_dim + num_classes, ngf * 4 * 4)
        self.ngf = ngf
        self.up = nn.Sequential(nn.Upsample(scale_factor=4), _conv(ngf, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(torch.cat([z, onehot], 1)).view(-1, self.ngf, 4, 4))


@DISCRIMINATORS.register("toy-cdisc")
class ToyClassDisc(nn.Module):
    """Image -> {"logits": adversarial logit, "cls": class logits} (an AC-GAN D with two heads)."""

    def __init__(self, in_channels: int, num_classes: int, *, image_size: int = 16, ndf: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(_conv(in_channels, ndf, 2), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten())
        self.adv, self.cls = nn.Linear(ndf, 1), nn.Linear(ndf, num_classes)

    def forward(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(y)
        return {"logits": self.adv(h), "cls": self.cls(h)}


@DISCRIMINATORS.register("toy-udisc")
class ToyUncondDisc(nn.Module):
    """Unconditional patch D (CycleGAN's D sees one domain)."""

    def __init__(self, in_channels: int, *, image_size: int = 32, ndf: int = 8):
        super().__init__()
        self.net = nn.Sequential(_conv(in_channels, ndf, 2), nn.LeakyReLU(0.2), _conv(ndf, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


@DISCRIMINATORS.register("toy-msd")
class ToyMultiScaleDisc(nn.Module):
    """Image-conditioned D at two scales, returning each scale's features (pix2pixHD's shape)."""

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 32, ndf: int = 8):
        super().__init__()
        self.scales = nn.ModuleList(
            nn.ModuleList([_conv(x_channels + y_channels, ndf, 2), _conv(ndf, ndf, 2), _conv(ndf, 1)])
            for _ in range(2))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> DOutput:
        h = torch.cat([x, y], 1)
        logits, feats = [], []
        for k, (a, b, head) in enumerate(self.scales):
            v = F.avg_pool2d(h, 2) if k else h
            f1 = F.leaky_relu(a(v), 0.2)
            f2 = F.leaky_relu(b(f1), 0.2)
            logits.append(head(f2))
            feats.append([f1, f2])
        return DOutput(logits, feats)


@GENERATORS.register("toy-enc")
class ToyEncoder(nn.Module):
    def __init__(self, in_channels: int, latent: int, *, image_size: int = 32, ndf: int = 8):
        super().__init__()
        self.net = nn.Sequential(_conv(in_channels, ndf, 2), nn.LeakyReLU(0.2), _conv(ndf, latent, 2), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@GENERATORS.register("toy-dec")
class ToyDecoder(nn.Module):
    def __init__(self, latent: int, out_channels: int, *, image_size: int = 32, ngf: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Upsample(scale_factor=4), _conv(latent, ngf), nn.LeakyReLU(0.2),
                                 _conv(ngf, out_channels), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _adam(*mods: nn.Module, lr: float = 2e-4) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for m in mods for p in m.parameters()], lr=lr, betas=(0.5, 0.999))


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------- toy-acgan
@METHODS.register("toy-acgan")
class ToyACGAN(MethodAdapter):
    """AC-GAN: D's loss = adversarial + class CE on real and fake; G's = adversarial + class CE on fake."""

    @dataclass
    class Options:
        loss: str = registry_ref("losses", "lsgan")
        z_dim: int = 8
        lambda_cls: float = 1.0

    slots = {"G": Slot("generators", "toy-cgen", args=("z_dim", "num_classes")),
             "D": Slot("discriminators", "toy-cdisc", args=("in_channels", "num_classes"))}
    samples_from = ("prior",)

    @classmethod
    def component_args(cls, slot: str, o: Any, task: TaskSpec, image_size: int) -> ComponentArgs:
        k = task.info.num_classes
        return ComponentArgs((o.z_dim, k) if slot == "G" else (task.y_channels, k))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: Any) -> None:
        _init(module)

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        self.G, self.D = components["G"], components["D"]
        self.modules = {"G": self.G, "D": self.D}
        self.optimizers = {"G": _adam(self.G), "D": _adam(self.D)}
        self.loss = LOSSES.get(options.loss)()
        self.k = task.info.num_classes

    def _fake(self, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(labels), self.options.z_dim, generator=gen).to(labels.device)
        return self.G(z, F.one_hot(labels, self.k).float())

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        real, labels = self.task.y(batch), self.task.get("c", batch)
        fake = self._fake(labels, self.ctx.generator(step, "z"))
        critic = lambda v: DOutput.wrap(self.D(v))  # noqa: E731
        t = AdvTerms(critic, real, fake.detach())
        cls_loss = (F.cross_entropy(t.d_real.heads["cls"], labels) + F.cross_entropy(t.d_fake.heads["cls"], labels))
        loss_d = self.loss.d_loss(t) + self.options.lambda_cls * cls_loss
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        t = AdvTerms(critic, real, fake)
        loss_g = self.loss.g_loss(t) + self.options.lambda_cls * F.cross_entropy(t.d_fake.heads["cls"], labels)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["G"].step()
        return {"loss_D": loss_d.detach(), "loss_G": loss_g.detach()}

    @torch.no_grad()
    def sample(self, request: SampleRequest) -> dict[str, torch.Tensor]:
        if not isinstance(request, FromPrior) or request.labels is None:
            raise ValueError("toy-acgan samples from the prior, with labels")
        self.G.eval()
        out = self._fake(request.labels.to(self.ctx.device), request.generator())
        self.G.train()
        return {"y": out}


# --------------------------------------------------------------------------------- toy-cycle
class HistoryBuffer:
    """CycleGAN's image pool: half the time D sees a stored older fake instead of the new one."""

    def __init__(self, size: int):
        self.size, self.images = size, []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand(())) < 0.5:
                j = int(torch.randint(0, self.size, ()))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)


@METHODS.register("toy-cycle")
class ToyCycle(MethodAdapter):
    @dataclass
    class Options:
        lambda_cyc: float = 10.0
        pool: int = 4

    slots = {"G_AB": Slot("generators", "toy-gen", args=("in_channels", "out_channels")),
             "G_BA": Slot("generators", "toy-gen", args=("in_channels", "out_channels")),
             "D_A": Slot("discriminators", "toy-udisc", args=("in_channels",)),
             "D_B": Slot("discriminators", "toy-udisc", args=("in_channels",))}
    outputs = {"y": "y", "x": "x"}

    @classmethod
    def component_args(cls, slot: str, o: Any, task: TaskSpec, image_size: int) -> ComponentArgs:
        a, b = task.x_channels, task.y_channels
        return ComponentArgs({"G_AB": (a, b), "G_BA": (b, a), "D_A": (a,), "D_B": (b,)}[slot])

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: Any) -> None:
        _init(module)

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        self.modules = dict(components)
        c = components
        self.optimizers = {"G": _adam(c["G_AB"], c["G_BA"]), "D": _adam(c["D_A"], c["D_B"])}
        self.loss = LOSSES.get("lsgan")()
        self.pool_a, self.pool_b = HistoryBuffer(options.pool), HistoryBuffer(options.pool)

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        c = self.components
        a, b = self.task.x(batch), self.task.y(batch)
        fake_b, fake_a = c["G_AB"](a), c["G_BA"](b)
        crit_a, crit_b = (lambda v: DOutput.wrap(c["D_A"](v))), (lambda v: DOutput.wrap(c["D_B"](v)))
        adv_g = self.loss.g_loss(AdvTerms(crit_b, b, fake_b)) + self.loss.g_loss(AdvTerms(crit_a, a, fake_a))
        cyc = (c["G_BA"](fake_b) - a).abs().mean() + (c["G_AB"](fake_a) - b).abs().mean()
        loss_g = adv_g + self.options.lambda_cyc * cyc
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["G"].step()
        loss_d = (self.loss.d_loss(AdvTerms(crit_b, b, self.pool_b.query(fake_b)))
                  + self.loss.d_loss(AdvTerms(crit_a, a, self.pool_a.query(fake_a))))
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        return {"loss_G": loss_g.detach(), "loss_D": loss_d.detach()}

    def extra_state(self) -> dict[str, Any]:
        return {"pool_a": [t.cpu() for t in self.pool_a.images], "pool_b": [t.cpu() for t in self.pool_b.images]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_a.images = [t.to(self.ctx.device) for t in state.get("pool_a", [])]
        self.pool_b.images = [t.to(self.ctx.device) for t in state.get("pool_b", [])]

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.components
        for m in self.modules.values():
            m.eval()
        out = {"y": c["G_AB"](self.task.x(batch)), "x": c["G_BA"](self.task.y(batch))}
        for m in self.modules.values():
            m.train()
        return out


# --------------------------------------------------------------------------------- toy-edgan
@METHODS.register("toy-edgan")
class ToyEDGAN(MethodAdapter):
    """ED//GAN (``parallel``): Enc + Dec by L1 only, G (own weights) by the adversarial loss only,
    output Dec(z) + G(z). ED+GAN (not parallel): one decoder by L1 + weight * adversarial."""

    @dataclass
    class Options:
        parallel: bool = True
        adv_weight: float = 0.01
        latent: int = 4

    slots = {"Enc": Slot("generators", "toy-enc", args=("in_channels", "latent")),
             "Dec": Slot("generators", "toy-dec", args=("latent", "out_channels")),
             "Gd": Slot("generators", "toy-dec", args=("latent", "out_channels")),
             "D": Slot("discriminators", "toy-udisc", args=("in_channels",))}
    outputs = {"y": "y", "y_rec": "y", "y_gan": "y"}

    @classmethod
    def component_args(cls, slot: str, o: Any, task: TaskSpec, image_size: int) -> ComponentArgs:
        return ComponentArgs({"Enc": (task.x_channels, o.latent), "Dec": (o.latent, task.y_channels),
                              "Gd": (o.latent, task.y_channels), "D": (task.y_channels,)}[slot])

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        c = components
        self.modules = dict(components)
        self.optimizers = {"ED": _adam(c["Enc"], c["Dec"]), "G": _adam(c["Gd"]), "D": _adam(c["D"])}
        self.loss = LOSSES.get("vanilla")()

    def _parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.components
        z = c["Enc"](x)
        rec = c["Dec"](z)
        gan = c["Gd"](z.detach()) if self.options.parallel else torch.zeros_like(rec)
        return {"y": rec + gan, "y_rec": rec, "y_gan": gan}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o, c = self.options, self.components
        x, y = self.task.x(batch), self.task.y(batch)
        p = self._parts(x)
        critic = lambda v: DOutput.wrap(c["D"](v))  # noqa: E731
        loss_d = self.loss.d_loss(AdvTerms(critic, y, p["y"].detach()))
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        # ED//GAN: the adversarial loss reaches G only (the reconstruction is held fixed in the sum)
        seen = p["y_rec"].detach() + p["y_gan"] if o.parallel else p["y"]
        adv = self.loss.g_loss(AdvTerms(critic, y, seen))
        l1 = (p["y_rec"] - y).abs().mean()
        loss = l1 + adv if o.parallel else l1 + o.adv_weight * adv
        for opt in ("ED", "G"):
            self.optimizers[opt].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["ED"].step()
        if o.parallel:
            self.optimizers["G"].step()
        return {"loss_D": loss_d.detach(), "loss_G": loss.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._parts(self.task.x(batch))


# --------------------------------------------------------------------------------- toy-inpaint
@METHODS.register("toy-inpaint")
class ToyInpaint(MethodAdapter):
    """Context-encoder shape: G sees the photo with its region blanked (and the mask); the output is the
    photo with G's fill inside the region; L2 on the region + a little adversarial loss."""

    @dataclass
    class Options:
        adv_weight: float = 0.001

    slots = {"G": Slot("generators", "toy-gen", args=("in_channels", "out_channels")),
             "D": Slot("discriminators", "toy-udisc", args=("in_channels",))}

    @classmethod
    def component_args(cls, slot: str, o: Any, task: TaskSpec, image_size: int) -> ComponentArgs:
        return ComponentArgs((task.x_channels + 1, task.y_channels) if slot == "G" else (task.y_channels,))

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        self.G, self.D = components["G"], components["D"]
        self.modules = {"G": self.G, "D": self.D}
        self.optimizers = {"G": _adam(self.G), "D": _adam(self.D)}
        self.loss = LOSSES.get("vanilla")()

    def _fill(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x, m = self.task.x(batch), self.task.get("mask", batch)
        fill = self.G(torch.cat([x * (1 - m), m], 1))
        return x * (1 - m) + fill * m

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        y, m = self.task.y(batch), self.task.get("mask", batch)
        out = self._fill(batch)
        critic = lambda v: DOutput.wrap(self.D(v))  # noqa: E731
        loss_d = self.loss.d_loss(AdvTerms(critic, y, out.detach()))
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        rec = ((out - y) ** 2 * m).sum() / m.sum().clamp_min(1)
        loss_g = rec + self.options.adv_weight * self.loss.g_loss(AdvTerms(critic, y, out))
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["G"].step()
        return {"loss_D": loss_d.detach(), "loss_G": loss_g.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.G.eval()
        out = self._fill(batch)
        self.G.train()
        return out


# --------------------------------------------------------------------------------- a samples-fed metric
@METRICS.register("toy-class-gap")
class ToyClassGap(Scorer):
    """Mean over classes of |mean generated pixel - mean real pixel| (lower is better): fed with prior
    samples drawn for the batch's labels, the batch being the real side."""

    feed = "samples"
    keys = ("class_gap",)
    outputs = ("image",)

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        k = ctx.task.info.num_classes
        self.sums = torch.zeros(2, k, dtype=torch.float64)
        self.counts = torch.zeros(k, dtype=torch.float64)

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        labels = batch["label"].cpu()
        real = self.ctx.task.y(batch).flatten(1).mean(1).double().cpu()
        gen = pred.flatten(1).mean(1).double().cpu()
        self.sums[0].index_add_(0, labels, gen)
        self.sums[1].index_add_(0, labels, real)
        self.counts.index_add_(0, labels, torch.ones(len(labels), dtype=torch.float64))

    def compute(self) -> dict[str, float]:
        seen = self.counts > 0
        means = self.sums[:, seen] / self.counts[seen]
        return {"class_gap": float((means[0] - means[1]).abs().mean())}
