"""The U-Net factory: an smp model behind a wrapper that accepts any tile size.

:func:`create_model` builds a segmentation-models-pytorch ``Unet`` (or ``UnetPlusPlus``) with
one output logit from a :class:`ModelSpec`, the part of the config that a checkpoint needs to
rebuild the network. The wrapper pads each input to a multiple of the encoder's stride
(edge-replicated, centred) and crops the logits back, so 350x350 tiles, 48x48 test tiles
and non-square tiles all work.

ImageNet weights come from the Hugging Face hub. Offline, smp would retry for ~24 s and then
raise an opaque error; here a missing cache entry is detected first (no network needed) and
the hub's host is probed with a 3 s timeout, so the failure is fast and says how to proceed.
"""

import difflib
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from kelp.cnn.config import Arch, CnnConfig
from kelp.errors import ConfigError, WeightsUnavailableError, unknown_name

__all__ = [
    "SUGGESTED_ENCODERS",
    "ModelSpec",
    "PaddedModel",
    "check_model",
    "create_model",
    "pad_amounts",
]

#: Encoders worth trying on this task, light to heavy (all smp-native, all with imagenet).
SUGGESTED_ENCODERS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet-b0",
    "efficientnet-b3",
    "efficientnet-b5",
    "mobilenet_v2",
    "mit_b1",
    "tu-convnext_tiny",
)
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a network (stored in a checkpoint's ``config.json``).

    Attributes:
        arch: ``unet`` or ``unetplusplus``.
        encoder: smp encoder name.
        encoder_depth: encoder stages (3-5).
        decoder_channels: one width per decoder stage.
        in_channels: input channels.
        encoder_weights: ``none`` or ``imagenet``; only used when building a fresh model.
    """

    arch: Arch
    encoder: str
    encoder_depth: int
    decoder_channels: tuple[int, ...]
    in_channels: int
    encoder_weights: Literal["none", "imagenet"] = "none"

    @classmethod
    def from_config(cls, config: CnnConfig) -> "ModelSpec":
        """The model part of a training config."""
        return cls(
            arch=config.arch,
            encoder=config.encoder,
            encoder_depth=config.encoder_depth,
            decoder_channels=tuple(config.decoder_channels),
            in_channels=len(config.channels),
            encoder_weights=config.encoder_weights,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_json`."""
        return cls(**{**d, "decoder_channels": tuple(d["decoder_channels"])})

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return 2**self.encoder_depth


def pad_amounts(size: int, multiple: int) -> tuple[int, int]:
    """``(before, after)`` padding that brings ``size`` to a multiple of ``multiple``."""
    total = -size % multiple
    return total // 2, total - total // 2


class PaddedModel(nn.Module):
    """Pads ``(N, C, H, W)`` inputs to the encoder's multiple and crops the logits back.

    Args:
        net: a module mapping ``(N, C, H', W')`` to ``(N, 1, H', W')`` for padded sizes.
        multiple: the side multiple ``net`` needs.
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) float32`` -> ``(N, 1, H, W)`` logits."""
        h, w = x.shape[-2:]
        top, bottom = pad_amounts(h, self.multiple)
        left, right = pad_amounts(w, self.multiple)
        if top or bottom or left or right:
            # Replicate, not zeros: a zero border looks like a dark edge the net would learn.
            x = F.pad(x, (left, right, top, bottom), mode="replicate")
        out: torch.Tensor = self.net(x)
        return out[..., top : top + h, left : left + w]


def _check_encoder(name: str) -> None:
    """Refuse an encoder neither smp nor timm (as ``tu-<name>``) has.

    The names belong to the libraries (hundreds of them), so the message lists the suggested
    encoders plus the library names closest to ``name``, and says where the rest are.

    Raises:
        ConfigError: the "unknown encoder" message.
    """
    import segmentation_models_pytorch as smp

    if name.startswith("tu-"):
        import timm

        if timm.list_models(name[3:]):
            return
        close = difflib.get_close_matches(name[3:], timm.list_models(), n=3, cutoff=0.6)
        raise unknown_name(
            "encoder",
            name,
            [f"tu-{c}" for c in close],
            extra=f"{', or ' if close else ''}any timm model as 'tu-<name>' (timm.list_models())",
        )
    names = smp.encoders.get_encoder_names()
    if name in names:
        return
    close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)
    raise unknown_name(
        "encoder",
        name,
        [*SUGGESTED_ENCODERS, *(c for c in close if c not in SUGGESTED_ENCODERS)],
        extra=f", or any of the {len(names)} smp encoders (segmentation_models_pytorch."
        "encoders.get_encoder_names()) or timm models as 'tu-<name>'",
    )


