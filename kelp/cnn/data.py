"""Training batches: normalised tiles, joint image/mask augmentation, a kelp-aware sampler.

Randomness is a pure function of ``(seed, epoch, tile index)`` for augmentation and of
``(seed, epoch)`` for the sampler, so the batches do not depend on the number of loader
workers and a resumed run sees exactly the batches an uninterrupted one would. The sampler
hands the epoch to the dataset inside each index, so one loader with persistent workers
serves a whole fold.

Tiles of different sizes can share a batch: :func:`collate` pads them to the largest with
0 in the image and :data:`IGNORE` in the mask, which every loss skips.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from kelp.cnn.channels import ChannelSource
from kelp.cnn.normalise import Normaliser
from kelp.data.catalog import TileRecord
from kelp.errors import InputError

__all__ = ["IGNORE", "EpochSampler", "TileDataset", "augment", "collate", "random_crop"]

#: Mask value of pixels that carry no label (batch padding); losses ignore it.
IGNORE = -1


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random element of the dihedral group (flips, 90-degree rotations).

    Rotations by 90 or 270 degrees are only drawn for square tiles, so a batch keeps its
    shapes.

    Args:
        image: ``(C, H, W)``.
        mask: ``(H, W)``.
        rng: the randomness.

    Returns:
        ``(image, mask)`` transformed alike (contiguous copies).
    """
    square = image.shape[-1] == image.shape[-2]
    k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    if rng.random() < 0.5:
        image, mask = image[..., ::-1], mask[..., ::-1]
    image = np.rot90(image, k, axes=(-2, -1))
    mask = np.rot90(mask, k, axes=(-2, -1))
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def random_crop(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` px window of a tile, kelp-weighted.

    For half the draws from a tile with kelp, the window is centred (as far as the tile
    allows) on a random kelp pixel; otherwise it lies anywhere. A side shorter than
    ``size`` is kept whole.

    Args:
        image: ``(C, H, W)``.
        mask: ``(H, W)`` 0/1.
        size: window side, px.
        rng: the randomness.

    Returns:
        ``(image, mask)`` windows (views).
    """
    h, w = mask.shape
    ch, cw = min(size, h), min(size, w)
    kelp = np.flatnonzero(mask > 0)
    if kelp.size and rng.random() < 0.5:
        y, x = divmod(int(kelp[rng.integers(kelp.size)]), w)
        top = int(np.clip(y - ch // 2, 0, h - ch))
        left = int(np.clip(x - cw // 2, 0, w - cw))
    else:
        top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return image[:, top : top + ch, left : left + cw], mask[top : top + ch, left : left + cw]


class TileDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Normalised tiles with their masks as float tensors.

    An item is addressed by its index (no augmentation) or, in training, by an
    ``(epoch, index)`` pair from :class:`EpochSampler`: carrying the epoch in the index lets
    persistent loader workers (and their tile caches) live for a whole fold while each epoch
    still draws its own augmentation.

    Args:
        records: train tiles (with masks).
        source: builds a tile's raw channels.
        normaliser: the fold's normalisation.
        augment: apply :func:`augment` to items addressed by ``(epoch, index)``.
        seed: seeds the augmentation with the epoch and index.
        crop: cut a random ``crop`` px window (:func:`random_crop`) from items addressed by
            ``(epoch, index, draw)``; ``None`` = whole tiles.
    """

    def __init__(
        self,
        records: Sequence[TileRecord],
        source: ChannelSource,
        normaliser: Normaliser,
        augment: bool = False,
        seed: int = 0,
        crop: int | None = None,
    ) -> None:
        self.records = list(records)
        self.source = source
        self.normaliser = normaliser
        self.augment = augment
        self.seed = seed
        self.crop = crop

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(
        self, item: int | tuple[int, int] | tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (C, H, W) float32, mask (H, W) float32)`` of a tile.

        Args:
            item: the tile's index, or ``(epoch, index)`` to augment it with that epoch's
                draw, or ``(epoch, index, draw)`` to crop and augment it with the draw's
                own randomness (a tile drawn twice in an epoch gets two windows).

        Raises:
            InputError: the tile has no mask, or a NaN/inf would reach the network.
        """
        epoch, i, *draw = item if isinstance(item, tuple) else (None, item)
        record = self.records[i]
        raw, mask = self.source(record)
        if mask is None:
            raise InputError(f"tile {record.tile_id} has no kelp mask: it cannot train")
        image = self.normaliser(raw, f"tile {record.tile_id}")
        if epoch is not None and (self.augment or (self.crop and draw)):
            rng = np.random.default_rng([self.seed, epoch, i, *draw])
            if self.crop and draw:
                image, mask = random_crop(image, mask, self.crop, rng)
            if self.augment:
                image, mask = augment(image, mask, rng)
        return torch.from_numpy(image), torch.from_numpy(mask.astype(np.float32))


def collate(
    items: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into ``(N, C, H, W)`` images and ``(N, H, W)`` masks.

    Samples smaller than the batch's largest are padded at the bottom/right: images with 0,
    masks with :data:`IGNORE`.

    Args:
        items: ``(image, mask)`` pairs.

    Returns:
        ``(images, masks)``.
    """
    h = max(int(img.shape[-2]) for img, _ in items)
    w = max(int(img.shape[-1]) for img, _ in items)
    images = torch.zeros((len(items), items[0][0].shape[0], h, w), dtype=torch.float32)
    masks = torch.full((len(items), h, w), float(IGNORE), dtype=torch.float32)
    for n, (img, mask) in enumerate(items):
        images[n, :, : img.shape[-2], : img.shape[-1]] = img
        masks[n, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks


class EpochSampler(Sampler[tuple[int, int] | tuple[int, int, int]]):
    """The training tiles of each epoch, as ``(epoch, index)`` pairs.

    Args:
        has_kelp: per training tile, whether its mask has kelp.
        weighted: draw with replacement, a kelp tile ``kelp_weight`` times as likely;
            otherwise a plain shuffle. With no kelp tile at all, weighting is moot and the
            tiles are shuffled.
        kelp_weight: relative weight of a tile with kelp.
        seed: seeds the order with the epoch.
        draws: items per epoch, ``(epoch, index, draw)`` triples (shuffles are repeated to
            fill them when not weighted); ``None`` = one ``(epoch, index)`` pair per tile.
    """

    def __init__(
        self,
        has_kelp: Sequence[bool],
        weighted: bool,
        kelp_weight: float,
        seed: int,
        draws: int | None = None,
    ) -> None:
        self.has_kelp = list(has_kelp)
        self.weighted = weighted and any(self.has_kelp)
        self.kelp_weight = kelp_weight
        self.seed = seed
        self.draws = draws
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """Draw the order of ``epoch`` on the next iteration."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.has_kelp) if self.draws is None else self.draws

    def __iter__(self) -> Iterator[tuple[int, int] | tuple[int, int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.has_kelp)
        wanted = len(self)
        if self.weighted:
            weights = torch.tensor(
                [self.kelp_weight if k else 1.0 for k in self.has_kelp], dtype=torch.double
            )
            order = torch.multinomial(weights, wanted, replacement=True, generator=generator)
        else:
            passes = [torch.randperm(n, generator=generator) for _ in range(-(-wanted // n))]
            order = torch.cat(passes)[:wanted]
        if self.draws is None:
            return iter([(self.epoch, int(i)) for i in order])
        return iter([(self.epoch, int(i), d) for d, i in enumerate(order.tolist())])
