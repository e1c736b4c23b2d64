"""A history of generated images that D is shown instead of the newest ones (CycleGAN's image pool).

Shrivastava et al. (2017) update D on a buffer of past fakes so that G cannot oscillate between modes that
the newest D forgot; CycleGAN (Zhu et al. 2017) keeps 50. Not registered: an adapter constructs one per
discriminator and saves its ``state_dict`` in ``extra_state``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from bench.contracts import HistoryBuffer


class ImageHistory(HistoryBuffer):
    """CycleGAN's ``ImagePool`` semantics, per image of the batch, with its own seeded generator:

    - ``size == 0``: ``query`` returns its input;
    - while fewer than ``size`` images are stored: store the new image and return it;
    - once full: with probability 1/2 return a uniformly drawn stored image and store the new one in its
      place, else return the new image.

    Images are stored and returned detached. The draws come from a CPU ``torch.Generator`` seeded with
    ``seed``, so the same seed and the same queries give the same outputs, and ``state_dict`` (stored
    images and generator state) makes a resumed run continue exactly.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"an image history holds size >= 0 images, got {size}; use 0 to turn it off")
        self.size = int(size)
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """A batch like ``images`` where each image is either itself or one from the history."""
        if self.size == 0:
            return images
        self._follow(images.device)
        return torch.stack([self._one(img) for img in images.detach()])

    def _one(self, img: torch.Tensor) -> torch.Tensor:
        if len(self.images) < self.size:
            self.images.append(img.clone())
            return img
        if float(torch.rand((), generator=self.generator)) >= 0.5:
            return img
        j = int(torch.randint(0, self.size, (), generator=self.generator))
        old, self.images[j] = self.images[j], img.clone()
        return old.to(img.dtype)

    def _follow(self, device: torch.device) -> None:
        """Move the stored images to where the queries are (after a load, they sit on the CPU)."""
        if self.images and self.images[0].device != device:
            self.images = [t.to(device) for t in self.images]

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [t.cpu() for t in self.images],
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        size, images = int(state["size"]), list(state["images"])
        if size != self.size or len(images) > size:
            raise ValueError(f"this image history holds {self.size} images but the saved one held {size} "
                             f"({len(images)} stored); build it with size={size} to resume")
        self.images = [t.clone() for t in images]
        self.generator.set_state(state["generator"])
