"""The contracts kernel: the shapes every method, component, loss, regulariser and scorer fits.

``bench/`` owns these types and never imports ``methods/`` or ``metrics/``; those packages (and
outside plug-ins) implement them and register by name. The trainer, scorer and suite code read
only what is declared here, so a new method family is one adapter file plus one registration line.

Components and slots
    An adapter declares the components it is built from as named :class:`Slot` s, e.g.
    ``slots = {"G": Slot("generators", "unet", ...), "D": Slot("discriminators")}``. The builder
    (``bench.build``) constructs each slot's component from the suite row (``components = { D = {
    name = "fusion4-sn", ndf = 32 } }``), checks its options against the factory's signature minus
    what the adapter provides, lets the adapter initialise it (unless the component keeps its own
    initialisation: ``init_policy = "own"``) and hands the built modules to the adapter.

Discriminator output and losses
    A discriminator returns a tensor, a list of tensors (one per scale), a dict with ``"logits"``
    and named heads, or a :class:`DOutput`; :meth:`DOutput.wrap` turns each into a ``DOutput``.
    Losses and regularisers see :class:`AdvTerms`: real and fake samples, their D outputs (computed
    on first use) and the critic (D bound to the condition) for gradient penalties.

Sampling and scoring
    ``adapter.sample(FromBatch(batch) | FromPrior(n, labels, seed))`` returns named outputs
    (``{"y": ...}``); each output estimates a task field (``adapter.outputs``). Scorers declare
    their ``feed`` (``"paired"``: needs the matching target of each sample; ``"samples"``: a
    distribution metric; ``"joint"``: several models scored together; ``"log"``: the run's own
    training log up to the scored checkpoint, :class:`LogScorer`), the output they read and which
    keys are better high.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from bench.errors import MetricError, PluginError

if TYPE_CHECKING:  # pragma: no cover
    from bench.tasks import TaskSpec

Batch = dict[str, torch.Tensor]

INIT_POLICIES = ("adapter", "own")


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers and strings (stable across runs, machines and Python versions)."""
    h = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


# --------------------------------------------------------------------------------------- context
@dataclass
class TrainContext:
    """What the trainer hands an adapter: where to run and how, and the run's seed."""

    device: torch.device
    amp: bool = False                 # bf16 autocast (CUDA only)
    channels_last: bool = False
    seed: int = 0
    image_size: int = 256             # the run's training / evaluation image side
    steps_per_epoch: int = 0          # training iterations per pass over the data (0: unknown)
    total_steps: int = 0              # the run's training length in G steps (0: unknown)

    def progress(self, step: int) -> float:
        """The share of training done at ``step``, in [0, 1] (0 when the length is unknown)."""
        return min(1.0, max(0.0, step / self.total_steps)) if self.total_steps else 0.0

    def epoch(self, iteration: int) -> int:
        """The epoch (from 0) that training iteration ``iteration`` belongs to."""
        return iteration // self.steps_per_epoch if self.steps_per_epoch else 0
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.channels_last and v.dim() == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def generator(self, step: int, stream: str = "") -> torch.Generator:
        """A CPU generator that is a pure function of (run seed, step, stream): resume-exact noise."""
        return torch.Generator().manual_seed(derive_seed(self.seed, step, stream))


# --------------------------------------------------------------------------------------- slots
@dataclass(frozen=True)
class Slot:
    """One component an adapter is built from.

    ``registry``: the registry kind that names it ("generators", "discriminators", ...).
    ``default``: the component used when the row names none ("" = the row must name one).
    ``args``: how many leading positional parameters the adapter fills (documented by name).
    ``provided``: keyword parameters the adapter fills; a row may not set them.
    ``call``: the arguments the adapter passes to ``forward`` (e.g. ``("x", "y")`` for an
    image-conditioned D): a component whose ``forward`` takes another number is refused at parse time.
    """

    registry: str
    default: str = ""
    args: tuple[str, ...] = ()
    provided: tuple[str, ...] = ()
    call: tuple[str, ...] | None = None     # how the adapter calls the module's forward (checked when given)
    doc: str = ""


