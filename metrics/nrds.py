"""NRDS: normalised relative discriminative score (decoupled learning paper, papers.md section C).

One binary classifier D learns real (label 1) against the pooled samples of all n models (label 0),
balanced per epoch. After every epoch, the mean sigmoid output of D on each model's samples is
recorded; a model whose samples D keeps calling "real" for longer is closer to the data.
``A_i`` = trapezoidal area of model i's curve (unit spacing), ``NRDS_i = A_i / sum_j A_j``.

Classifiers: ``"image"`` (the paper's image D: 4 convs 5x5 stride 2, 64-128-256-512, ReLU -> FC 1024,
LeakyReLU 0.2 -> FC 1; Adam 2e-4, beta1 0.5) and ``"mlp"`` (the toy's 2 hidden layers x 32, ReLU);
or any callable ``sample_shape -> nn.Module`` giving one logit per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import MetricError
from bench.progress import bar as tqdm
from metrics.base import JointScorer, ScoreContext
from metrics.judges import judge_training, training_protocol

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
BALANCES = ("epoch", "batch", "none")


# -- the score --------------------------------------------------------------------------------------
def _model_names(n: int, names: Sequence[str] | None) -> list[str]:
    names = list(names) if names is not None else []
    return names if len(names) == n else [f"model {i}" for i in range(n)]


def curve_areas(curves: np.ndarray | Sequence[Sequence[float]], names: Sequence[str] | None = None) -> np.ndarray:
    """Trapezoidal area of each curve (rows: models, columns: epochs), unit spacing.

    A curve holding NaN or inf raises a one-line :class:`MetricError` naming the model (``names``,
    one per row; default "model <i>").
    """
    c = np.asarray(curves, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        raise MetricError(f"NRDS curves must be (models, epochs >= 2), got shape {c.shape}")
    bad = ~np.isfinite(c)
    if bad.any():
        m = int(np.argmax(bad.any(1)))
        epochs = np.flatnonzero(bad[m])
        raise MetricError(f"NRDS: the curve of '{_model_names(len(c), names)[m]}' is not finite ({c[m, epochs[0]]} "
                          f"at epoch {epochs[0] + 1}, {len(epochs)} of {c.shape[1]} epochs); check that model's "
                          "samples (and the real ones) for NaN / inf")
    return (c[:, 1:] + c[:, :-1]).sum(1) / 2


def nrds(curves: np.ndarray | Sequence[Sequence[float]], names: Sequence[str] | None = None) -> list[float]:
    """NRDS of each model: its curve's area over the sum of all areas (``names`` name the rows in errors)."""
    a = curve_areas(curves, names)
    if a.sum() <= 0:
        raise MetricError("all NRDS curves have zero area; the classifier rejected every sample at once")
    return (a / a.sum()).tolist()


