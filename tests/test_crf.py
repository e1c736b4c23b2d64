"""The dense CRFs (methods/crf.py) and the CNN-CRF adapter (methods/cnn_crf.py).

References are independent of the code under test: an explicit N x N kernel matrix built pixel pair by
pixel pair from the formulas of Kraehenbuehl & Koltun (2011), softmax of the unaries, and hand-built
images whose right answer is known (an isolated noisy pixel, an edge in the guide image).
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.build import build_method
from bench.registry import METHODS, TASKS
from methods.base import TrainContext
from methods.crf import NORMALIZATIONS, DenseCRF, GaussianCRF, GaussianKernels

KERNEL = dict(theta_alpha=3.0, theta_beta=60.0, theta_gamma=1.5, w_bilateral=2.0, w_spatial=0.7)


def _brute_force_kernels(img: torch.Tensor, scale: float = 127.5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, the bilateral and spatial N x N matrices k(i, j), i != j, entry by entry from the formulas."""
    _, _, h, w = img.shape
    n = h * w
    ta, tb, tg = KERNEL["theta_alpha"], KERNEL["theta_beta"], KERNEL["theta_gamma"]
    colours = (img * scale).tolist()
    mats = []
    for im in colours:
        kb = torch.zeros(n, n, dtype=torch.float64)
        ks = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            ri, ci = divmod(i, w)
            for j in range(n):
                if i == j:
                    continue
                rj, cj = divmod(j, w)
                dp = (ri - rj) ** 2 + (ci - cj) ** 2
                di = sum((ch[ri][ci] - ch[rj][cj]) ** 2 for ch in im)
                kb[i, j] = math.exp(-dp / (2 * ta ** 2) - di / (2 * tb ** 2))
                ks[i, j] = math.exp(-dp / (2 * tg ** 2))
        mats.append((kb, ks))
    return mats


def _brute_force_message(mats, q: torch.Tensor, normalization: str) -> torch.Tensor:
    """sum_k w_k N_k(K_k) q with the explicit matrices."""
    b, c, h, w = q.shape
    out = torch.zeros(b, c, h * w, dtype=torch.float64)
    for bi, (kb, ks) in enumerate(mats):
        for k, wt in ((kb, KERNEL["w_bilateral"]), (ks, KERNEL["w_spatial"])):
            d = k.sum(1)
            if normalization == "symmetric":
                k = k / torch.sqrt(d[:, None] * d[None, :])
            elif normalization == "row":
                k = k / d[:, None]
            out[bi] += wt * q[bi].reshape(c, h * w) @ k.T
    return out.reshape(b, c, h, w)


def _f64(module: torch.nn.Module) -> torch.nn.Module:
    """The module in float64 with its log-parameters set in float64 (they are stored rounded to float32)."""
    module = module.double()
    k = module.kernels if hasattr(module, "kernels") else module
    t = [KERNEL["theta_alpha"], KERNEL["theta_beta"], KERNEL["theta_gamma"]]
    with torch.no_grad():
        k.log_theta.copy_(torch.log(torch.tensor(t, dtype=torch.float64)))
        k.log_weight.copy_(torch.log(torch.tensor([KERNEL["w_bilateral"], KERNEL["w_spatial"]], dtype=torch.float64)))
    return module


@pytest.fixture(scope="module")
def tiny_pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64) * 2 - 1
    q = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64)
    return img, q


@pytest.fixture(scope="module")
def brute_kernels(tiny_pair):
    return _brute_force_kernels(tiny_pair[0])