@dataclass
class ComponentArgs:
    """The values an adapter gives a slot's factory: ``factory(*args, **kwargs, **row options)``."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def registry_ref(kind: str, default: Any, doc: str = "") -> Any:
    """A method option that names registry entries (a name, or a dict keyed by names).

    The validator checks such options at parse time, like every other registry name.
    """
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"registry": kind, "doc": doc})
    return field(default=default, metadata={"registry": kind, "doc": doc})


# --------------------------------------------------------------------------------------- D output
@dataclass
class DOutput:
    """What a discriminator says: logits per scale, intermediate features per scale, named heads."""

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]] = field(default_factory=list)
    heads: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def wrap(cls, out: Any) -> "DOutput":
        if isinstance(out, DOutput):
            res = out
        elif isinstance(out, torch.Tensor):
            res = cls([out])
        elif isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
            res = cls(list(out))
        elif isinstance(out, Mapping) and isinstance(out.get("logits"), (torch.Tensor, list, tuple)):
            base = cls.wrap(out["logits"])
            heads = {k: v for k, v in out.items() if k not in ("logits", "features")}
            res = cls(base.logits, list(out.get("features") or []), heads)
        else:
            raise PluginError(f"a discriminator returned {type(out).__name__}; return a tensor, a list of tensors, "
                              "a dict with 'logits', or bench.contracts.DOutput")
        for t in res.logits:
            if t.numel() == 0:
                raise PluginError(f"a discriminator returned empty logits (shape {tuple(t.shape)}); it must give at "
                                  "least one logit per sample")
        return res


class AdvTerms:
    """Real and fake samples with their discriminator outputs, as losses and regularisers see them.

    ``critic(v)`` is D bound to the condition (``D(x, v)`` wrapped in ``DOutput``). ``d_real`` /
    ``d_fake`` are given, or computed with the critic on first use (so a generator loss that never
    reads real logits costs no extra forward pass).
    """

    def __init__(self, critic: Callable[[torch.Tensor], DOutput], real: torch.Tensor, fake: torch.Tensor,
                 d_real: DOutput | None = None, d_fake: DOutput | None = None,
                 modules: Mapping[str, nn.Module] | None = None, **extra: Any):
        self.critic, self.real, self.fake = critic, real, fake
        self._d_real, self._d_fake = d_real, d_fake
        self.modules = dict(modules or {})  # the adapter's networks by slot ("G", "D"): weight regularisers read them
        self.extra = extra                 # adapter-specific inputs (labels, masks) for regularisers

    @property
    def real_known(self) -> bool:
        """Whether D's output on the real samples is already computed (reading ``d_real`` would not call D)."""
        return self._d_real is not None

    @property
    def d_real(self) -> DOutput:
        if self._d_real is None:
            self._d_real = self.critic(self.real)
        return self._d_real

    @property
    def d_fake(self) -> DOutput:
        if self._d_fake is None:
            self._d_fake = self.critic(self.fake)
        return self._d_fake


# --------------------------------------------------------------------------------------- sampling
@dataclass
class FromBatch:
    """Generate for each sample of a (test) batch: the conditional case."""

    batch: Batch


