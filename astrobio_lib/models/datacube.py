"""Climate-datacube encoder: a 3D CNN stem, then ViT-style patch tokens and transformer layers.

Input ``cube`` [batch, variables, level, lat, lon] (reference grid 2 x 10 x 32 x 64: temperature
and specific humidity). Longitude is periodic, so every convolution pads it circularly (a planet
has no edge at 180°); latitude and level are zero-padded. Stage ``i`` of the stem has
``base_channels * 2**min(i, max_doublings)`` channels and halves lat/lon while both stay >= 8.
The stem's output is cut into ``patch`` patches, embedded as tokens with a class token and
learned positions, and passed through pre-norm transformer layers (SDPA attention).

Output: pooled embedding [batch, d_model] (the class token) and tokens [batch, 1 + n_patches, d_model].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class DatacubeConfig:
    variables: int = 2
    """input variables (temperature, specific humidity)"""
    levels: int = 10
    """vertical levels"""
    lat: int = 32
    """latitude points"""
    lon: int = 64
    """longitude points (periodic)"""
    base_channels: int = 8
    """channels of the first CNN stage"""
    depth: int = 2
    """CNN stages (two 3x3x3 convolutions each)"""
    max_doublings: int = 3
    """channel doublings before the width stays constant"""
    patch: tuple = (2, 4, 4)
    """(level, lat, lon) patch of the stem's output per token"""
    d_model: int = 32
    """transformer width"""
    n_layers: int = 1
    """transformer layers"""
    n_heads: int = 2
    """attention heads"""
    activation_checkpointing: bool = False
    """recompute stages and layers in the backward pass"""


class PeriodicConv3d(nn.Module):
    """3x3x3 convolution, circular padding in longitude and zeros in level and latitude."""

    def __init__(self, c_in: int, c_out: int, stride: tuple = (1, 1, 1)):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 0, 0, 0, 0), mode="circular")  # lon (last dim)
        x = F.pad(x, (0, 0, 1, 1, 1, 1))  # lat, level
        return self.conv(x)


class Stage(nn.Module):
    def __init__(self, c_in: int, c_out: int, downsample: bool):
        super().__init__()
        self.conv1 = PeriodicConv3d(c_in, c_out, stride=(1, 2, 2) if downsample else (1, 1, 1))
        self.norm1 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = PeriodicConv3d(c_out, c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.conv1(x)))
        return F.gelu(self.norm2(self.conv2(x)))


class DatacubeEncoder(nn.Module):
    def __init__(self, cfg: DatacubeConfig):
        super().__init__()
        self.cfg = cfg
        stages, c_in, lat, lon = [], cfg.variables, cfg.lat, cfg.lon
        for i in range(cfg.depth):
            c_out = cfg.base_channels * 2 ** min(i, cfg.max_doublings)
            down = i > 0 and lat // 2 >= 8 and lon // 2 >= 8
            if down:
                lat, lon = (lat + 1) // 2, (lon + 1) // 2
            stages.append(Stage(c_in, c_out, down))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        pl, pa, po = cfg.patch
        if cfg.levels % pl or lat % pa or lon % po:
            raise ValueError(f"DatacubeConfig: patch {cfg.patch} must divide the stem output "
                             f"(levels {cfg.levels}, lat {lat}, lon {lon})")
        self.n_patches = (cfg.levels // pl) * (lat // pa) * (lon // po)
        self.patch_embed = nn.Conv3d(c_in, cfg.d_model, kernel_size=cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.n_patches, cfg.d_model))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation_checkpointing and self.training:
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, cube: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (pooled [batch, d_model], tokens [batch, 1 + n_patches, d_model]).

        Raises:
            ValueError: ``cube`` is not [batch, variables, levels, lat, lon] of the configured sizes.
        """
        expected = (self.cfg.variables, self.cfg.levels, self.cfg.lat, self.cfg.lon)
        if cube.dim() != 5 or tuple(cube.shape[1:]) != expected:
            raise ValueError(f"datacube shape {tuple(cube.shape)}: expected [batch, {', '.join(map(str, expected))}]")
        x = cube
        for stage in self.stages:
            x = self._run(stage, x)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        for layer in self.layers:
            tokens = self._run(layer, tokens)
        tokens = self.norm(tokens)
        return tokens[:, 0], tokens