# -- the filtering --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_exact_filtering_equals_brute_force_kernel_matrix(tiny_pair, brute_kernels, normalization):
    img, q = tiny_pair
    ref = _brute_force_message(brute_kernels, q, normalization)
    stored = _f64(GaussianKernels(**KERNEL, normalization=normalization, learnable=False)).build(img)(q)
    chunked = _f64(GaussianKernels(**KERNEL, normalization=normalization, chunk_elements=50,
                                   learnable=False)).build(img)(q)
    torch.testing.assert_close(stored, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chunked, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_window_covering_the_image_equals_exact(tiny_pair, normalization):
    img, q = tiny_pair
    exact = GaussianKernels(**KERNEL, normalization=normalization).build(img)(q)
    window = GaussianKernels(**KERNEL, normalization=normalization, window=9).build(img)(q)   # 9 >= 2*5-1
    torch.testing.assert_close(window, exact, rtol=1e-10, atol=1e-10)
    # a window smaller than the image is an approximation, not the same operator
    small = GaussianKernels(**KERNEL, normalization=normalization, window=3).build(img)(q)
    assert (small - exact).abs().max() > 1e-3


def test_window_dilation_samples_every_dth_pixel():
    # a 1-pixel impulse two columns away is seen with dilation 2, missed with dilation 1 and window 3
    img = torch.zeros(1, 3, 5, 5, dtype=torch.float64)
    v = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    v[0, 0, 2, 4] = 1.0
    opts = dict(KERNEL, w_bilateral=0.0, normalization="none", window=3, learnable=False)
    assert float(GaussianKernels(**opts).build(img)(v)[0, 0, 2, 2]) == 0.0
    seen = float(GaussianKernels(**opts, dilation=2).build(img)(v)[0, 0, 2, 2])
    # float32-stored bandwidth: 1e-6 relative
    assert seen == pytest.approx(KERNEL["w_spatial"] * math.exp(-4 / (2 * KERNEL["theta_gamma"] ** 2)), rel=1e-6)


def test_window_filter_gradients_match_finite_differences():
    # the window filter has a hand-written backward; the guide image reaches it through the weights
    g = torch.Generator().manual_seed(5)
    img = (torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64) * 0.2).requires_grad_(True)
    q = torch.rand(2, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    kernels = _f64(GaussianKernels(**KERNEL, window=3, dilation=2))
    assert torch.autograd.gradcheck(lambda i, v: kernels.build(i)(v), (img, q), fast_mode=True)


def test_chunked_and_stored_exact_give_the_same_gradients(tiny_pair):
    img, q = tiny_pair
    grads = []
    for ce in (2 ** 26, 50):
        crf = DenseCRF(3, **KERNEL, chunk_elements=ce).double()
        logits = (q * 4).requires_grad_(True)
        crf.log_marginals(logits, img)[:, 0].sum().backward()
        grads.append((logits.grad, crf.kernels.log_theta.grad, crf.compat.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# -- the discrete CRF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [None, 5])
def test_zero_pairwise_weight_returns_softmax_of_unaries(window):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 6, generator=g)
    img = torch.rand(2, 3, 6, 6, generator=g) * 2 - 1
    crf = DenseCRF(4, w_bilateral=0.0, w_spatial=0.0, window=window)
    torch.testing.assert_close(crf(logits, img), torch.softmax(logits, 1), rtol=1e-6, atol=1e-7)


def test_potts_crf_removes_an_isolated_noisy_pixel():
    # 7x7 uniform grey image; class 0 wins by 1 everywhere except the centre, where class 2 wins by 1
    logits = torch.zeros(1, 3, 7, 7)
    logits[:, 0] = 1.0
    logits[0, 2, 3, 3] = 2.0
    img = torch.zeros(1, 3, 7, 7)
    assert logits.argmax(1)[0, 3, 3] == 2
    out = DenseCRF(3)(logits, img).argmax(1)
    assert (out == 0).all()


def _two_region_case() -> tuple[torch.Tensor, torch.Tensor]:
    # 8x8: columns 0-5 confidently class 0, columns 6-7 weakly class 1
    logits = torch.zeros(1, 2, 8, 8)
    logits[0, 0, :, :6] = 3.0
    logits[0, 1, :, 6:] = 0.5
    edge = torch.full((1, 3, 8, 8), -1.0)
    edge[..., 6:] = 1.0
    return logits, edge


def test_bilateral_kernel_respects_an_edge_in_the_appearance_image():
    logits, edge = _two_region_case()
    crf = DenseCRF(2, w_spatial=0.0)           # bilateral kernel only (theta_alpha 80: the whole image)
    with_edge = crf(logits, edge).argmax(1)[0]
    assert (with_edge[:, :6] == 0).all() and (with_edge[:, 6:] == 1).all()
    # control: without the edge the confident region's label floods the weak one
    flat = crf(logits, torch.zeros_like(edge)).argmax(1)[0]
    assert (flat == 0).all()


# -- the continuous CRF ----------------------------------------------------------------------------------------

def test_gaussian_crf_reduces_the_variance_of_noise():
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(1, 1, 16, 16, generator=g) * 0.1
    u = 0.3 + noise
    y = GaussianCRF()(u, torch.zeros(1, 3, 16, 16)).detach()
    assert float((y - 0.3).std()) < 0.5 * float(noise.std())
    assert float(y.mean()) == pytest.approx(float(u.mean()), abs=0.01)
    assert float(y.min()) >= float(u.min()) and float(y.max()) <= float(u.max())   # convex combinations


def test_gaussian_crf_preserves_a_step_edge_given_by_the_guide():
    g = torch.Generator().manual_seed(3)
    u = torch.full((1, 1, 16, 16), 0.6)
    u[..., 8:] = -0.4
    u = u + torch.randn(1, 1, 16, 16, generator=g) * 0.05
    edge = torch.full((1, 3, 16, 16), -1.0)
    edge[..., 8:] = 1.0
    crf = GaussianCRF(w_spatial=0.0)

    def step(y: torch.Tensor) -> float:
        return float(y[..., 7].mean() - y[..., 8].mean())

    guided = crf(u, edge).detach()
    assert step(guided) == pytest.approx(1.0, abs=0.05)
    assert float(guided[..., :8].std()) < float(u[..., :8].std())          # still smooths within regions
    assert step(crf(u, torch.zeros_like(edge)).detach()) < 0.8                       # control: no edge, blurred step


# -- the adapter -------------------------------------------------------------------------------------------------

INFO = DatasetInfo(name="tiny", tasks=("photo2labels", "photo2depth", "labels2photo"), num_classes=3,
                   palette=((0, 0, 0), (255, 0, 0), (0, 255, 0)), max_depth=10.0)
SIZE = 32


def _task(kind: str):
    if kind == "labels":
        return TASKS.get("photo2labels").bind(INFO, label_output="logits")
    return TASKS.get("photo2depth").bind(INFO)


def _batch(n: int = 2) -> dict[str, torch.Tensor]:
    """Photos of three coloured regions; label = region, depth = region-wise, some invalid and ignored pixels."""
    g = torch.Generator().manual_seed(4)
    label = torch.zeros(n, SIZE, SIZE, dtype=torch.int64)
    for i in range(n):
        a, b = int(torch.randint(8, 24, (1,), generator=g)), int(torch.randint(8, 24, (1,), generator=g))
        label[i, :a, b:] = 1
        label[i, a:, :b] = 2
    colours = torch.tensor([[-0.8, -0.8, -0.8], [0.8, -0.5, -0.5], [-0.5, 0.8, -0.5]])
    photo = colours[label].permute(0, 3, 1, 2) + torch.randn(n, 3, SIZE, SIZE, generator=g) * 0.05
    depth = torch.tensor([2.0, 5.0, 8.0])[label][:, None]
    depth[:, :, :2] = 0.0                                       # invalid rows
    label[:, -1] = INFO.ignore_index                            # ignored row
    return {"photo": photo.clamp(-1, 1), "label": label, "depth": depth}


def _adapter(kind: str, mode: str, **opts):
    cls = METHODS.get("cnn-crf")
    torch.manual_seed(0)
    options = cls.Options(mode=mode, ngf=8, **opts)
    return build_method("cnn-crf", options, _task(kind), TrainContext(torch.device("cpu"), image_size=SIZE),
                        image_size=SIZE)


@pytest.mark.parametrize("kind", ["labels", "depth"])
@pytest.mark.parametrize("mode", ["postprocess", "joint"])
def test_adapter_trains_a_few_steps_and_generates(kind, mode):
    ad = _adapter(kind, mode)
    assert set(ad.slots) == {"G"} and set(ad.modules) == {"G", "CRF"}
    assert set(ad.optimizers) == ({"G", "CRF"} if mode == "joint" else {"G"})
    batch = _batch()
    for step in range(3):
        losses = ad.train_step(batch, step, True)
        assert losses and all(torch.isfinite(v) and v.dim() == 0 and not v.requires_grad for v in losses.values())
    out = ad.generate(batch)
    assert out.shape == (2, 3 if kind == "labels" else 1, SIZE, SIZE)
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    if kind == "labels":       # 2 Q - 1 with Q the CRF marginals
        torch.testing.assert_close(((out + 1) / 2).sum(1), torch.ones(2, SIZE, SIZE))
        assert _task(kind).decode_labels(out).shape == (2, SIZE, SIZE)


def test_postprocess_trains_the_cnn_alone_and_applies_the_crf_at_generation():
    ad = _adapter("labels", "postprocess")
    before = [p.detach().clone() for p in ad.crf.parameters()]
    ad.train_step(_batch(), 0, True)
    assert all(not p.requires_grad for p in ad.crf.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, ad.crf.parameters()))
    batch = _batch()
    ad.G.eval()
    with torch.no_grad():
        unary = ad.G(batch["photo"]) * ad.options.logit_scale
        expect = ad.crf(unary, batch["photo"]) * 2 - 1
    torch.testing.assert_close(ad.generate(batch), expect)


@pytest.mark.parametrize("kind", ["labels", "depth"])
def test_joint_training_sends_gradients_to_the_crf_parameters(kind):
    ad = _adapter(kind, "joint")
    before = [p.detach().clone() for p in ad.crf.parameters()]
    ad.train_step(_batch(), 0, True)
    for p in ad.crf.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, ad.crf.parameters()))