@dataclass
class FromPrior:
    """Generate ``n`` samples from the prior, for the given class ``labels`` (or None), from ``seed``.

    ``latent_ids`` (optional, (n,) int): samples with the same id share their latent, e.g. a grid
    whose rows are latents and whose columns are classes.
    """

    n: int
    labels: torch.Tensor | None = None
    seed: int = 0
    latent_ids: torch.Tensor | None = None
    truncation: float | None = None      # BigGAN's trick: entries beyond +-truncation drawn again

    def generator(self) -> torch.Generator:
        """A CPU generator for this request's latents (the same latents on every device)."""
        return torch.Generator().manual_seed(self.seed)

    def _draw(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(shape, generator=gen)
        if self.truncation is not None:
            while (out := z.abs() > self.truncation).any():
                z[out] = torch.randn(int(out.sum()), generator=gen)
        return z

    def normal(self, dims: int) -> torch.Tensor:
        """(n, dims) standard normal latents on the CPU, a pure function of the request; with ``truncation``,
        each entry drawn from the normal truncated to [-truncation, truncation] (by drawing again)."""
        if self.latent_ids is None:
            return self._draw((self.n, dims), self.generator())
        ids = self.latent_ids.reshape(-1).tolist()
        table = {i: self._draw((dims,), torch.Generator().manual_seed(derive_seed(self.seed, "latent", i)))
                 for i in dict.fromkeys(ids)}
        return torch.stack([table[i] for i in ids])


SampleRequest = FromBatch | FromPrior


# --------------------------------------------------------------------------------------- adapter
class MethodAdapter:
    """Base class of method adapters.

    Subclasses set ``Options`` (a dataclass), ``slots``, ``outputs`` and implement ``train_step``
    and ``sample`` (or the shorthand ``generate(batch)`` for one output from a batch). The adapter
    is built as ``cls(options, task, ctx, components)`` with ``components`` the built slot modules.
    """

    @dataclass
    class Options:
        pass

    #: the components this method is built from
    slots: ClassVar[dict[str, Slot]] = {}
    #: output name -> the task field it estimates (scorers compare the output with that field)
    outputs: ClassVar[dict[str, str]] = {"y": "y"}
    #: the sample requests this method answers ("batch": conditional on data; "prior": z and labels)
    samples_from: ClassVar[tuple[str, ...]] = ("batch",)
    #: False for a fixed model with nothing to train (profiles may then say steps = 0)
    trainable: ClassVar[bool] = True
    #: the modules averaged over training when a profile or row sets ``ema`` (bench/ema.py)
    ema_modules: ClassVar[tuple[str, ...]] = ("G",)
    d_steps_per_g: int = 1

    def __init__(self, options: Any, task: "TaskSpec", ctx: TrainContext,
                 components: Mapping[str, nn.Module] | None = None):
        self.options, self.task, self.ctx = options, task, ctx
        self.components: dict[str, nn.Module] = dict(components or {})
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def component_args(cls, slot: str, options: Any, task: "TaskSpec", image_size: int) -> ComponentArgs:
        """The arguments this adapter gives the factory of ``slot`` (its ``args`` and ``provided``)."""
        return ComponentArgs()

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, options: Any) -> None:
        """Initialise a freshly built component whose ``init_policy`` is "adapter" (default: leave it)."""

    # -- training ------------------------------------------------------------------------------
    def train_step(self, batch: Batch, step: int, update_g: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)

    def extra_state(self) -> dict[str, Any]:
        """Training state outside modules and optimisers (e.g. an image history buffer): plain data."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, request: SampleRequest) -> dict[str, torch.Tensor]:
        """Named outputs for ``request`` (eval mode)."""
        if isinstance(request, FromBatch) and "batch" in self.samples_from:
            out = self.generate(request.batch)
            return out if isinstance(out, dict) else {"y": out}
        kind = "a batch" if isinstance(request, FromBatch) else "the prior"
        raise MetricError(f"method {type(self).__name__} cannot sample from {kind} "
                          f"(it samples from: {', '.join(self.samples_from)})")

    @torch.no_grad()
    def generate(self, batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def eval_protocol(self) -> dict[str, Any]:
        """What about sampling changes the numbers (eval mode of G, truncation, ...): hashed with them."""
        return {}


# --------------------------------------------------------------------------------------- losses
class AdversarialLoss:
    """An adversarial loss: ``d_loss(terms)`` for D, ``g_loss(terms)`` for G (scalars)."""

    name = "base"

    def d_loss(self, t: AdvTerms) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, t: AdvTerms) -> torch.Tensor:
        raise NotImplementedError


REGULARIZER_SIDES = ("d", "g", "input")


class Regularizer:
    """What a row's ``regularizers = { name = weight }`` adds to the adversarial step, by ``applies_to``:

    - ``"d"``: a term of D's loss, ``weight * __call__(terms)`` (gradient penalties, R1 / R2);
    - ``"g"``: a term of G's loss, the same way (feature matching, orthogonal regularisation of G);
    - ``"input"``: a change of what D sees, ``perturb(v, weight, progress)`` applied to the real and the
      generated samples before every critic call of D's and G's updates (instance noise); ``progress`` is
      the share of training done, in [0, 1] (``TrainContext.progress``), for annealed schedules.

    Randomness comes from ``torch`` 's global generator, which the trainer seeds per step. The weighted sum is
    :class:`bench.adversarial.Regularizers`; :class:`bench.adversarial.AdversarialStep` applies it.
    """

    applies_to: ClassVar[str] = "d"

    def __call__(self, t: AdvTerms) -> torch.Tensor:
        raise NotImplementedError

    def perturb(self, v: torch.Tensor, weight: float, progress: float) -> torch.Tensor:
        """For ``applies_to == "input"``: what D sees instead of ``v``."""
        raise NotImplementedError


class HistoryBuffer:
    """A pool of past generated samples that D is shown instead of the newest ones (Shrivastava et al. 2017;
    CycleGAN's ``ImagePool`` of 50): ``query(batch)`` returns a batch of the same shape. Its state travels in
    checkpoints (``state_dict`` / ``load_state_dict``) so that resume stays exact."""

    def query(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------- scorers
FEEDS = ("paired", "samples", "joint", "log")


@dataclass
class ScoreContext:
    task: "TaskSpec"                        # bound to the dataset, viewed at the field the output estimates
    device: torch.device
    cache_dir: Path                         # for cached segmenters / reference statistics
    options: dict[str, Any] = field(default_factory=dict)    # suite [metric_options.<name>] + profile
    train_data: Callable[[], torch.utils.data.Dataset] | None = None   # real training split, built lazily
    seed: int = 0
    artifacts: Path | None = None           # where a scorer may write plots (joint scorers)
    run_dir: Path | None = None             # the scored run's folder (log scorers: its scalars.csv)
    step: int | None = None                 # the scored checkpoint's step (log scorers)


class Scorer:
    """Streaming scorer: ``update(pred, batch)`` per batch, ``compute()`` once.

    ``feed = "paired"``: ``pred`` is the output for this very batch (``FromBatch``). ``"samples"``:
    ``pred`` are samples of the model's distribution with the batch's class labels (``FromBatch``
    on conditional tasks, ``FromPrior`` on tasks without paired inputs); the batch is the real side.
    """

    feed: ClassVar[str] = "paired"
    #: the adapter output this scorer reads by default ("metric@output" in a suite reads another)
    reads: ClassVar[str] = "y"
    #: metric keys this scorer produces (for column ordering and documentation)
    keys: ClassVar[tuple[str, ...]] = ()
    #: the field kinds this scorer can score ("image", "labels", "depth", "points", ...)
    outputs: ClassVar[tuple[str, ...]] = ("image", "labels", "depth")
    #: larger is better, per key (keys derived from these with a suffix follow them)
    higher_is_better: ClassVar[tuple[str, ...]] = ()
    #: the range a key's values can take, (lower, upper) with None for unbounded (keys derived with a
    #: suffix follow them); intervals over seeds are clipped to it
    ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {}

    def __init__(self, ctx: ScoreContext):
        self.ctx = ctx

    def update(self, pred: torch.Tensor, batch: Batch) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__}

    def score_reference(self, batch: Batch) -> torch.Tensor | None:
        """The 'oracle' prediction for this batch (the real target), or None if not meaningful."""
        return self.ctx.task.y(batch)

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        """Before any training: check that what this scorer will read (weights, extractors) is there,
        raising a one-line ``BenchError`` that says what to fetch. Default: nothing to check."""

    @classmethod
    def is_higher_better(cls, key: str) -> bool:
        base = key.split("@", 1)[0]
        return any(base == k or base.startswith(k + "_") for k in cls.higher_is_better)

    @classmethod
    def range_of(cls, key: str) -> tuple[float | None, float | None] | None:
        """The range of ``key``'s values (the longest declared key it equals or extends), or None."""
        base = key.split("@", 1)[0]
        hits = [k for k in cls.ranges if base == k or base.startswith(k + "_")]
        return tuple(cls.ranges[max(hits, key=len)]) if hits else None


class JointScorer(Scorer):
    """Scores several models together (NRDS): ``update_real(batch)`` over the real split, then
    ``update_model(name, pred, batch)`` per model, and ``compute_joint() -> {model: {key: value}}``."""

    feed: ClassVar[str] = "joint"

    def update_real(self, batch: Batch) -> None:
        raise NotImplementedError

    def update_model(self, model: str, pred: torch.Tensor, batch: Batch) -> None:
        raise NotImplementedError

    def compute_joint(self) -> dict[str, dict[str, float]]:
        raise NotImplementedError


class LogScorer(Scorer):
    """Scores what a run's own training did (``feed = "log"``): ``compute()`` once, reading
    ``ctx.run_dir``'s logged scalars up to ``ctx.step``, the scored checkpoint's step. No test batch
    is fed (``update`` is never called) and oracle rows, which have no training, get no value."""

    feed: ClassVar[str] = "log"
    outputs: ClassVar[tuple[str, ...]] = ()      # any task: the log does not depend on the output's kind

    def update(self, pred: torch.Tensor, batch: Batch) -> None:   # pragma: no cover - never fed
        raise NotImplementedError("a log scorer reads the run's training log, not test batches")

    def score_reference(self, batch: Batch) -> torch.Tensor | None:
        return None


def scorer_feed(scorer_cls: Any) -> str:
    feed = getattr(scorer_cls, "feed", "paired")
    return feed if feed in FEEDS else "paired"


def options_fields(options_cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(options_cls)) if dataclasses.is_dataclass(options_cls) else []
