"""Fully connected CRFs with Gaussian kernels, as differentiable mean-field iterations.

Sources: Kraehenbuehl & Koltun, "Efficient inference in fully connected CRFs with Gaussian edge
potentials" (NIPS 2011) for the kernels and the mean-field update; Zheng et al., "Conditional random
fields as recurrent neural networks" (ICCV 2015) for unrolling the iterations as network layers with
learnable kernel weights and a learnable label-compatibility matrix.

Pairwise kernel between pixels i != j (positions p in pixels, appearance I)::

    k(i, j) = w_bilateral * exp(-|p_i - p_j|^2 / (2 theta_alpha^2) - |I_i - I_j|^2 / (2 theta_beta^2))
            + w_spatial   * exp(-|p_i - p_j|^2 / (2 theta_gamma^2))

``I`` is the guide image times ``appearance_scale`` (127.5 maps a [-1, 1] photo onto 8-bit colour
units, so theta_beta is in the units of the pydensecrf defaults). Each of the two Gaussian kernels is
normalised separately before weighting (``normalization``): ``"symmetric"`` D^-1/2 K D^-1/2 (the
pydensecrf default), ``"row"`` D^-1 K (the crfasrnn Caffe code's, as we read it) or ``"none"``, with D the
kernel's row sums over j != i. Defaults (theta_alpha 80, theta_beta 13, theta_gamma 3, weights 10 / 3)
are the pydensecrf README values; the fusion paper gives none (an assumption).

Filtering ``sum_{j != i} k(i, j) v_j`` is exact and dense for ``window=None``. The spatial kernel
factorises over rows and columns (exact in O(N (H + W))); the bilateral one costs O(N^2): when its
N x N matrices for the batch fit in ``chunk_elements`` entries they are built once per forward and
reused by every iteration; otherwise they are recomputed in chunks of query rows on every iteration
(and, with gradients, once more in the backward pass instead of being stored). That is for small
images (the smoke profile's 32x32 or 64x64). For large images ``window=k`` (odd) restricts j to the
k x k neighbourhood of i, sampled every ``dilation`` pixels: O(N k^2) work, exact when the window
covers the whole image. With dilation, the sparser samples are what the normalisation sees too, so
normalised messages keep their scale. The window filter has a hand-written backward pass (in-place
accumulation; autograd through the per-offset loop was 8x slower than the forward at 256x256). The
permutohedral lattice of the papers is not used (an approximation of its own).

:class:`DenseCRF` is the discrete CRF (labels): unary = -logits, Potts-initialised learnable C x C
compatibility ``mu``, and per iteration::

    m = K Q;  Q <- softmax(logits - mu m)

:class:`GaussianCRF` is the continuous CRF for regression (depth), with energy
``sum_i (y_i - u_i)^2 + sum_{i<j} k(i, j) (y_i - y_j)^2``. Setting dE/dy_i = 0 gives the mean-field
(Jacobi) update ``y <- (u + K y) / (1 + K 1)``, a convex combination of the unary and the neighbours,
so y stays within the range of u. This is the form of continuous-CRF mean-field for depth of Xu et al.,
"Multi-scale continuous CRFs as sequential deep networks for monocular depth estimation" (CVPR 2017);
the fusion paper gives no formulation, so it is an assumption.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bench.errors import ConfigError

log = logging.getLogger(__name__)

NORMALIZATIONS: tuple[str, ...] = ("symmetric", "row", "none")
_EPS = 1e-12


def pixel_positions(h: int, w: int, *, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H*W, 2) (row, column) coordinates in pixels, row-major like ``flatten(-2)``."""
    r = torch.arange(h, device=device, dtype=dtype)
    c = torch.arange(w, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(r, c, indexing="ij"), -1).reshape(-1, 2)


def window_offsets(window: int, dilation: int = 1) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of a ``window`` x ``window`` neighbourhood with ``dilation``, centre left out."""
    r = window // 2
    return [(dy * dilation, dx * dilation) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if dy or dx]


# -- raw (unnormalised, unweighted) Gaussian filtering -----------------------------------------------------

def _gauss_rows(fq: torch.Tensor, fk: torch.Tensor) -> torch.Tensor:
    """Kernel rows exp(-|fq_i - fk_j|^2) (B|1, n, N), self pairs included (features pre-scaled by 1/sqrt 2)."""
    sq = (fq * fq).sum(-1, keepdim=True) + (fk * fk).sum(-1).unsqueeze(-2)
    return torch.baddbmm(sq, fq, fk.transpose(-1, -2), alpha=-2).clamp_min(0).neg().exp()


def _gauss_block(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_j k(i, j) v_j for a block of query pixels; v (B, C, N) -> (B, C, n)."""
    return v @ _gauss_rows(fq, fk).transpose(-1, -2)