@pytest.mark.parametrize("kind", ["labels", "depth"])
def test_joint_training_lowers_the_loss_on_a_fixed_batch(kind):
    ad = _adapter(kind, "joint", dropout=0.0, lr=1e-3)
    batch = _batch()
    losses = [float(ad.train_step(batch, s, True)["loss_G"]) for s in range(20)]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_window_filter_is_used_above_the_exact_limit():
    ad = _adapter("labels", "joint", exact_max_pixels=16 * 16, window=5, dilation=1)
    assert ad.crf.kernels.window == 5
    assert _adapter("labels", "joint").crf.kernels.window is None          # 32x32 is under the default limit
    losses = ad.train_step(_batch(), 0, True)
    assert all(torch.isfinite(v) for v in losses.values())


def test_adapter_rejects_tasks_it_cannot_serve():
    cls = METHODS.get("cnn-crf")
    ctx = TrainContext(torch.device("cpu"), image_size=SIZE)
    with pytest.raises(ConfigError, match="label_output"):
        build_method("cnn-crf", cls.Options(ngf=8), TASKS.get("photo2labels").bind(INFO), ctx, image_size=SIZE)
    with pytest.raises(ConfigError, match="labels or depth"):
        build_method("cnn-crf", cls.Options(ngf=8), TASKS.get("labels2photo").bind(INFO), ctx, image_size=SIZE)
    with pytest.raises(ConfigError, match="mode"):
        cls.Options(mode="both", ngf=8)


def test_crf_rejects_bad_options():
    with pytest.raises(ConfigError, match="odd"):
        DenseCRF(3, window=4)
    with pytest.raises(ConfigError, match="normalization"):
        GaussianCRF(normalization="l2")
    with pytest.raises(ConfigError, match="positive"):
        GaussianKernels(theta_beta=0.0)
