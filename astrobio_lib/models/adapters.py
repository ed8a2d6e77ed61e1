"""Building the model a run trains: a preset, optionally a pretrained LLM, optionally LoRA / QLoRA.

- ``llm_checkpoint`` (a Hugging Face Llama-family directory, see :mod:`.pretrained`) replaces the
  preset's randomly initialised text encoder by the checkpoint's architecture and weights; the
  other encoders, the fusion and the heads come from ``model_preset``.
- ``llm_adapter: lora`` freezes that LLM (kept in the compute dtype: bf16 under bf16 / bf16-mixed,
  fp32 under fp32) and trains low-rank adapters on ``lora_targets`` through ``peft``
  (``inject_adapter_in_model``: peft's LoRA layers, not hand-written ones).
- ``llm_adapter: qlora`` first quantises every linear layer of the LLM's blocks to 4-bit NF4 with
  double quantisation (bitsandbytes ``Linear4bit``; compute in bf16, or fp32 under fp32), then adds
  the same adapters (Dettmers et al. 2023). Embeddings, norms and ``lm_head`` stay frozen in the
  compute dtype.

Only the adapters, the other encoders, the fusion and the heads train. Checkpoints hold exactly those
(:func:`trainable_state_dict`): the frozen base is named by its path and sha256 in the run's
configuration and rebuilt from the checkpoint directory when training resumes or a run is evaluated.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from astrobio_lib.models.fusion import MultimodalConfig, MultimodalModel, build_model
from astrobio_lib.models.presets import get_preset

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate", "up", "down")
HF_ALIASES = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}  # Llama names people know
DEFAULT_TARGETS = ",".join(TARGETS)


class AdapterError(ValueError):
    """Adapter settings that cannot be built (names the key and the fix)."""


def parse_targets(text: str) -> list[str]:
    """Returns the LLM module names ``lora_targets`` names (Hugging Face names accepted).

    Raises:
        AdapterError: an empty list or an unknown module name.
    """
    names = [HF_ALIASES.get(t.strip(), t.strip()) for t in str(text).split(",") if t.strip()]
    bad = [n for n in names if n not in TARGETS]
    if not names or bad:
        raise AdapterError(f"lora_targets: {text!r}: choose from {', '.join(TARGETS)} (or gate_proj/up_proj/down_proj)")
    return sorted(set(names), key=TARGETS.index)


def resolve_attention(attention: str, precision: str) -> tuple[str, str]:
    """Returns (backend, why) for the ``attention`` parameter: ``auto`` takes flash-attn when it is
    installed and a CUDA GPU trains in bf16/fp16 (flash-attn has no fp32 kernels), SDPA otherwise
    (its own flash / memory-efficient kernels on CUDA, its fused CPU kernel on CPU); any other value
    is used as given."""
    if attention != "auto":
        return attention, "as configured"
    if not torch.cuda.is_available():
        return "sdpa", "auto: no CUDA GPU"
    if precision not in ("bf16", "bf16-mixed", "fp16-mixed"):
        return "sdpa", f"auto: flash-attn has no {precision} kernels"
    try:
        import flash_attn
    except Exception:  # noqa: BLE001 - an absent or broken install both mean: not usable
        return "sdpa", "auto: flash-attn is not installed (pip install flash-attn on the pod to use it)"
    return "flash_attn", f"auto: flash-attn {getattr(flash_attn, '__version__', '?')} installed, CUDA, {precision}"


def model_config(flat: Mapping[str, Any]) -> MultimodalConfig:
    """Returns the model configuration of a run: the preset (with the resolved ``attention``
    backend), with the checkpoint's LLM when ``llm_checkpoint`` is set (its context cut to the
    dataset's ``text_max_len`` when given)."""
    ckpt_on = bool(flat.get("activation_checkpointing", False))
    attention, _ = resolve_attention(flat.get("attention", "auto"), flat.get("precision", "fp32"))
    cfg = get_preset(flat["model_preset"], attention=attention, activation_checkpointing=ckpt_on)
    if flat.get("llm_checkpoint"):
        from astrobio_lib.models import pretrained

        llm = pretrained.read_llm_config(flat["llm_checkpoint"], attention=cfg.llm.attention,
                                         activation_checkpointing=ckpt_on)
        cfg.llm = llm
    return cfg


