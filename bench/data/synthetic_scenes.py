"""Procedurally generated outdoor scenes: photo, semantic labels and metric depth, no download.

A level pinhole camera (focal length ``FOCAL`` image sides, principal point at the centre, horizon
row and camera height drawn per scene) sees a ground plane, sky, one to three facades far away and
two to six boxes, balls, poles and trees nearer by. An object at distance ``z`` stands on the ground
row ``horizon + FOCAL * cam_height / z`` and its image size scales with ``1 / z``; objects are drawn
far to near with a depth test, so each pixel shows the nearest surface. Depth (metres along the
optical axis): ground ``FOCAL * cam_height / (row - horizon)`` clipped at ``MAX_DEPTH`` (the far
plane), objects their distance (balls a spherical cap), sky 0 (invalid). The photo gives each class
a colour and a texture in surface metres (perspective checker, windows, planks, stripes, bands,
leafy noise), Lambert shading on balls, fog and darkening with depth, then pixel noise.

Each sample has its own ``torch.Generator`` seeded by (seed, split, index), and the geometry is drawn
before anything size dependent: any subset, order or image size gives the same scene.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.data.base import DatasetInfo, PairedDataset
from bench.errors import ConfigError

log = logging.getLogger(__name__)

SKY, GROUND, BUILDING, BOX, BALL, POLE, TREE = range(7)
CLASS_NAMES = ("sky", "ground", "building", "box", "ball", "pole", "tree")
PALETTE = ((70, 130, 180), (128, 64, 128), (70, 70, 70), (250, 170, 30),
           (220, 20, 60), (153, 153, 153), (107, 142, 35))
MAX_DEPTH = 10.0
FOCAL = 1.0                      # focal length in units of the image side
NOISE_GRID = 24                  # side of the low-resolution value-noise field (size independent)
DEFAULT_LENGTHS = {"train": 2000, "test": 200}
MAX_OBJECTS = 9                  # 3 facades + 6 objects

INFO = DatasetInfo(
    name="synthetic-scenes", tasks=("labels2photo", "photo2labels", "photo2depth"),
    num_classes=len(CLASS_NAMES), ignore_index=255, class_names=CLASS_NAMES, palette=PALETTE,
    max_depth=MAX_DEPTH, min_depth=1e-3,
    description=("Procedural outdoor scenes (sky, ground, building, box, ball, pole, tree) seen by a "
                 "pinhole camera over a ground plane, with occlusion; photo, labels and metric depth "
                 "(0-10 m, sky invalid) at any size. Default 2000 train / 200 test samples."),
    source="generated on the fly by bench.data.synthetic_scenes (no download; free to use)",
    provides=("photo", "label", "label_rgb", "depth", "index")
)

# Base colours (RGB in [0, 1]) a class draws from; each object jitters its choice.
_COLOURS = {
    GROUND: ((0.45, 0.45, 0.47), (0.42, 0.50, 0.30), (0.58, 0.50, 0.38)),
    BUILDING: ((0.78, 0.70, 0.56), (0.62, 0.32, 0.26), (0.60, 0.62, 0.66)),
    BOX: ((0.66, 0.50, 0.30), (0.50, 0.36, 0.22)),
    BALL: ((0.85, 0.15, 0.12), (0.95, 0.80, 0.15), (0.15, 0.35, 0.85)),
    POLE: ((0.30, 0.30, 0.32), (0.80, 0.80, 0.78)),
    TREE: ((0.20, 0.45, 0.15), (0.30, 0.55, 0.20)),
}
_SECOND = {  # second texture colour: window glass, plank seam, stripe, band, trunk, ground tile
    GROUND: (0.30, 0.30, 0.30), BUILDING: (0.20, 0.26, 0.35), BOX: (0.30, 0.20, 0.10),
    BALL: (0.95, 0.95, 0.95), POLE: (0.85, 0.15, 0.10), TREE: (0.36, 0.24, 0.14),
}


@dataclass(frozen=True)
class SceneObject:
    """One object standing on the ground. Lengths in metres; ``x`` lateral, ``z`` distance."""

    cls: int
    x: float
    z: float
    width: float                  # ball: diameter; tree: trunk width
    height: float                 # ball: diameter; tree: trunk height
    crown: float = 0.0            # tree: crown radius
    colour: tuple[float, float, float] = (0.5, 0.5, 0.5)
    colour2: tuple[float, float, float] = (0.3, 0.3, 0.3)
    period: float = 0.5           # texture period in metres


@dataclass(frozen=True)
class Scene:
    """Everything about one sample that does not depend on the image size."""

    horizon: float                # horizon row, in units of the image side from the top
    cam_height: float             # metres above the ground
    objects: tuple[SceneObject, ...]
    sky: tuple[float, float, float] = (0.45, 0.65, 0.90)
    fog_colour: tuple[float, float, float] = (0.80, 0.84, 0.88)
    fog_distance: float = 20.0    # metres at which fog reaches one half
    ground: SceneObject | None = None   # colours and tile size of the ground
    noise: torch.Tensor | None = None   # (3, NOISE_GRID, NOISE_GRID) in [0, 1]
    pixel_noise: float = 0.02


def _pick(options: tuple, u: float, jitter: list[float], amount: float = 0.06) -> tuple[float, float, float]:
    base = options[min(int(u * len(options)), len(options) - 1)]
    return tuple(min(1.0, max(0.0, c + amount * (2 * j - 1))) for c, j in zip(base, jitter))  # type: ignore


def _shape(cls: int, r: list[float]) -> tuple[float, float, float, float]:
    """(width, height, crown radius, texture period) in metres from three uniforms."""
    if cls == BUILDING:
        return 2.5 + 3.5 * r[0], 2.5 + 4.5 * r[1], 0.0, 1.2 + 0.8 * r[2]
    if cls == BOX:
        return 0.6 + 0.9 * r[0], 0.5 + 0.7 * r[1], 0.0, 0.12 + 0.15 * r[2]
    if cls == BALL:
        d = 0.4 + 0.6 * r[0]
        return d, d, 0.0, (0.2 + 0.15 * r[2]) * d
    if cls == POLE:
        return 0.15 + 0.15 * r[0], 2.5 + 1.5 * r[1], 0.0, 0.3 + 0.3 * r[2]
    return 0.2 + 0.15 * r[0], 1.0 + 1.0 * r[1], 0.7 + 0.7 * r[2], 1.0          # tree


def sample_scene(gen: torch.Generator) -> Scene:
    """Draw one scene's geometry and colours (a fixed number of draws, whatever the image size)."""
    g = torch.rand(18, generator=gen).tolist()
    rows = torch.rand(MAX_OBJECTS, 13, generator=gen).tolist()
    noise = torch.rand(3, NOISE_GRID, NOISE_GRID, generator=gen)
    horizon, cam_h = 0.38 + 0.17 * g[0], 1.0 + 0.6 * g[1]
    n_build, n_obj = 1 + int(g[2] * 3), 2 + int(g[3] * 5)
    objs = []
    for k, r in enumerate(rows[:3][:n_build] + rows[3:][:n_obj]):
        building = k < n_build
        cls = BUILDING if building else (BOX, BALL, POLE, TREE)[min(int(r[0] * 4), 3)]
        z = 6.5 + 3.3 * r[1] if building else 2.2 + 6.8 * r[1]
        column = (-0.1 + 1.2 * r[2]) if building else (0.05 + 0.9 * r[2])   # image column of the centre
        w, h, crown, period = _shape(cls, r[3:6])
        objs.append(SceneObject(cls, (column - 0.5) * z / FOCAL, z, w, h, crown,
                                _pick(_COLOURS[cls], r[6], r[7:10]),
                                _pick((_SECOND[cls],), 0.0, r[10:13], 0.05), period))
    objs.sort(key=lambda o: -o.z)                                       # far to near
    ground = SceneObject(GROUND, 0.0, 0.0, 0.0, 0.0, 0.0, _pick(_COLOURS[GROUND], g[4], g[5:8]),
                         _pick((_SECOND[GROUND],), 0.0, g[8:11], 0.08), 1.0 + 1.5 * g[11])
    sky = _pick(((0.45, 0.65, 0.90), (0.60, 0.70, 0.80)), g[12], g[13:16], 0.05)
    return Scene(horizon, cam_h, tuple(objs), sky=sky, fog_distance=18.0 + 24.0 * g[16],
                 ground=ground, noise=noise, pixel_noise=0.01 + 0.02 * g[17])


