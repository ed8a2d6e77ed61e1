"""Pretrained Llama-family checkpoints in the Hugging Face layout, loaded into :class:`DecoderLM`.

A checkpoint is a local directory with ``config.json``, the weights as ``model.safetensors`` or as
``model-0000N-of-0000M.safetensors`` shards with ``model.safetensors.index.json``, and
``tokenizer.json``. Nothing here downloads: fetch the weights you are licensed to use yourself
(README, "A pretrained LLM with LoRA / QLoRA").

Mapping (HF name → ours): ``model.embed_tokens`` → ``embed``; ``model.layers.i.self_attn.{q,k,v,o}_proj``
→ ``blocks.i.attn.{q,k,v,o}_proj``; ``model.layers.i.mlp.{gate,up,down}_proj`` →
``blocks.i.mlp.{gate,up,down}``; ``input_layernorm`` → ``attn_norm``; ``post_attention_layernorm`` →
``mlp_norm``; ``model.norm`` → ``norm``; ``lm_head`` → ``lm_head`` (absent when the embeddings are
tied). RoPE: checkpoints in this layout rotate halves (HF's ``rotate_half``, the q/k rows already
permuted by the conversion script), which is :func:`astrobio_lib.models.llm.apply_rope`'s
convention, so no permutation is applied. RoPE scaling (Llama 3.1 style), attention or MLP biases
and a head dimension other than hidden / heads are refused with a clear error, not approximated.

Loading streams one shard at a time with ``safetensors.safe_open`` and copies each tensor into the
model's own parameter, so at most one tensor of the checkpoint is held beside the model.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from astrobio_lib.models.llm import DecoderLM, LLMConfig, rope_tables

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_LAYER_MAP = {
    "self_attn.q_proj.weight": "attn.q_proj.weight", "self_attn.k_proj.weight": "attn.k_proj.weight",
    "self_attn.v_proj.weight": "attn.v_proj.weight", "self_attn.o_proj.weight": "attn.o_proj.weight",
    "mlp.gate_proj.weight": "mlp.gate.weight", "mlp.up_proj.weight": "mlp.up.weight",
    "mlp.down_proj.weight": "mlp.down.weight",
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "mlp_norm.weight",
}
_TOP_MAP = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight",
            "lm_head.weight": "lm_head.weight"}


class CheckpointFormatError(ValueError):
    """A pretrained checkpoint directory that cannot be loaded as it is (names the file and the fix)."""


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointFormatError(f"{path} does not exist: a Hugging Face checkpoint directory needs "
                                    f"config.json, the *.safetensors weights and tokenizer.json")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointFormatError(f"{path} is not valid JSON ({exc})") from exc


# The published config.json figures of checkpoints the params files name, so the memory budget can
# plan for them on a machine that does not hold the weights (training always reads the real file).
PUBLISHED_CONFIGS = {
    "Llama-2-13b-hf": {"model_type": "llama", "hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
                       "num_key_value_heads": 40, "intermediate_size": 13824, "vocab_size": 32000,
                       "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
                       "tie_word_embeddings": False, "hidden_act": "silu"},
    "Llama-2-7b-hf": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                      "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                      "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
                      "tie_word_embeddings": False, "hidden_act": "silu"},
}


def published_llm_config(path: str | Path, **kwargs) -> Optional[LLMConfig]:
    """Returns the LLMConfig of a checkpoint that is not on this machine from its published
    ``config.json`` figures (:data:`PUBLISHED_CONFIGS`, by directory name), or None if unknown."""
    raw = PUBLISHED_CONFIGS.get(Path(path).name)
    if raw is None:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(raw))
        return read_llm_config(tmp, **kwargs)


def read_llm_config(path: str | Path, *, attention: str = "sdpa", activation_checkpointing: bool = False,
                    max_seq_len: Optional[int] = None) -> LLMConfig:
    """Returns the :class:`LLMConfig` of a checkpoint's ``config.json``.

    Raises:
        CheckpointFormatError: a missing key, a model type that is not Llama-like, RoPE scaling,
            biases, or a head dimension our attention does not use.
    """
    path = Path(path)
    raw = _read_json(path / "config.json")
    where = path / "config.json"
    if raw.get("model_type") not in ("llama", "mistral"):
        raise CheckpointFormatError(f"{where}: model_type {raw.get('model_type')!r}: only Llama-family "
                                    f"decoders (llama, mistral) map onto astrobio's DecoderLM")
    # RoPE: `rope_theta` / `rope_scaling` (transformers < 5, e.g. Llama-2's own files) or
    # `rope_parameters` {rope_theta, rope_type} (transformers >= 5)
    rope = raw.get("rope_parameters") or {}
    scaling = raw.get("rope_scaling") or ({"rope_type": rope.get("rope_type")}
                                          if rope.get("rope_type", "default") != "default" else None)
    if scaling:
        raise CheckpointFormatError(f"{where}: RoPE scaling {scaling} is not implemented: use a checkpoint "
                                    f"without RoPE scaling (e.g. Llama-2)")
    theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    if raw.get("attention_bias") or raw.get("mlp_bias"):
        raise CheckpointFormatError(f"{where}: attention/MLP biases are not part of DecoderLM")
    try:
        hidden, heads = int(raw["hidden_size"]), int(raw["num_attention_heads"])
        cfg = LLMConfig(
            vocab_size=int(raw["vocab_size"]), hidden=hidden, n_layers=int(raw["num_hidden_layers"]),
            n_heads=heads, n_kv_heads=int(raw.get("num_key_value_heads") or heads),
            intermediate=int(raw["intermediate_size"]),
            max_seq_len=int(max_seq_len or raw.get("max_position_embeddings", 2048)),
            rope_theta=float(theta), norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            attention=attention, activation_checkpointing=activation_checkpointing,
            tie_embeddings=bool(raw.get("tie_word_embeddings", False)))
    except KeyError as exc:
        raise CheckpointFormatError(f"{where} has no {exc.args[0]!r}") from exc
    head_dim = raw.get("head_dim")
    if head_dim is not None and int(head_dim) != cfg.head_dim:
        raise CheckpointFormatError(f"{where}: head_dim {head_dim} != hidden_size / num_attention_heads "
                                    f"({cfg.head_dim}): not supported by DecoderLM")
    if raw.get("hidden_act", "silu") != "silu":
        raise CheckpointFormatError(f"{where}: hidden_act {raw['hidden_act']!r}: DecoderLM's SwiGLU uses silu")
    return cfg


def weight_files(path: str | Path) -> list[Path]:
    """Returns the safetensors files of a checkpoint (shards in index order, or the single file).

    Raises:
        CheckpointFormatError: no weights, or an index naming a shard that is missing.
    """
    path = Path(path)
    index = path / INDEX_FILE
    if index.is_file():
        files = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [f for f in files if not (path / f).is_file()]
        if missing or not files:
            raise CheckpointFormatError(f"{index} names shards that are missing: {', '.join(missing) or 'none listed'}")
        return [path / f for f in files]
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    raise CheckpointFormatError(f"{path}: no {SINGLE_FILE} and no {INDEX_FILE}: not a safetensors checkpoint")


def our_name(hf_name: str) -> Optional[str]:
    """Returns DecoderLM's parameter name for a checkpoint tensor name (None: not a weight we use)."""
    if hf_name in _TOP_MAP:
        return _TOP_MAP[hf_name]
    m = _LAYER.match(hf_name)
    if m and m.group(2) in _LAYER_MAP:
        return f"blocks.{m.group(1)}.{_LAYER_MAP[m.group(2)]}"
    return None