class _ExactFilter:
    """Dense sum_{j != i} exp(-|f_i - f_j|^2 / 2) v_j over all pixel pairs; feats (B|1, N, D), v (B, C, N).

    When the whole kernel matrix fits in ``budget`` entries it is built once and reused by every call
    (every mean-field iteration); otherwise it is recomputed in chunks of query rows on each call, and,
    with gradients, once more in the backward pass (activation checkpointing) instead of being stored.
    The self pair (k(i, i) = exp(0) = 1) is filtered with the rest and subtracted.
    """

    def __init__(self, feats: torch.Tensor, budget: int):
        f = feats - feats.mean(-2, keepdim=True)       # centred: smaller magnitudes, same distances
        self.feats = f * 0.5 ** 0.5
        b, n = feats.shape[0], feats.shape[1]
        self.matrix = _gauss_rows(self.feats, self.feats) if b * n * n <= budget else None
        self.rows = max(1, budget // max(1, b * n))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if self.matrix is not None:
            return v @ self.matrix.transpose(-1, -2) - v
        f, n = self.feats, self.feats.shape[-2]
        use_ckpt = torch.is_grad_enabled() and (f.requires_grad or v.requires_grad)
        out = []
        for s in range(0, n, self.rows):
            fq = f[:, s:s + self.rows]
            if use_ckpt:
                out.append(checkpoint(_gauss_block, fq, f, v, use_reentrant=False))
            else:
                out.append(_gauss_block(fq, f, v))
        return torch.cat(out, -1) - v


class _SeparableFilter:
    """Exact dense spatial Gaussian sum_{j != i} exp(-|p_i - p_j|^2 / (2 theta^2)) v_j in O(N (H + W)).

    The kernel factorises over rows and columns, K = K_rows (x) K_cols, so K v = K_rows V K_cols^T.
    """

    def __init__(self, h: int, w: int, theta: torch.Tensor):
        def k1(n: int) -> torch.Tensor:
            t = torch.arange(n, device=theta.device, dtype=theta.dtype) / theta
            return torch.exp(-0.5 * (t[:, None] - t[None, :]) ** 2)
        self.kr, self.kc = k1(h), k1(w)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.kr @ v @ self.kc.transpose(0, 1) - v


def _window_sum(v: torch.Tensor, weights: torch.Tensor, offsets: list[tuple[int, int]], pad: int,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """out_i += sum_o weights[:, o](i) * v_{i+o} (zero outside the image), accumulated in place."""
    h, w = v.shape[-2:]
    vp = F.pad(v, (pad, pad, pad, pad))
    if out is None:
        out = v.new_zeros(torch.broadcast_shapes(v.shape, weights[:, :1].shape))
    for k, (dy, dx) in enumerate(offsets):
        out.addcmul_(weights[:, k:k + 1], vp[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w])
    return out


class _WindowFilterFn(torch.autograd.Function):
    """The window filter with a hand-written backward.

    Autograd through the loop would save a sliced view per offset and, in the backward pass, write a
    zero-filled gradient of the whole padded input and of the whole (B, K, H, W) weight tensor for each
    offset; here the backward accumulates in place and saves only ``v`` and the weights.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, weights: torch.Tensor, offsets: list[tuple[int, int]],  # type: ignore[override]
                pad: int) -> torch.Tensor:
        ctx.save_for_backward(v, weights)
        ctx.offsets, ctx.pad = offsets, pad
        return _window_sum(v, weights, offsets, pad)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        v, weights = ctx.saved_tensors
        offsets, p = ctx.offsets, ctx.pad
        h, w = v.shape[-2:]
        gv = gw = None
        if ctx.needs_input_grad[0]:
            # d/dv_j of sum_o w_o(i) v_{i+o}: scatter g * w_o back to i + o
            gp = g.new_zeros(*g.shape[:-2], h + 2 * p, w + 2 * p)
            for k, (dy, dx) in enumerate(offsets):
                gp[..., p + dy:p + dy + h, p + dx:p + dx + w].addcmul_(g, weights[:, k:k + 1])
            gv = gp[..., p:p + h, p:p + w].sum_to_size(v.shape)
        if ctx.needs_input_grad[1]:
            vp = F.pad(v, (p, p, p, p))
            gw = torch.stack([(g * vp[..., p + dy:p + dy + h, p + dx:p + dx + w]).sum(1)
                              for dy, dx in offsets], 1).sum_to_size(weights.shape)
        return gv, gw, None, None


class _WindowFilter:
    """sum over the window's offsets of w_o(i) v_{i+o}; w_o(i) already 0 where i+o leaves the image."""

    def __init__(self, weights: torch.Tensor, offsets: list[tuple[int, int]], pad: int):
        self.weights, self.offsets, self.pad = weights, offsets, pad      # weights (B|1, K, H, W)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (v.requires_grad or self.weights.requires_grad):
            return _WindowFilterFn.apply(v, self.weights, self.offsets, self.pad)
        return _window_sum(v, self.weights, self.offsets, self.pad)

    def shifted(self, v: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, K, H, W): v at i + o for every offset o (0 outside the image)."""
        h, w = v.shape[-2:]
        p = self.pad
        vp = F.pad(v, (p, p, p, p))
        return torch.cat([vp[..., p + dy:p + dy + h, p + dx:p + dx + w] for dy, dx in self.offsets], 1)


def _window_weights(offsets: list[tuple[int, int]], pad: int, h: int, w: int, theta_pos: torch.Tensor,
                    guide: torch.Tensor | None, theta_app: torch.Tensor | None) -> torch.Tensor:
    """(B|1, K, H, W) kernel weights exp(-|o|^2/(2 tp^2) [- |I_i - I_{i+o}|^2/(2 ta^2)]) x inside-image mask."""
    dtype, device = theta_pos.dtype, theta_pos.device
    inside = F.pad(torch.ones(1, 1, h, w, dtype=dtype, device=device), (pad, pad, pad, pad))
    gp = None if guide is None else F.pad(guide, (pad, pad, pad, pad))
    ws = []
    for dy, dx in offsets:
        sl = (..., slice(pad + dy, pad + dy + h), slice(pad + dx, pad + dx + w))
        e = -(dy * dy + dx * dx) / (2 * theta_pos ** 2) * torch.ones(1, 1, 1, dtype=dtype, device=device)
        if guide is not None:
            e = e - (guide - gp[sl]).pow(2).sum(1) / (2 * theta_app ** 2)
        ws.append(torch.exp(e) * inside[sl][:, 0])
    return torch.stack(ws, 1)


class PairwiseFilter:
    """The message operator of one image: ``filt(v) = sum_kernels w a * K(b * v)`` (normalised, weighted).

    The normalisation is ``a_i k(i, j) b_j`` (see :meth:`GaussianKernels._norm_vectors`). With the window
    filter both kernels, their weights and normalisations are folded into one set of per-offset weights
    (``fused``) so that each iteration filters once.
    """

    def __init__(self, raws: list, weights: list[torch.Tensor], norms: list[tuple[torch.Tensor, torch.Tensor]],
                 fused: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.raws, self.weights, self.norms, self.fused = raws, weights, norms, fused

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(v)
        out = 0
        for raw, w, (a, b) in zip(self.raws, self.weights, self.norms):
            out = out + w * a * raw(b * v)
        return out


# -- the kernels as a module -------------------------------------------------------------------------------

class GaussianKernels(nn.Module):
    """The bilateral (appearance) and spatial (smoothness) kernels, with learnable bandwidths and weights.

    Bandwidths and weights are stored as logarithms so that they stay positive; a weight of 0 is allowed
    (log = -inf) and then stays 0. ``learnable=False`` freezes them (``requires_grad=False``).
    """

    def __init__(self, *, theta_alpha: float = 80.0, theta_beta: float = 13.0, theta_gamma: float = 3.0,
                 w_bilateral: float = 10.0, w_spatial: float = 3.0, window: int | None = None,
                 dilation: int = 1, normalization: str = "symmetric", appearance_scale: float = 127.5,
                 learnable: bool = True, chunk_elements: int = 2 ** 26):
        super().__init__()
        if min(theta_alpha, theta_beta, theta_gamma) <= 0:
            raise ConfigError("CRF kernel bandwidths theta_alpha, theta_beta, theta_gamma must be positive")
        if min(w_bilateral, w_spatial) < 0:
            raise ConfigError("CRF kernel weights w_bilateral, w_spatial must be >= 0")
        if window is not None and (window < 3 or window % 2 == 0):
            raise ConfigError(f"CRF window must be an odd integer >= 3 (or none for exact), got {window}")
        if dilation < 1:
            raise ConfigError(f"CRF window dilation must be >= 1, got {dilation}")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"unknown CRF normalization '{normalization}'; choose one of: "
                              f"{', '.join(NORMALIZATIONS)}")
        self.window, self.dilation, self.normalization = window, dilation, normalization
        self.appearance_scale, self.chunk_elements = float(appearance_scale), int(chunk_elements)
        self.log_theta = nn.Parameter(torch.log(torch.tensor([theta_alpha, theta_beta, theta_gamma])),
                                      requires_grad=learnable)
        self.log_weight = nn.Parameter(torch.log(torch.tensor([float(w_bilateral), float(w_spatial)])),
                                       requires_grad=learnable)

    @property
    def thetas(self) -> torch.Tensor:
        """(theta_alpha, theta_beta, theta_gamma)."""
        return self.log_theta.exp()

    @property
    def weights(self) -> torch.Tensor:
        """(w_bilateral, w_spatial)."""
        return self.log_weight.exp()

    def extra_repr(self) -> str:
        t, w = self.thetas.tolist(), self.weights.tolist()
        return (f"theta=({t[0]:.3g}, {t[1]:.3g}, {t[2]:.3g}), w=({w[0]:.3g}, {w[1]:.3g}), window={self.window}, "
                f"dilation={self.dilation}, normalization={self.normalization}")

    def build(self, image: torch.Tensor, dtype: torch.dtype | None = None) -> PairwiseFilter:
        """The message operator for guide ``image`` (B, C_img, H, W), computed in ``dtype``."""
        dtype = dtype or torch.promote_types(image.dtype, torch.float32)
        image = image.to(dtype) * self.appearance_scale
        b, _, h, w = image.shape
        th = self.log_theta.to(dtype).exp()
        wts = self.log_weight.to(dtype).exp()
        ones = torch.ones(b, 1, h, w, dtype=dtype, device=image.device)
        if self.window is None:
            pos = pixel_positions(h, w, device=image.device, dtype=dtype)
            app = image.flatten(2).transpose(1, 2)                               # (B, N, C_img)
            f_bil = torch.cat([pos.expand(b, -1, -1) / th[0], app / th[1]], -1)
            raws = [_flat_op(_ExactFilter(f_bil, self.chunk_elements), h, w), _SeparableFilter(h, w, th[2])]
            norms = [self._norm_vectors(raw(ones)) for raw in raws]
            fused = None
            log.debug("exact dense CRF filtering over %d pixels", h * w)
        else:
            offs = window_offsets(self.window, self.dilation)
            pad = (self.window // 2) * self.dilation
            raws = [_WindowFilter(_window_weights(offs, pad, h, w, th[0], image, th[1]), offs, pad),
                    _WindowFilter(_window_weights(offs, pad, h, w, th[2], None, None), offs, pad)]
            norms = [self._norm_vectors(r.weights.sum(1, keepdim=True).expand(b, 1, h, w)) for r in raws]
            fused_w = sum(wt * a * r.weights * r.shifted(bb) for wt, r, (a, bb) in zip(wts, raws, norms))
            fused = _WindowFilter(fused_w, offs, pad)
        return PairwiseFilter(raws, [wts[0], wts[1]], norms, fused)

    def _norm_vectors(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one = torch.ones_like(d)
        if self.normalization == "none":
            return one, one
        d = d.clamp_min(_EPS)
        if self.normalization == "row":
            return 1 / d, one
        s = d.rsqrt()
        return s, s


def _flat_op(fn, h: int, w: int):
    """Wrap a (B, C, N) filter as a (B, C, H, W) one."""
    def op(v: torch.Tensor) -> torch.Tensor:
        return fn(v.flatten(2)).reshape(*v.shape[:2], h, w)
    return op


def _kernel_kwargs(theta_alpha: float, theta_beta: float, theta_gamma: float, w_bilateral: float,
                   w_spatial: float, window: int | None, dilation: int, normalization: str,
                   appearance_scale: float, learnable: bool, chunk_elements: int) -> dict:
    return dict(theta_alpha=theta_alpha, theta_beta=theta_beta, theta_gamma=theta_gamma,
                w_bilateral=w_bilateral, w_spatial=w_spatial, window=window, dilation=dilation,
                normalization=normalization, appearance_scale=appearance_scale, learnable=learnable,
                chunk_elements=chunk_elements)


def _check_pair(unary: torch.Tensor, image: torch.Tensor) -> None:
    if unary.dim() != 4 or image.dim() != 4 or unary.shape[-2:] != image.shape[-2:] \
            or unary.shape[0] != image.shape[0]:
        raise ValueError(f"CRF needs (B, C, H, W) unaries and a guide image of the same B, H, W; got "
                         f"{tuple(unary.shape)} and {tuple(image.shape)}")


# -- the two CRFs --------------------------------------------------------------------------------------------

class DenseCRF(nn.Module):
    """Discrete fully connected CRF, mean-field unrolled (CRF-as-RNN). ``forward(logits, image) -> Q``."""

    def __init__(self, num_classes: int, *, iterations: int = 5, theta_alpha: float = 80.0,
                 theta_beta: float = 13.0, theta_gamma: float = 3.0, w_bilateral: float = 10.0,
                 w_spatial: float = 3.0, window: int | None = None, dilation: int = 1,
                 normalization: str = "symmetric", appearance_scale: float = 127.5, learnable: bool = True,
                 chunk_elements: int = 2 ** 26):
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"a discrete CRF needs at least 2 classes, got {num_classes}")
        if iterations < 0:
            raise ConfigError(f"CRF iterations must be >= 0, got {iterations}")
        self.num_classes, self.iterations = num_classes, iterations
        self.kernels = GaussianKernels(**_kernel_kwargs(
            theta_alpha, theta_beta, theta_gamma, w_bilateral, w_spatial, window, dilation, normalization,
            appearance_scale, learnable, chunk_elements))
        self.compat = nn.Parameter(1 - torch.eye(num_classes), requires_grad=learnable)   # Potts

    def scores(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The final mean-field log-potentials (B, C, H, W); ``softmax`` of them gives the marginals."""
        _check_pair(logits, image)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"CRF built for {self.num_classes} classes got {logits.shape[1]} unary channels")
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.autocast(logits.device.type, enabled=False):
            logits = logits.to(dtype)
            filt = self.kernels.build(image, dtype)
            mu = self.compat.to(dtype)
            s = logits
            for _ in range(self.iterations):
                m = filt(s.softmax(1))
                s = logits - torch.einsum("lk,bkhw->blhw", mu, m)
        return s

    def log_marginals(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.scores(logits, image).log_softmax(1)

    def forward(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.scores(logits, image).softmax(1)


class GaussianCRF(nn.Module):
    """Continuous fully connected CRF for regression, mean-field unrolled. ``forward(u, image) -> y``.

    Default weights (bilateral 3, spatial 1) are our choice (an assumption; no source gives them for
    this setting).
    """

    def __init__(self, *, iterations: int = 5, theta_alpha: float = 80.0, theta_beta: float = 13.0,
                 theta_gamma: float = 3.0, w_bilateral: float = 3.0, w_spatial: float = 1.0,
                 window: int | None = None, dilation: int = 1, normalization: str = "symmetric",
                 appearance_scale: float = 127.5, learnable: bool = True, chunk_elements: int = 2 ** 26):
        super().__init__()
        if iterations < 0:
            raise ConfigError(f"CRF iterations must be >= 0, got {iterations}")
        self.iterations = iterations
        self.kernels = GaussianKernels(**_kernel_kwargs(
            theta_alpha, theta_beta, theta_gamma, w_bilateral, w_spatial, window, dilation, normalization,
            appearance_scale, learnable, chunk_elements))

    def forward(self, unary: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        _check_pair(unary, image)
        dtype = torch.promote_types(unary.dtype, torch.float32)
        with torch.autocast(unary.device.type, enabled=False):
            u = unary.to(dtype)
            filt = self.kernels.build(image, dtype)
            denom = 1 + filt(torch.ones_like(u[:, :1]))
            y = u
            for _ in range(self.iterations):
                y = (u + filt(y)) / denom
        return y


__all__ = ["DenseCRF", "GaussianCRF", "GaussianKernels", "PairwiseFilter", "NORMALIZATIONS",
           "pixel_positions", "window_offsets"]
