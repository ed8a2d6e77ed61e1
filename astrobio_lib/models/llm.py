"""Decoder-only transformer (Llama-style): RoPE, grouped-query attention, RMSNorm, SwiGLU.

Attention backends (``LLMConfig.attention``):
- ``sdpa`` (default): ``torch.nn.functional.scaled_dot_product_attention`` with native GQA.
- ``flash_attn``: ``flash_attn.flash_attn_func`` (CUDA, fp16/bf16 only); a clear error otherwise.
- ``eager``: explicit softmax(QK^T / sqrt(d)) V, the reference the others are tested against.

Shapes: ``input_ids`` [batch, seq] (int64) -> logits [batch, seq, vocab] and hidden states
[batch, seq, hidden].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ATTENTION_BACKENDS = ("sdpa", "flash_attn", "eager")


@dataclass
class LLMConfig:
    vocab_size: int = 512
    """tokens in the vocabulary"""
    hidden: int = 64
    """model width"""
    n_layers: int = 2
    """decoder blocks"""
    n_heads: int = 4
    """query heads; hidden must be divisible by n_heads"""
    n_kv_heads: int = 2
    """key/value heads (grouped-query attention); divides n_heads"""
    intermediate: int = 172
    """SwiGLU inner width"""
    max_seq_len: int = 128
    """longest sequence RoPE tables are built for"""
    rope_theta: float = 10000.0
    """RoPE base frequency"""
    norm_eps: float = 1e-5
    """RMSNorm epsilon"""
    attention: str = "sdpa"
    """attention backend: sdpa | flash_attn | eager"""
    activation_checkpointing: bool = False
    """recompute each block in the backward pass (saves activation memory)"""
    tie_embeddings: bool = False
    """share the input embedding with the output projection"""

    def __post_init__(self) -> None:
        if self.hidden % self.n_heads:
            raise ValueError(f"LLMConfig: hidden={self.hidden} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LLMConfig: n_heads={self.n_heads} must be divisible by "
                             f"n_kv_heads={self.n_kv_heads}")
        if (self.hidden // self.n_heads) % 2:
            raise ValueError(f"LLMConfig: head dim {self.hidden // self.n_heads} must be even for RoPE")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"LLMConfig: attention={self.attention!r}: one of {ATTENTION_BACKENDS}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads


def rope_tables(head_dim: int, seq_len: int, theta: float = 10000.0,
                device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (cos, sin) of shape [seq_len, head_dim] for rotary embeddings (Su et al. 2021)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates ``x`` [batch, heads, seq, head_dim] by position (rotate-half convention)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention written out; k/v heads are repeated to the query heads (GQA)."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    seq = q.shape[-2]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention with flash-attn (CUDA, fp16/bf16).

    Raises:
        RuntimeError: flash-attn not importable, tensors not on CUDA, or not 16-bit.
    """
    try:
        from flash_attn import flash_attn_func
    except ImportError as exc:
        raise RuntimeError("attention='flash_attn' needs the flash-attn package (pip install "
                           "'astrobio[gpu]' on a CUDA machine); use attention='sdpa'") from exc
    if not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
        raise RuntimeError(f"attention='flash_attn' needs CUDA fp16/bf16 tensors, got {q.device} "
                           f"{q.dtype}; use attention='sdpa' here")
    # flash-attn takes [batch, seq, heads, head_dim] and handles GQA itself
    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
    return out.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.hidden, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.hidden, cfg.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        hd = self.cfg.head_dim
        q = self.q_proj(x).view(b, s, self.cfg.n_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.cfg.n_kv_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.cfg.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.cfg.attention == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        elif self.cfg.attention == "eager":
            out = eager_attention(q, k, v)
        else:
            out = flash_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class SwiGLU(nn.Module):
    """FFN(x) = W_down (SiLU(W_gate x) * W_up x) (Shazeer 2020)."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate = nn.Linear(hidden, intermediate, bias=False)
        self.up = nn.Linear(hidden, intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.hidden, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.hidden, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.hidden, cfg.intermediate)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class DecoderLM(nn.Module):
    """The decoder language model. ``forward(input_ids)`` returns (logits, hidden states)."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.hidden, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns logits [batch, seq, vocab] and final hidden states [batch, seq, hidden].

        Raises:
            ValueError: a sequence longer than ``max_seq_len``.
        """
        seq = input_ids.shape[1]
        if seq > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {seq} > max_seq_len={self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        x = self.embed(input_ids)
        for block in self.blocks:
            if self.cfg.activation_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin)
        hidden = self.norm(x)
        return self.lm_head(hidden), hidden


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the positions where ``token_mask`` (of the target) is true."""
    targets = input_ids[:, 1:].masked_fill(~token_mask[:, 1:].bool(), -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=-100)
