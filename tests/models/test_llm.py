import pytest
import torch
import torch.nn.functional as F

from astrobio_lib.models.llm import DecoderLM, LLMConfig, apply_rope, eager_attention, rope_tables


def _lm(**kw):
    torch.manual_seed(0)
    cfg = LLMConfig(vocab_size=97, hidden=64, n_layers=2, n_heads=8, n_kv_heads=2, intermediate=96,
                    max_seq_len=32, **kw)
    return DecoderLM(cfg)


def test_sdpa_and_eager_agree_with_gqa_fp32():
    ids = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(1))
    sdpa = _lm(attention="sdpa")
    eager = _lm(attention="eager")
    eager.load_state_dict(sdpa.state_dict())
    logits_s, _ = sdpa(ids)
    logits_e, _ = eager(ids)
    torch.testing.assert_close(logits_s, logits_e, atol=1e-5, rtol=1e-5)
    q = torch.randn(2, 8, 11, 16)
    k, v = torch.randn(2, 2, 11, 16), torch.randn(2, 2, 11, 16)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                               eager_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    head_dim, seq = 16, 40
    cos, sin = rope_tables(head_dim, seq)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(m, n):
        qm = apply_rope(q.view(1, 1, 1, -1), cos[m:m + 1], sin[m:m + 1])
        kn = apply_rope(k.view(1, 1, 1, -1), cos[n:n + 1], sin[n:n + 1])
        return (qm * kn).sum()

    for m, n, shift in [(3, 1, 7), (10, 10, 5), (0, 9, 20)]:
        torch.testing.assert_close(score(m, n), score(m + shift, n + shift), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2))  # and it does depend on the offset
    # rotation keeps the norm
    x = torch.randn(1, 1, seq, head_dim)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_causality():
    lm = _lm()
    ids = torch.randint(0, 97, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 97
    torch.testing.assert_close(lm(ids)[0][:, :8], lm(changed)[0][:, :8])


def test_activation_checkpointing_leaves_gradients_unchanged():
    ids = torch.randint(0, 97, (2, 16))
    grads = []
    for ckpt in (False, True):
        lm = _lm(activation_checkpointing=ckpt)
        logits, _ = lm(ids)
        logits.float().pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5)


def test_flash_attn_is_a_clear_error_without_cuda():
    lm = _lm(attention="flash_attn")
    with pytest.raises(RuntimeError, match="flash"):
        lm(torch.randint(0, 97, (1, 8)))


def test_config_errors():
    with pytest.raises(ValueError, match="divisible by n_kv_heads"):
        LLMConfig(hidden=64, n_heads=8, n_kv_heads=3)
    with pytest.raises(ValueError, match="attention='xformers'"):
        LLMConfig(attention="xformers")
    with pytest.raises(ValueError, match="max_seq_len"):
        _lm()(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (flash-attn / bf16 path)")
def test_sdpa_bf16_on_cuda_close_to_fp32():
    lm = _lm().cuda()
    ids = torch.randint(0, 97, (2, 16), device="cuda")
    ref, _ = lm(ids)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low, _ = lm(ids)
    torch.testing.assert_close(low.float(), ref, atol=5e-2, rtol=5e-2)
