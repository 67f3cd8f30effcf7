"""Per-pixel channels: indices, masks, neighbourhood filters, sampling, the Parquet table."""

from kelp.features.config import FeatureConfig, FilterConfig, SamplingConfig
from kelp.features.stack import build_channels, channel_names

__all__ = ["FeatureConfig", "FilterConfig", "SamplingConfig", "build_channels", "channel_names"]