def build(flat: Mapping[str, Any], device: torch.device | str = "cpu",
          model_cfg: Optional[MultimodalConfig] = None) -> MultimodalModel:
    """Returns the model a run trains, on ``device``: ``model_cfg`` (default: :func:`model_config`;
    a task's model comes from :func:`astrobio_lib.tasks.build_model`) built from ``seed``; with
    ``llm_checkpoint`` the pretrained LLM streamed in (never initialised at random first), frozen and
    quantised on ``device`` layer by layer for QLoRA (so a 13B base never sits on the GPU in 16 bit);
    pure-bf16 cast when ``precision: bf16``; then the adapters.

    Raises:
        pretrained.CheckpointFormatError: the checkpoint cannot be loaded.
        AdapterError: adapters without a checkpoint, bad adapter settings, or a pretrained LLM for a
            model without text.
    """
    cfg = model_cfg if model_cfg is not None else model_config(flat)
    seed, precision = int(flat.get("seed", 0)), flat.get("precision", "fp32")
    adapter, ckpt = flat.get("llm_adapter", "none"), flat.get("llm_checkpoint")
    if adapter != "none" and not ckpt:
        raise AdapterError(f"llm_adapter: {adapter} needs llm_checkpoint (a pretrained LLM to adapt)")
    if ckpt and not cfg.has("text"):
        raise AdapterError(f"llm_checkpoint {ckpt}: this model has no text encoder (modalities {cfg.modalities})")
    if not ckpt:
        model = build_model(cfg, seed=seed).to(device)
        return model.to(torch.bfloat16) if precision == "bf16" else model

    from astrobio_lib.models import pretrained
    from astrobio_lib.models.fusion import init_weights
    from astrobio_lib.precision import compute_dtype

    dtype = compute_dtype(precision)
    # the LLM: streamed from the checkpoint on the CPU, in the dtype it will be used in
    staging = dtype if adapter != "none" else (torch.bfloat16 if precision == "bf16" else torch.float32)
    llm = pretrained.load_llm(ckpt, staging, attention=cfg.llm.attention,
                              activation_checkpointing=cfg.llm.activation_checkpointing,
                              max_seq_len=cfg.llm.max_seq_len)
    # everything else: built on meta, materialised and initialised from seed without the LLM
    with torch.device("meta"):
        model = MultimodalModel(cfg)
    del model.text_encoder
    if any(True for _ in model.buffers()):  # to_empty leaves buffers uninitialised: init_weights sets parameters only
        raise NotImplementedError("a model component registers buffers: build it on the CPU instead of meta here")
    model = init_weights(model.to_empty(device="cpu"), seed)
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    model.text_encoder = llm
    if adapter == "none":
        return model.to(device)
    for p in llm.parameters():
        p.requires_grad_(False)
    if adapter == "qlora":
        quantize_nf4(llm, dtype, device)
    model = model.to(device)
    return apply_adapter(model, adapter, rank=int(flat.get("lora_rank", 16)), alpha=float(flat.get("lora_alpha", 32.0)),
                         dropout=float(flat.get("lora_dropout", 0.05)),
                         targets=parse_targets(flat.get("lora_targets", DEFAULT_TARGETS)))


def quantize_nf4(llm: nn.Module, dtype: torch.dtype, device: torch.device | str = "cpu") -> int:
    """Replaces every ``nn.Linear`` inside ``llm.blocks`` by a frozen bitsandbytes NF4 ``Linear4bit``
    (double quantisation, ``dtype`` compute), quantised on ``device`` one layer at a time (the 16-bit
    copy of a layer is freed as soon as it is packed); returns how many."""
    import bitsandbytes as bnb

    count = 0
    for block in llm.blocks:
        for parent in (block.attn, block.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=dtype,
                                      quant_type="nf4", compress_statistics=True, device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data.contiguous(), requires_grad=False, quant_type="nf4",
                                             compress_statistics=True)
                # bitsandbytes 0.50 repacks 4-bit weights for AVX512-BF16 CPUs on the first no-grad eval
                # forward and asserts that every output dimension is a multiple of 32 (an intermediate
                # size of 688 fails); the unpacked path computes the same values on any CPU
                q.support_avx512bf16_for_cpu = False
                setattr(parent, name, q.to(device))  # .to() quantises on the target device
                count += 1
    return count


def apply_adapter(model: MultimodalModel, adapter: str, *, rank: int, alpha: float, dropout: float,
                  targets: list[str]) -> MultimodalModel:
    """Adds peft LoRA adapters (fp32 master weights) to ``targets`` of the frozen
    ``model.text_encoder`` and records the frozen state-dict keys on the model
    (``frozen_state_keys``), which checkpoints leave out. Returns ``model``."""
    from peft import LoraConfig, inject_adapter_in_model

    if adapter not in ("lora", "qlora"):
        raise AdapterError(f"llm_adapter: {adapter!r}: one of none, lora, qlora")
    llm = model.text_encoder
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                                       bias="none"), llm)
    for name, p in llm.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()  # fp32 master weights for the adapters, whatever the base's dtype
            p.requires_grad_(True)
    model.frozen_state_keys = frozenset(f"text_encoder.{k}" for k in llm.state_dict() if "lora_" not in k)
    model.llm_adapter = adapter
    return model


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without the frozen pretrained base (all of it for full training)."""
    frozen = getattr(model, "frozen_state_keys", frozenset())
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def load_trainable_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Loads a checkpoint's state into ``model``: every key but the frozen base must be present.

    Raises:
        RuntimeError: a key missing that is not frozen, or a key the model does not have.
    """
    frozen = getattr(model, "frozen_state_keys", frozenset())
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    missing = [k for k in missing if k not in frozen]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]} "
                           f"(was it written with other llm_adapter / lora settings?)")


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts (a 4-bit weight counts its packed elements x 2)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * (2 if p.dtype == torch.uint8 else 1) for p in model.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}