def _weights_location(encoder: str) -> tuple[str, str | None, tuple[str, ...]] | None:
    """``(repo_id, revision, candidate files)`` of the encoder's imagenet weights."""
    if encoder.startswith("tu-"):
        import timm

        try:
            cfg = timm.models.get_pretrained_cfg(encoder[3:])
        except (RuntimeError, KeyError, ValueError):
            return None
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not repo:
            return None
        return repo, None, ("model.safetensors", "pytorch_model.bin")
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")
    if settings is None:
        return None
    return settings["repo_id"], settings.get("revision"), ("model.safetensors",)


def _hub_reachable() -> bool:
    """Whether a TCP connection to the hub's host opens within a few seconds."""
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return True  # a proxy may well reach the hub where a direct connection cannot
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)


def _weights_help(encoder: str, reason: str) -> str:
    from huggingface_hub import constants

    where = _weights_location(encoder)
    fetch = (
        f"`hf download {where[0]}" + (f" --revision {where[1]}" if where[1] else "") + "`"
        if where
        else "the encoder's weights"
    )
    unset = " and HF_HUB_OFFLINE unset" if "HF_HUB_OFFLINE" in reason else ""
    return (
        f"imagenet weights for encoder {encoder!r} are not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and {reason}. Either run once with internet access"
        f"{unset}, which caches them for later runs; or download them on a machine online "
        f"with {fetch} and copy its cache folder here (or point HF_HOME at it); or set "
        'encoder_weights = "none" to train from scratch.'
    )


def _ensure_weights_available(encoder: str) -> None:
    """Fail fast when the imagenet weights would need a download that cannot happen."""
    from huggingface_hub import try_to_load_from_cache

    where = _weights_location(encoder)
    if where is None:
        raise ConfigError(
            f"encoder {encoder!r} has no imagenet weights; choose one of "
            f"{', '.join(SUGGESTED_ENCODERS)} or set encoder_weights = 'none'"
        )
    repo, revision, files = where
    for filename in files:
        if isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
            return
    if _hub_offline():
        raise WeightsUnavailableError(_weights_help(encoder, "HF_HUB_OFFLINE is set"))
    if not _hub_reachable():
        raise WeightsUnavailableError(_weights_help(encoder, "the hub cannot be reached"))


def check_model(spec: ModelSpec) -> None:
    """Check, without building anything, that :func:`create_model` can build ``spec``.

    Args:
        spec: the model to check.

    Raises:
        ConfigError: an unknown encoder, or one without imagenet weights.
        WeightsUnavailableError: ``imagenet`` weights neither cached nor downloadable.
    """
    _check_encoder(spec.encoder)
    if spec.encoder_weights == "imagenet":
        _ensure_weights_available(spec.encoder)


def create_model(spec: ModelSpec) -> PaddedModel:
    """Build the network of ``spec`` (random or imagenet encoder, one output logit).

    Args:
        spec: architecture, encoder, widths and input channels.

    Returns:
        A :class:`PaddedModel` around the smp network, in training mode on the CPU.

    Raises:
        ConfigError: an unknown encoder (the message lists close and suggested names), or
            one without imagenet weights.
        WeightsUnavailableError: ``imagenet`` weights neither cached nor downloadable; the
            message says how to proceed. Raised in seconds, never after a long hang.
    """
    import segmentation_models_pytorch as smp

    check_model(spec)
    weights: str | bool | None = None
    if spec.encoder_weights == "imagenet":
        # timm-universal encoders take a flag; the tag lives in the encoder name
        weights = True if spec.encoder.startswith("tu-") else "imagenet"
    try:
        net = smp.create_model(
            spec.arch,
            encoder_name=spec.encoder,
            encoder_weights=weights,
            encoder_depth=spec.encoder_depth,
            decoder_channels=list(spec.decoder_channels),
            in_channels=spec.in_channels,
            classes=1,
        )
    except OSError as error:  # the hub failed after all (e.g. a proxy that does not reach it)
        raise WeightsUnavailableError(
            _weights_help(spec.encoder, f"downloading failed ({error})")
        ) from error
    return PaddedModel(net, spec.multiple)