def iter_tensors(path: str | Path) -> Iterator[tuple[str, str, torch.Tensor]]:
    """Yields (checkpoint name, file name, tensor) one tensor at a time, shard by shard."""
    from safetensors import safe_open

    for file in weight_files(path):
        try:
            handle = safe_open(str(file), framework="pt")
        except Exception as exc:  # safetensors' own error for a truncated or corrupt file
            raise CheckpointFormatError(f"{file} is not a readable safetensors file ({exc}): download it again") from exc
        with handle as fh:
            for name in fh.keys():
                yield name, file.name, fh.get_tensor(name)


def load_llm_weights(model: DecoderLM, path: str | Path) -> DecoderLM:
    """Copies a checkpoint's weights into ``model`` (same architecture), streaming shard by shard;
    returns ``model``. Rotary tables are computed, not loaded (``rotary_emb.inv_freq`` is skipped).

    Raises:
        CheckpointFormatError: a tensor the model does not have (extra), a weight the checkpoint
            lacks (missing), or a shape that differs — each named with its file.
    """
    params = dict(model.named_parameters())
    tied = model.cfg.tie_embeddings
    expected = {k for k in params if not (tied and k == "lm_head.weight")}
    seen: set[str] = set()
    with torch.no_grad():
        for hf_name, file, tensor in iter_tensors(path):
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            name = our_name(hf_name)
            if name is None or (tied and name == "lm_head.weight" and "lm_head.weight" in seen):
                raise CheckpointFormatError(f"{file}: tensor {hf_name!r} has no place in a Llama-style DecoderLM "
                                            f"(unexpected extra tensor)")
            if tied and name == "lm_head.weight":
                continue  # some tied checkpoints store the shared matrix twice; the embedding is the one
            target = params[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise CheckpointFormatError(f"{file}: {hf_name} has shape {tuple(tensor.shape)}, the model built "
                                            f"from config.json expects {tuple(target.shape)}")
            target.copy_(tensor.to(target.dtype))
            seen.add(name)
    missing = sorted(expected - seen)
    if missing:
        raise CheckpointFormatError(f"{path}: the checkpoint lacks {len(missing)} weight(s): "
                                    f"{', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}")
    return model


def load_llm(path: str | Path, dtype: torch.dtype = torch.float32, *, attention: str = "sdpa",
             activation_checkpointing: bool = False, max_seq_len: Optional[int] = None) -> DecoderLM:
    """Returns the :class:`DecoderLM` of a Hugging Face Llama-family checkpoint directory, in ``dtype``."""
    cfg = read_llm_config(path, attention=attention, activation_checkpointing=activation_checkpointing,
                          max_seq_len=max_seq_len)
    with torch.device("meta"):
        model = DecoderLM(cfg)
    model = model.to_empty(device="cpu").to(dtype)  # no random init of weights about to be overwritten
    cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)  # buffers: not in the checkpoint
    model.rope_cos.copy_(cos)
    model.rope_sin.copy_(sin)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    return load_llm_weights(model, path)


