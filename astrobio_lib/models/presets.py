"""Model size presets, from ``tiny`` (CPU tests) to the seeds' full sizes.

``python -m astrobio_lib.models.presets`` prints preset, component and parameter count; counts
come from building each preset on the ``meta`` device, so no weight is allocated.

``medium`` is ``small`` with a 0.71B Llama-style LLM (hidden 2048, 16 layers, 16 heads, 4 key/value
heads, SwiGLU 5504, context 1024) — the LLM-dominated configuration measured on an H100 in
``../shared/measurements`` ("medium"), sized to fill one 24 GB GPU with bf16-mixed and 8-bit AdamW.

``seeds_full`` reproduces the seeds' stated sizes (13.14B LLM, 1.2B graph VAE, 2.5B CNN):
- LLM: hidden 4352 and 64 heads as the seeds say (head dim 68); 8 key/value heads (GQA, as
  Llama-2 13B-class models use); vocabulary 32000 (Llama-2); SwiGLU width 11904 (~2.74 x hidden,
  a multiple of 128); **65 layers** -> 13.15B. 64 layers give 12.95B and 66 give 13.35B.
- Graph VAE: node features 64, 512 channels per head x 16 heads (width 8192), latent 256;
  **10 GATv2 layers** -> 1.22B (+1.7%; 9 layers give 1.09B, -9.5%).
- Datacube: 2 variables, base channels 128, depth 6 (widths 128 ... 2048), then a ViT of width
  2048 with 16 heads over 40 patch tokens; **38 layers** -> 2.50B.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Optional

import torch

from astrobio_lib.models.datacube import DatacubeConfig
from astrobio_lib.models.fusion import COMPONENT_MODALITY, FusionConfig, MultimodalConfig, build_model
from astrobio_lib.models.graph_vae import GraphVAEConfig
from astrobio_lib.models.llm import LLMConfig

PRESETS = ("tiny", "small", "medium", "seeds_full")
COMPONENTS = {
    "llm": ("text_encoder",),
    "graph_vae": ("graph_encoder",),
    "datacube_cnn": ("climate_encoder",),
    "fusion_and_heads": None,  # everything else
}


def get_preset(name: str, attention: str = "sdpa", activation_checkpointing: bool = False) -> MultimodalConfig:
    """Returns the :class:`MultimodalConfig` of a named preset.

    Raises:
        ValueError: unknown preset name.
    """
    if name == "tiny":
        cfg = MultimodalConfig(
            llm=LLMConfig(vocab_size=512, hidden=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          intermediate=172, max_seq_len=256),
            graph=GraphVAEConfig(node_features=64, hidden=16, heads=2, n_layers=2, latent=16),
            datacube=DatacubeConfig(base_channels=8, depth=2, d_model=32, n_layers=1, n_heads=2),
            fusion=FusionConfig(d_model=64, n_layers=2, n_heads=4))
    elif name == "small":
        cfg = MultimodalConfig(
            llm=LLMConfig(vocab_size=512, hidden=768, n_layers=12, n_heads=12, n_kv_heads=4,
                          intermediate=2048, max_seq_len=512),
            graph=GraphVAEConfig(node_features=64, hidden=64, heads=8, n_layers=3, latent=64),
            datacube=DatacubeConfig(base_channels=32, depth=4, max_doublings=3, d_model=256,
                                    n_layers=4, n_heads=8),
            fusion=FusionConfig(d_model=256, n_layers=4, n_heads=8))
    elif name == "medium":  # LLM-dominated, ~0.72B: fills one 24 GB GPU with bf16-mixed + 8-bit AdamW
        cfg = get_preset("small")
        cfg.llm = replace(cfg.llm, hidden=2048, n_layers=16, n_heads=16, n_kv_heads=4, intermediate=5504,
                          max_seq_len=1024)
    elif name == "seeds_full":
        cfg = MultimodalConfig(
            llm=LLMConfig(vocab_size=32000, hidden=4352, n_layers=65, n_heads=64, n_kv_heads=8,
                          intermediate=11904, max_seq_len=2048),
            graph=GraphVAEConfig(node_features=64, hidden=512, heads=16, n_layers=10, latent=256),
            datacube=DatacubeConfig(base_channels=128, depth=6, max_doublings=4, d_model=2048,
                                    n_layers=38, n_heads=16),
            fusion=FusionConfig(d_model=1024, n_layers=4, n_heads=16))
    else:
        raise ValueError(f"model preset {name!r}: one of {', '.join(PRESETS)}")
    cfg.llm = replace(cfg.llm, attention=attention, activation_checkpointing=activation_checkpointing)
    cfg.datacube = replace(cfg.datacube, activation_checkpointing=activation_checkpointing)
    return cfg


def count_parameters(cfg: MultimodalConfig) -> dict[str, int]:
    """Returns parameters per component the model builds and ``total``, counted on the meta device."""
    model = build_model(cfg, device="meta")
    counts = {}
    claimed = set()
    for component, prefixes in COMPONENTS.items():
        if prefixes is None or not cfg.has(COMPONENT_MODALITY[component]):
            continue
        n = 0
        for name, p in model.named_parameters():
            if name.startswith(prefixes):
                n += p.numel()
                claimed.add(name)
        counts[component] = n
    counts["fusion_and_heads"] = sum(p.numel() for name, p in model.named_parameters() if name not in claimed)
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def table(presets: tuple[str, ...] = PRESETS) -> str:
    """Returns the preset / component / parameters table as text."""
    lines = [f"{'preset':<12} {'component':<18} {'parameters':>16}"]
    for name in presets:
        for component, n in count_parameters(get_preset(name)).items():
            lines.append(f"{name:<12} {component:<18} {n:>16,}  ({n / 1e9:.3f} B)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrobio_lib.models.presets",
                                     description="Parameter counts of the model presets (meta device).")
    parser.add_argument("presets", nargs="*", default=list(PRESETS), help=f"any of {PRESETS}")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    print(table(tuple(args.presets)))
    print(f"\ncounted on the meta device in {time.perf_counter() - t0:.2f} s; "
          f"no weights allocated (torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