@dataclass
class NRDSResult:
    scores: list[float]
    areas: list[float]
    curves: np.ndarray                    # (models, epochs): mean D output on each model's samples
    names: list[str] = field(default_factory=list)

    def plot(self, path: str | Path, title: str = "NRDS: mean D output on each model's samples") -> Path:
        """Save the curves (one line per model, NRDS in the legend) as an image."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = self.names or [f"model {i}" for i in range(len(self.scores))]
        fig, ax = plt.subplots(figsize=(6, 4))
        epochs = np.arange(1, self.curves.shape[1] + 1)
        for name, c, s in zip(names, self.curves, self.scores):
            ax.plot(epochs, c, label=f"{name} (NRDS {s:.4f})")
        ax.set(xlabel="epoch", ylabel="mean D(x)", title=title, ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
        return path


# -- classifiers ------------------------------------------------------------------------------------
class ImageDiscriminator(nn.Module):
    """The paper's NRDS image D: 4 x (conv 5x5 s2, ReLU) 64-128-256-512 -> FC 1024 (LReLU 0.2) -> FC 1."""

    def __init__(self, in_channels: int, size: int, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_channels, size
        for k in range(4):
            layers += [nn.Conv2d(c, width * 2 ** k, 5, 2, 2), nn.ReLU()]
            c, s = width * 2 ** k, (s - 1) // 2 + 1
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c * s * s, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


class ToyMLP(nn.Module):
    """The toy example's D: 2 hidden layers x 32, ReLU, one logit."""

    def __init__(self, in_features: int = 2, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def _build_classifier(kind: str | Callable[[tuple[int, ...]], nn.Module], shape: tuple[int, ...]) -> nn.Module:
    if callable(kind):
        return kind(shape)
    if kind == "image":
        if len(shape) != 3 or shape[1] != shape[2]:
            raise MetricError(f"the image NRDS classifier takes square (C, H, W) samples, got {shape}")
        return ImageDiscriminator(shape[0], shape[1])
    if kind == "mlp":
        return ToyMLP(int(np.prod(shape)))
    raise MetricError(f"unknown NRDS classifier '{kind}'; use 'image', 'mlp' or a callable shape -> module")


def adam(lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999)) -> OptimizerFactory:
    """The paper's optimiser (Adam 2e-4, beta1 0.5) or another Adam setting."""
    return lambda params: torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


def sgd(lr: float = 0.1, momentum: float = 0.0) -> OptimizerFactory:
    """Plain SGD (the toy study's third optimiser)."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)


# -- the procedure ----------------------------------------------------------------------------------
def _epoch_order(balance: str, nr: int, nf: int, gen: torch.Generator) -> torch.Tensor:
    """Order of one epoch's samples (``nr`` real first, then ``nf`` fake) for ``NRDS.balance``."""
    if balance == "batch":      # real i, fake i, real i + 1, ...: every even-sized batch is half and half
        return torch.stack([torch.arange(nr), nr + torch.arange(nf)], 1).flatten()
    return torch.randperm(nr + nf, generator=gen)


@dataclass
class NRDS:
    """Train one real-vs-pooled-fakes classifier and score each model by the area of its curve.

    ``batch_size``: mini-batch (real and fake together); ``None`` trains full-batch (one step per
    epoch). ``balance``: ``"epoch"`` draws ``min(#real, #pooled fakes)`` samples from each side,
    without replacement, every epoch and shuffles them together; ``"batch"`` draws the same but
    gives every mini-batch half real, half fake (the authors' code: ``batch_size / 2`` of each per
    step; ``batch_size`` must be even); ``"none"`` trains every epoch on all real against all
    pooled samples, shuffled together (unweighted, so the fakes outnumber the real samples).

    D is trained (and its curves measured) under :func:`metrics.judges.judge_training`: one thread and
    deterministic algorithms, the RNG forked and seeded with ``seed``, so the result does not depend on
    the caller's thread count and the caller's random state is left as it was.
    """

    classifier: str | Callable[[tuple[int, ...]], nn.Module] = "image"
    epochs: int = 20
    batch_size: int | None = 64
    optimizer: OptimizerFactory = field(default_factory=adam)
    device: str | torch.device = "cpu"
    seed: int = 0
    eval_batch_size: int = 1024
    balance: str = "epoch"

    def __post_init__(self) -> None:
        if self.balance not in BALANCES:
            raise MetricError(f"NRDS balance must be one of {', '.join(BALANCES)}, not '{self.balance}'")
        if self.balance == "batch" and self.batch_size is not None and self.batch_size % 2:
            raise MetricError(f"NRDS balance 'batch' needs an even batch_size (half real, half fake), "
                              f"not {self.batch_size}")

    def __call__(self, real: torch.Tensor, fakes: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
                 ) -> NRDSResult:
        names = list(fakes) if isinstance(fakes, Mapping) else [f"model {i}" for i in range(len(fakes))]
        sets = list(fakes.values()) if isinstance(fakes, Mapping) else list(fakes)
        if not sets or any(s.shape[1:] != real.shape[1:] for s in sets):
            raise MetricError("NRDS needs at least one model's samples, all shaped like the real samples")
        for name, s in zip(names, sets):
            if not bool(torch.isfinite(s).all()):
                raise MetricError(f"NRDS: the samples of '{name}' hold NaN or inf "
                                  f"({int((~torch.isfinite(s)).sum())} values); fix or drop that model")
        if not bool(torch.isfinite(real).all()):
            raise MetricError(f"NRDS: the real samples hold NaN or inf ({int((~torch.isfinite(real)).sum())} "
                              "values); check the dataset")
        dev = torch.device(self.device)
        with judge_training(self.seed, dev):      # the same curves whatever --threads / --jobs / the cores
            curves = self._train(real, sets, dev)
        areas = curve_areas(curves, names)
        return NRDSResult(scores=nrds(curves, names), areas=areas.tolist(), curves=curves, names=names)

    def _train(self, real: torch.Tensor, sets: list[torch.Tensor], dev: torch.device) -> np.ndarray:
        """Train D; its curves (models, epochs). The caller seeds the RNG (D's initialisation draws from it)."""
        gen = torch.Generator().manual_seed(self.seed)
        d = _build_classifier(self.classifier, tuple(real.shape[1:])).to(dev)
        opt = self.optimizer(list(d.parameters()))
        real, pooled = real.float(), torch.cat(sets).float()
        nr, nf = (min(len(real), len(pooled)),) * 2 if self.balance != "none" else (len(real), len(pooled))
        target = torch.cat([torch.ones(nr), torch.zeros(nf)]).to(dev)
        bs = nr + nf if self.batch_size is None else self.batch_size
        curves = np.zeros((len(sets), self.epochs))
        for epoch in tqdm(range(self.epochs), desc="NRDS", leave=False, disable=None):
            d.train()
            x = torch.cat([real[torch.randperm(len(real), generator=gen)[:nr]],
                           pooled[torch.randperm(len(pooled), generator=gen)[:nf]]]).to(dev)
            order = _epoch_order(self.balance, nr, nf, gen).to(dev)
            for i in range(0, nr + nf, bs):
                idx = order[i:i + bs]
                loss = F.binary_cross_entropy_with_logits(d(x[idx]), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            d.eval()
            with torch.no_grad():
                for m, s in enumerate(sets):
                    out = torch.cat([torch.sigmoid(d(b.float().to(dev))) for b in s.split(self.eval_batch_size)])
                    curves[m, epoch] = out.mean().item()
        return curves


# -- the paper's toy example ------------------------------------------------------------------------
# Optimiser settings of the toy study: name -> (batch size, "adam" | "sgd", learning rate). Adam uses
# betas (0.5, 0.999) throughout (the paper's NRDS D).
TOY_OPTIMISERS: dict[str, tuple[int | None, str, float]] = {
    "adam-1e-2-full": (None, "adam", 1e-2),     # full batch: one step per epoch
    "adam-2e-4-b64": (64, "adam", 2e-4),        # the paper's image-D optimiser, mini-batch 64
    "adam-2e-4-b2": (2, "adam", 2e-4),          # the authors' code: one real + one fake per step
    "sgd-1e-1-b64": (64, "sgd", 1e-1),
}
# The toy's protocol (sample count, balance, optimiser: not published; chosen by the study in
# leaderboards/notes/nrds-toy-sensitivity.md): the authors' NRDS code (Adam 2e-4, beta1 0.5, one real
# + one fake per step, balanced per epoch) on small sets; n = 50 gives the areas closest to the paper's.
TOY_N = 50                    # points per set (real, close, far)
TOY_OPTIMISER = "adam-2e-4-b2"
TOY_BALANCE = "batch"
TOY_EPOCHS = 300


@contextmanager
def _one_thread() -> Iterator[None]:
    """The toy's tensors are tiny: intra-op threads only add overhead (several times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def toy_optimizer(name: str) -> tuple[int | None, OptimizerFactory]:
    """``(batch_size, optimizer factory)`` of a :data:`TOY_OPTIMISERS` entry."""
    if name not in TOY_OPTIMISERS:
        raise MetricError(f"unknown toy optimiser '{name}'; use one of {', '.join(TOY_OPTIMISERS)}")
    bs, kind, lr = TOY_OPTIMISERS[name]
    return bs, (adam(lr) if kind == "adam" else sgd(lr))


def toy_example(seed: int = 0, n: int = TOY_N, epochs: int = TOY_EPOCHS, optimiser: str = TOY_OPTIMISER,
                balance: str = TOY_BALANCE) -> NRDSResult:
    """The paper's 2-D toy: real N(0, I) vs fakes N([0.5, 0], I) ("close") and N([1.5, 0], I) ("far").

    Published: areas 145.4955 / 71.1057, NRDS 0.6717 / 0.3283 (300 epochs, MLP 2 x 32 ReLU). The
    sample count, class balance and optimiser are not published. ``n`` points per set
    (``bench.data.gaussians.toy_sets(n, seed)``: the sets themselves change with the seed),
    ``optimiser`` a :data:`TOY_OPTIMISERS` key, ``balance`` as :class:`NRDS`.

    Default (the authors' NRDS code on 50 points per set: Adam 2e-4, beta1 0.5, one real + one fake
    per step, balanced per epoch), seeds 0-19: NRDS(close) 0.6145 +- 0.0333 (std), 5-95% interval
    0.572-0.664, mean areas 139.2 / 88.2. The published 0.6717 lies above that interval (above every
    one of the 20 seeds); no balanced protocol of the study puts it inside. The ideal classifier
    D = p / (p + q_pooled) of a balanced protocol gives mean outputs 0.5028 / 0.3105, NRDS 0.6182, for
    any sample count or optimiser; the published far area (71.1, mean output 0.238) is below it.
    Study: ``leaderboards/notes/nrds-toy-sensitivity.md`` (:func:`toy_study`, ``python -m metrics.nrds``).
    """
    from bench.data.gaussians import toy_sets
    sets = toy_sets(n, seed)
    bs, opt = toy_optimizer(optimiser)
    with _one_thread():
        return NRDS("mlp", epochs=epochs, batch_size=bs, optimizer=opt, seed=seed, balance=balance)(
            sets["real"], {"fake_close": sets["fake_close"], "fake_far": sets["fake_far"]})


def toy_curves(seeds: Sequence[int], n: int = TOY_N, epochs: int = TOY_EPOCHS, optimiser: str = TOY_OPTIMISER,
               balance: str = TOY_BALANCE, sets_seed: int | None = None) -> np.ndarray:
    """The curves of :func:`toy_example` for many seeds at once, shape (seeds, 2, epochs).

    One MLP per seed, stacked and trained in lock-step (batched matmuls): the same initial weights,
    sample sets, epoch draws and batches as ``toy_example(seed, ...)``, and Adam / SGD act per
    element, so each seed's curves equal its ``toy_example`` curves up to float rounding.
    ``sets_seed``: draw every seed's sample sets from this one seed (only D's seed varies, as in a
    suite run, whose samples are fixed); ``None``: each seed its own sets.
    """
    from bench.data.gaussians import toy_sets
    seeds = list(seeds)
    bs, make_opt = toy_optimizer(optimiser)
    NRDS("mlp", batch_size=bs, balance=balance)          # validates balance / batch size
    sets = [toy_sets(n, s if sets_seed is None else sets_seed) for s in seeds]
    layers = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            layers.append([m for m in ToyMLP(2).net if isinstance(m, nn.Linear)])
    w = [nn.Parameter(torch.stack([ls[k].weight.detach().t() for ls in layers])) for k in range(3)]
    b = [nn.Parameter(torch.stack([ls[k].bias.detach() for ls in layers]).unsqueeze(1)) for k in range(3)]
    opt = make_opt(w + b)

    def logits(x: torch.Tensor) -> torch.Tensor:            # (S, m, 2) -> (S, m)
        h = torch.relu(torch.baddbmm(b[0], x, w[0]))
        h = torch.relu(torch.baddbmm(b[1], h, w[1]))
        return torch.baddbmm(b[2], h, w[2]).squeeze(-1)

    real = torch.stack([st["real"] for st in sets])
    pooled = torch.stack([torch.cat([st["fake_close"], st["fake_far"]]) for st in sets])
    evals = [torch.stack([st[k] for st in sets]) for k in ("fake_close", "fake_far")]
    nr, nf = (n, n) if balance != "none" else (n, 2 * n)
    target = torch.cat([torch.ones(nr), torch.zeros(nf)]).expand(len(seeds), -1)
    step = nr + nf if bs is None else bs
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    rows = torch.arange(len(seeds)).unsqueeze(1)
    curves = np.zeros((len(seeds), 2, epochs))
    with _one_thread():
        for epoch in range(epochs):
            x, order = [], []
            for i, g in enumerate(gens):
                x.append(torch.cat([real[i, torch.randperm(n, generator=g)[:nr]],
                                    pooled[i, torch.randperm(2 * n, generator=g)[:nf]]]))
                order.append(_epoch_order(balance, nr, nf, g))
            x, order = torch.stack(x), torch.stack(order)
            for i in range(0, nr + nf, step):
                idx = order[:, i:i + step]
                loss = F.binary_cross_entropy_with_logits(logits(x[rows, idx]), target[rows, idx],
                                                          reduction="none").mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                for m, e in enumerate(evals):
                    curves[:, m, epoch] = torch.sigmoid(logits(e)).mean(1).numpy()
    return curves


def study_skip(n: int, balance: str, optimiser: str) -> bool:
    """The cells the default study leaves out: batch 2 above 200 points (2 x 10^5 steps per seed and more)."""
    return TOY_OPTIMISERS[optimiser][0] == 2 and n > 200


def toy_study(ns: Sequence[int] = (50, 100, 200, 1000), balances: Sequence[str] = ("batch", "none"),
              optimisers: Sequence[str] = tuple(TOY_OPTIMISERS), seeds: Sequence[int] = range(20),
              epochs: int = TOY_EPOCHS, skip: Callable[[int, str, str], bool] = study_skip) -> list[dict]:
    """NRDS(close) and areas of the toy over ``seeds`` for every (n, balance, optimiser) not skipped.

    Each row: n, balance, optimiser, seeds, mean, std (ddof 1), q05, q95 (linear interpolation),
    area_close and area_far (means), seconds.
    """
    import time
    out = []
    for n in ns:
        for bal in balances:
            for o in optimisers:
                if skip(n, bal, o):
                    continue
                t0 = time.perf_counter()
                c = toy_curves(seeds, n, epochs, o, bal)
                areas = np.stack([curve_areas(ci) for ci in c])
                close = areas[:, 0] / areas.sum(1)
                out.append({"n": n, "balance": bal, "optimiser": o, "seeds": len(close), "mean": close.mean(),
                            "std": close.std(ddof=1), "q05": np.quantile(close, 0.05),
                            "q95": np.quantile(close, 0.95), "area_close": areas[:, 0].mean(),
                            "area_far": areas[:, 1].mean(), "seconds": time.perf_counter() - t0})
    return out


def study_markdown(rows: Sequence[Mapping]) -> str:
    """The :func:`toy_study` rows as a markdown table (published: NRDS 0.6717, areas 145.50 / 71.11)."""
    lines = ["| n | balance | optimiser | seeds | NRDS(close) mean | std | 5% | 95% | 0.6717 inside | "
             "area close | area far |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        inside = "yes" if r["q05"] <= 0.6717 <= r["q95"] else "no"
        lines.append(f"| {r['n']} | {r['balance']} | {r['optimiser']} | {r['seeds']} | {r['mean']:.4f} | "
                     f"{r['std']:.4f} | {r['q05']:.4f} | {r['q95']:.4f} | {inside} | {r['area_close']:.1f} | "
                     f"{r['area_far']:.1f} |")
    return "\n".join(lines)


# -- the joint scorer -------------------------------------------------------------------------------
class NRDSScorer(JointScorer):
    """NRDS as a suite metric: one classifier per (seed, task) judges every row's samples together.

    The real side is the test split's field (``ctx.task.y``), each model's side its outputs for the
    same split (from the batch, or from the prior on tasks without paired inputs). Options:
    ``classifier`` ("image" | "mlp", default "image"), ``epochs`` (20), ``batch_size`` (64; 0 = full
    batch), ``lr`` (2e-4), ``beta1`` (0.5), ``balance`` ("epoch" | "batch" | "none", default "epoch";
    see :class:`NRDS`). The classifier's seed is the run seed. Keys: ``nrds`` (the row's share of the
    summed areas) and ``area``; the curves are drawn to ``nrds_curves.png``. ``protocol()`` records
    the classifier, epochs, batch size, optimiser, balance, the sample counts (real and per model),
    the sample shape and how D is trained (``metrics.judges``: on the CPU with 1 thread and deterministic
    algorithms, so ``--threads`` / ``--jobs`` do not move the scores), so all of them enter the protocol hash.
    """

    keys = ("nrds", "area")
    outputs = ("image", "labels", "depth", "points")
    higher_is_better = ("nrds", "area")
    ranges = {"nrds": (0.0, 1.0), "area": (0.0, None)}
    OPTIONS = ("classifier", "epochs", "batch_size", "lr", "beta1", "balance")

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        o = ctx.options
        unknown = sorted(set(o) - set(self.OPTIONS))
        if unknown:
            raise MetricError(f"nrds: unknown option '{unknown[0]}'; allowed: {', '.join(self.OPTIONS)}")
        self.classifier = str(o.get("classifier", "image"))
        if self.classifier not in ("image", "mlp"):
            raise MetricError(f"nrds: classifier must be 'image' or 'mlp', not '{self.classifier}'")
        self.epochs = int(o.get("epochs", 20))
        if self.epochs < 2:
            raise MetricError(f"nrds: epochs must be at least 2 (a curve needs two points), not {self.epochs}")
        bs = int(o.get("batch_size", 64))
        self.batch_size = None if bs <= 0 else bs
        self.lr, self.beta1 = float(o.get("lr", 2e-4)), float(o.get("beta1", 0.5))
        self.balance = str(o.get("balance", "epoch"))
        NRDS(self.classifier, batch_size=self.batch_size, balance=self.balance)     # checks balance, batch size
        self._real: list[torch.Tensor] = []
        self._models: dict[str, list[torch.Tensor]] = {}

    def update_real(self, batch: dict[str, torch.Tensor]) -> None:
        self._real.append(self.ctx.task.y(batch).detach().float().cpu())

    def update_model(self, model: str, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self._models.setdefault(model, []).append(pred.detach().float().cpu())

    def compute_joint(self) -> dict[str, dict[str, float]]:
        if not self._real or not self._models:
            raise MetricError("nrds needs the real split and at least one model's samples")
        real = torch.cat(self._real)
        # pooled in name order: the scores do not depend on the order the rows were run in
        fakes = {m: torch.cat(self._models[m]) for m in sorted(self._models)}
        for m, f in fakes.items():
            if not torch.isfinite(f).all():
                raise MetricError(f"nrds: model '{m}' produced non-finite samples")
        res = NRDS(self.classifier, epochs=self.epochs, batch_size=self.batch_size,
                   optimizer=adam(self.lr, (self.beta1, 0.999)), device=self.ctx.device,
                   seed=self.ctx.seed, balance=self.balance)(real, fakes)
        self._n = {"real": len(real), **{m: len(f) for m, f in sorted(fakes.items())}}
        self._shape = list(real.shape[1:])
        if self.ctx.artifacts is not None:
            res.plot(self.ctx.artifacts / "nrds_curves.png")
        return {m: {"nrds": s, "area": a} for m, s, a in zip(res.names, res.scores, res.areas)}

    def protocol(self) -> dict:
        """Everything that defines the numbers (no timings or paths; the device only as its kind, in
        ``classifier_training``: a judge trained on a GPU is another judge)."""
        balance = {"epoch": "per epoch min(#real, #pooled) of each side, shuffled together",
                   "batch": "per epoch min(#real, #pooled) of each side, every batch half real, half fake",
                   "none": "every epoch all real vs all pooled samples, unweighted"}[self.balance]
        return {"scorer": type(self).__name__, "classifier": self.classifier, "epochs": self.epochs,
                "batch_size": self.batch_size or "full", "optimizer": f"Adam lr {self.lr} betas ({self.beta1}, 0.999)",
                "balance": self.balance, "balance_rule": balance, "samples": getattr(self, "_n", None),
                "sample_shape": getattr(self, "_shape", None),
                "classifier_training": training_protocol("the run seed", self.ctx.device)}


if __name__ == "__main__":      # the sensitivity table of leaderboards/notes/nrds-toy-sensitivity.md
    print(study_markdown(toy_study()))