def _texture(o: SceneObject) -> tuple[float, ...]:
    """Two stripe families in surface metres, combined: (period, offset, duty) along u, the same along
    v, then the weights of (u AND v, u OR v, u XOR v) and of value noise in the colour mix."""
    p = max(o.period, 1e-3)
    if o.cls == GROUND:
        return p, 0, .5, p, 0, .5, 0, 0, .5, .3              # perspective checker
    if o.cls == BUILDING:
        return p, -.25, .5, 1.6 * p, -.3, .5, 1, 0, 0, 0     # window grid
    if o.cls == BOX:
        return p, 0, .08, p, 0, .12, 0, 1, 0, 0              # plank seams
    if o.cls == BALL:
        return p, 0, .5, 1, 0, 0, 0, 1, 0, 0                 # vertical stripes
    if o.cls == POLE:
        return 1, 0, 0, 2 * p, 0, .5, 0, 1, 0, 0             # bands
    if o.cls == TREE:                                         # trunk: |u| < w/2 and v < trunk height
        return 1e3, o.width / 2e3, o.width / 1e3, 1e3, 0, o.height / 1e3, 1, 0, 0, 0
    return 1, 0, 0, 1, 0, 0, 0, 0, 0, 0                       # sky: clouds are added below


def render(scene: Scene, size: int, gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Rasterise ``scene`` at ``size`` x ``size``: label (H, W) int64, depth (1, H, W), photo (3, H, W).

    ``gen`` draws the pixel noise (none when ``gen`` is None).
    """
    s = size
    c = (torch.arange(s, dtype=torch.float32) + 0.5) / s               # pixel centres
    ys, xs = c[:, None], c[None, :]
    dy = ys - scene.horizon
    zg = (FOCAL * scene.cam_height / dy.clamp_min(1e-6)).clamp_max(MAX_DEPTH)
    is_ground = dy > 0
    oid = is_ground.long().expand(s, s).clone()                         # surface: 0 sky, 1 ground, 2+ objects
    depth = torch.where(is_ground, zg, math.inf).expand(s, s).clone()
    shade = torch.ones(s, s)
    for j, o in enumerate(scene.objects):
        _paint(o, j + 2, scene, c, (depth, oid, shade))
    label = torch.tensor([SKY, GROUND] + [o.cls for o in scene.objects])[oid]

    # Per-surface parameters gathered per pixel: centre column, base row, scale, two colours, texture.
    ground = scene.ground or SceneObject(GROUND, 0, 0, 0, 0)
    sky_surface = SceneObject(SKY, 0, 1, 0, 0, 0, scene.sky, (0.97, 0.97, 0.98))
    rows = [[0.5, scene.horizon, 1.0, *o.colour, *o.colour2, *_texture(o)] for o in (sky_surface, ground)]
    for o in scene.objects:
        sc = FOCAL / o.z
        rows.append([0.5 + o.x * sc, scene.horizon + scene.cam_height * sc, sc, *o.colour, *o.colour2,
                     *_texture(o)])
    p = torch.tensor(rows)[oid].permute(2, 0, 1)                         # (19, H, W)
    sky, grd = label == SKY, label == GROUND
    u = torch.where(grd, (xs - 0.5) * zg / FOCAL, (xs - p[0]) / p[2])    # surface coordinates (metres)
    v = torch.where(grd, zg, (p[1] - ys) / p[2])
    noise = scene.noise if scene.noise is not None else torch.full((3, 4, 4), 0.5)
    nz = F.interpolate(noise[None], size=(s, s), mode="bilinear", align_corners=False)[0]

    bu, bv = _fract(u / p[9] + p[10]) < p[11], _fract(v / p[12] + p[13]) < p[14]
    m = p[15] * (bu & bv) + p[16] * (bu | bv) + p[17] * (bu ^ bv) + p[18] * nz[1]
    m = torch.where(sky, ((nz[0] - 0.55) * 4).clamp(0, 1), m)          # clouds
    base = p[3:6] * (1 - m) + p[6:9] * m
    shade = shade * torch.where(label == TREE, 0.6 + 0.8 * nz[2], 0.88 + 0.24 * nz[2])
    lit = base * (shade * (1 - 0.25 * depth.clamp_max(MAX_DEPTH) / MAX_DEPTH))
    haze = 0.9 / (1 + 6 * (scene.horizon - ys).clamp_min(0)) ** 2              # sky pales to the horizon
    fog = torch.where(sky, haze, depth / (depth + scene.fog_distance))
    photo = lit * (1 - fog) + torch.tensor(scene.fog_colour)[:, None, None] * fog
    if gen is not None and scene.pixel_noise > 0:
        photo = photo + scene.pixel_noise * torch.randn(3, s, s, generator=gen)
    depth = depth.masked_fill(sky, 0.0)
    return {"label": label, "depth": depth[None], "photo": photo.clamp(0, 1) * 2 - 1}


def _sqrt(t: torch.Tensor) -> torch.Tensor:
    """sqrt(max(t, 0)) through rsqrt: MKL's threaded sqrt/exp cost milliseconds a call on a busy CPU."""
    t = t.clamp_min(0)
    return t * torch.rsqrt(t.clamp_min(1e-12))


def _fract(t: torch.Tensor) -> torch.Tensor:
    """Fractional part in [0, 1), also for negative values."""
    return t - torch.floor(t)


def _span(lo: float, hi: float, s: int, closed: bool = False) -> tuple[int, int]:
    """Pixel range whose centres ``(i + 0.5) / s`` lie in (lo, hi), or (lo, hi] when ``closed``."""
    end = math.floor(hi * s - 0.5) + 1 if closed else math.ceil(hi * s - 0.5)
    return max(0, math.floor(lo * s - 0.5) + 1), min(s, end)


def _paint(o: SceneObject, k: int, scene: Scene, c: torch.Tensor, maps: tuple[torch.Tensor, ...]) -> None:
    """Depth-test ``o`` into (depth, surface id, shade), in place: a rectangle (box, pole,
    facade, trunk) and/or a disc (ball, crown), each within its bounding box only."""
    s = len(c)
    sc = FOCAL / o.z                                     # metres -> image units at this distance
    xc, base = 0.5 + o.x * sc, scene.horizon + scene.cam_height * sc
    if o.cls != BALL:
        w = o.width / 2 * sc
        _fill(maps, k, _span(base - o.height * sc, base, s, True), _span(xc - w, xc + w, s),
              o.z, 0.92 if o.cls == BOX else 1.0)
    if o.cls in (BALL, TREE):
        rad = (o.height / 2 if o.cls == BALL else o.crown) * sc
        cy = base - rad if o.cls == BALL else base - (o.height + 0.7 * o.crown) * sc
        (r0, r1), (c0, c1) = rows, cols = _span(cy - rad, cy + rad, s), _span(xc - rad, xc + rad, s)
        if r0 >= r1 or c0 >= c1:
            return
        dx, dy = (c[None, c0:c1] - xc) / rad, (c[r0:r1, None] - cy) / rad   # unit disc, y down
        r2 = dx * dx + dy * dy
        if o.cls == TREE:
            _fill(maps, k, rows, cols, o.z, 1.0, r2 < 1)
            return
        nz = _sqrt(1 - r2)                               # sphere normal towards the camera
        lambert = (-0.4 * dx - 0.6 * dy + 0.7 * nz).clamp_min(0)           # light from upper left
        _fill(maps, k, rows, cols, o.z - o.height / 2 * nz, 0.35 + 0.65 * lambert, r2 < 1)


def _fill(maps: tuple[torch.Tensor, ...], k: int, rows: tuple[int, int], cols: tuple[int, int],
          d: torch.Tensor | float, shade: torch.Tensor | float, mask: torch.Tensor | None = None) -> None:
    (r0, r1), (c0, c1) = rows, cols
    if r0 >= r1 or c0 >= c1:
        return
    depth, oid, sh = (m[r0:r1, c0:c1] for m in maps)
    vis = depth > d                                      # nearer than what the pixel shows now
    if mask is not None:
        vis &= mask
    oid.masked_fill_(vis, k)
    for dst, src in ((depth, d), (sh, shade)):
        if isinstance(src, torch.Tensor):
            dst.copy_(torch.where(vis, src, dst))
        else:
            dst.masked_fill_(vis, src)


def sample_seed(seed: int, split: str, index: int) -> int:
    """A stable 63-bit seed for one sample; distinct splits give disjoint streams."""
    h = hashlib.blake2b(f"synthetic-scenes/{seed}/{split}/{index}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


class SyntheticScenes(PairedDataset):
    """``len`` procedural scenes of one split at one size; generated samples are cached in memory."""

    info = INFO

    def __init__(self, split: str, size: int, *, seed: int = 0, num_samples: int | None = None,
                 subset: int | None = None, cache_mb: float = 512.0):
        if split not in DEFAULT_LENGTHS:
            raise ConfigError(f"synthetic-scenes has splits 'train' and 'test', not '{split}'")
        if not isinstance(size, numbers.Integral) or size < 8:
            raise ConfigError(f"synthetic-scenes needs an integer size >= 8, not {size!r}")
        n = DEFAULT_LENGTHS[split] if num_samples is None else int(num_samples)
        if n < 1 or (subset is not None and subset < 1):
            raise ConfigError("synthetic-scenes: num_samples and subset must be positive integers")
        self.split, self.size, self.seed = split, int(size), seed
        self.length = n if subset is None else min(n, subset)
        bytes_per = size * size * (3 * 4 + 4 + 1)          # photo + depth (float32), label (uint8)
        self._cache_cap = int(cache_mb * 2**20 // bytes_per)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._palette = INFO.palette_tensor()
        self._warned = False

    def __len__(self) -> int:
        return self.length

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"sample {i} out of range for {self.length} samples")
        return i

    def scene(self, i: int) -> Scene:
        """The size-independent scene of sample ``i``."""
        return sample_scene(torch.Generator().manual_seed(sample_seed(self.seed, self.split, self._index(i))))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = self._index(i)
        if i in self._cache:
            photo, label8, depth = self._cache[i]
        else:
            gen = torch.Generator().manual_seed(sample_seed(self.seed, self.split, i))
            out = render(sample_scene(gen), self.size, gen)
            photo, label8, depth = out["photo"], out["label"].to(torch.uint8), out["depth"]
            if len(self._cache) < self._cache_cap:
                self._cache[i] = (photo, label8, depth)
            elif self._cache_cap and len(self._cache) == self._cache_cap and not self._warned:
                self._warned = True
                log.info("synthetic-scenes: cache full at %d samples (cache_mb); the rest are "
                         "generated on every access", self._cache_cap)
        label = label8.long()
        return {"photo": photo.clone(), "label": label,
                "label_rgb": self._palette[label].permute(2, 0, 1).contiguous(),
                "depth": depth.clone(), "index": torch.tensor(i, dtype=torch.int64)}


def make_dataset(split: str, size: int, *, root: Path | None = None, subset: int | None = None,
                 seed: int = 0, num_samples: int | None = None, **options) -> SyntheticScenes:
    """Factory registered as ``synthetic-scenes``. ``root`` is unused (nothing to download).

    Options: ``num_samples`` (split length, default 2000 train / 200 test), ``cache_mb`` (memory
    budget for cached samples, default 512).
    """
    unknown = set(options) - {"cache_mb"}
    if unknown:
        raise ConfigError(f"synthetic-scenes: unknown option(s) {', '.join(sorted(unknown))}; "
                          "accepted: num_samples, cache_mb")
    return SyntheticScenes(split, size, seed=seed, num_samples=num_samples, subset=subset,
                           cache_mb=float(options.get("cache_mb", 512.0)))
