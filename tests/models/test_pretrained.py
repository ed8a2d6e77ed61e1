"""Loading a Hugging Face Llama checkpoint into DecoderLM (issue 12): a tiny random checkpoint is
made here with transformers; nothing is downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from astrobio_lib.models import pretrained  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return pretrained.make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_llama")


@pytest.mark.parametrize("tied", [False, True])
def test_logits_equal_transformers_llama(tmp_path, tied):
    from transformers import LlamaForCausalLM

    path = pretrained.make_tiny_checkpoint(tmp_path / "llama", tied=tied, rope_theta=50000.0)
    assert len(pretrained.weight_files(path)) > 1  # sharded, with an index
    ours = pretrained.load_llm(path).eval()
    assert ours.cfg.rope_theta == 50000.0 and ours.cfg.n_kv_heads == 2 and ours.cfg.tie_embeddings == tied
    ref = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    ids = torch.randint(0, ours.cfg.vocab_size, (3, 57), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(ids)[0] - ref(ids).logits).abs().max().item()
    assert diff < 1e-4, diff
    if tied:
        assert ours.lm_head.weight is ours.embed.weight


def _rewrite_first_shard(path: Path, edit) -> Path:
    from safetensors.torch import load_file, save_file

    shard = pretrained.weight_files(path)[0]
    tensors = load_file(str(shard))
    edit(tensors)
    save_file(tensors, str(shard), metadata={"format": "pt"})
    return shard


def test_missing_extra_misshaped_and_corrupt_tensors_are_named(tiny, tmp_path):
    def fresh(name):
        return Path(shutil.copytree(tiny, tmp_path / name))

    bad = fresh("missing")
    removed = []
    _rewrite_first_shard(bad, lambda t: removed.append(next(iter(t))) or t.pop(removed[0]))
    with pytest.raises(pretrained.CheckpointFormatError, match="lacks 1 weight"):
        pretrained.load_llm(bad)

    bad = fresh("extra")
    _rewrite_first_shard(bad, lambda t: t.__setitem__("model.layers.0.self_attn.q_norm.weight", torch.ones(4)))
    with pytest.raises(pretrained.CheckpointFormatError, match="q_norm.weight.*unexpected extra"):
        pretrained.load_llm(bad)

    bad = fresh("shape")

    def squash(t):
        name = next(iter(t))
        t[name] = t[name][..., :1].contiguous()
    _rewrite_first_shard(bad, squash)
    with pytest.raises(pretrained.CheckpointFormatError, match="has shape"):
        pretrained.load_llm(bad)

    bad = fresh("truncated")
    shard = pretrained.weight_files(bad)[-1]
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(pretrained.CheckpointFormatError, match="not a readable safetensors file"):
        pretrained.load_llm(bad)

    bad = fresh("scaled")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(pretrained.CheckpointFormatError, match="RoPE scaling"):
        pretrained.read_llm_config(bad)


def test_fingerprint_changes_with_any_file(tiny, tmp_path):
    copy = Path(shutil.copytree(tiny, tmp_path / "copy"))
    before = pretrained.fingerprint_sha256(copy)
    assert before == pretrained.fingerprint_sha256(tiny)
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace("<unk>", "<UNK>"))
    assert pretrained.fingerprint_sha256(copy) != before


def test_checkpoint_tokenizer_builds_its_own_dataset(tiny, tmp_path, real_catalog):
    """The dataset records which tokenizer made text_ids; another tokenizer never reuses a build."""
    from astrobio_lib.data import text

    from ..conftest import HABITABILITY, built

    values = {**HABITABILITY, "run_dir": str(tmp_path / "run"), "catalog_path": str(real_catalog), "n_planets": 32,
              "label_mc_samples": 8, "text_max_len": 96}
    byte_cfg = built(values)
    byte_manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    tok_cfg = built({**values, "llm_checkpoint": str(tiny)})
    manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    assert manifest["build_sha256"] != byte_manifest["build_sha256"] and not manifest.get("reused")
    info = manifest["modalities"]["text"]
    assert info["sha256"] == text.CheckpointTokenizer(tiny).sha256 and info["vocab_size"] == 384
    ids, mask = text.tokenizer_for(tiny).encode("Kepler-442 b orbits Kepler-442", 16)
    assert ids.shape == (16,) and mask.sum() <= 16 and ids[0] == 1  # <s> first
    assert text.tokenizer_for(tiny).decode(ids[mask]).startswith("Kepler")
    assert byte_cfg.model.llm_checkpoint is None and tok_cfg.model.llm_checkpoint == str(tiny)