def fingerprint(path: str | Path) -> dict[str, str]:
    """Returns the sha256 of every file that defines a checkpoint (config, index, weights,
    tokenizer): what a resumed run and an evaluation must find unchanged."""
    path = Path(path)
    names = ["config.json", *(f.name for f in weight_files(path))]
    names += [n for n in (INDEX_FILE, TOKENIZER_FILE) if (path / n).is_file()]
    out = {}
    for name in sorted(set(names)):
        h = hashlib.sha256()
        with open(path / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        out[name] = h.hexdigest()
    return out


def fingerprint_sha256(path: str | Path) -> str:
    """One sha256 over :func:`fingerprint` (the base checkpoint's identity)."""
    return hashlib.sha256(json.dumps(fingerprint(path), sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- a tiny test checkpoint


def make_tiny_checkpoint(out_dir: str | Path, *, texts: Optional[list[str]] = None, seed: int = 0,
                         tied: bool = False, rope_theta: float = 50000.0, vocab_size: int = 384,
                         hidden: int = 64, layers: int = 2, intermediate: int = 160) -> Path:
    """Writes a tiny *random* Llama checkpoint (``transformers``: 2 layers, grouped-query attention,
    a non-default ``rope_theta``, safetensors shards with an index) and a small BPE ``tokenizer.json``
    trained on ``texts`` — for tests and the LoRA smoke run, never for science (its weights are
    random: SYNTHETIC). Needs ``transformers`` and ``tokenizers`` (the dev extra)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = texts or [f"Planet {i} orbits a star of {3000 + 37 * i} K every {1 + i % 50} days." for i in range(400)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    tok.save(str(out_dir / TOKENIZER_FILE))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=rope_theta, rms_norm_eps=1e-5, tie_word_embeddings=tied,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out_dir), safe_serialization=True, max_shard_size="100KB")
    (out_dir / "SYNTHETIC_RANDOM_WEIGHTS.txt").write_text(
        "A tiny Llama with RANDOM weights made by astrobio_lib.models.pretrained.make_tiny_checkpoint "
        "for tests and the LoRA smoke run. It knows no language.\n")
    return out_dir


def main(argv=None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m astrobio_lib.models.pretrained",
                                     description="Inspect a Hugging Face Llama checkpoint, or make the tiny "
                                                 "random one the LoRA smoke run uses.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tiny = sub.add_parser("make-tiny", help="write a tiny RANDOM Llama checkpoint + tokenizer (needs transformers)")
    tiny.add_argument("out_dir")
    tiny.add_argument("--tied", action="store_true", help="tie the input and output embeddings")
    show = sub.add_parser("show", help="print the LLMConfig and the fingerprint of a checkpoint")
    show.add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "make-tiny":
            print(make_tiny_checkpoint(args.out_dir, tied=args.tied))
        else:
            print(read_llm_config(args.path))
            print(json.dumps(fingerprint(args.path), indent=1))
    except CheckpointFormatError as exc:
        print(f"astrobio: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
