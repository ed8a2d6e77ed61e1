import pytest
import torch
from torch_geometric.data import Batch, Data

from astrobio_lib.models.datacube import DatacubeConfig, DatacubeEncoder, PeriodicConv3d
from astrobio_lib.models.graph_vae import GraphVAE, GraphVAEConfig


def test_periodic_padding_makes_the_stem_equivariant_to_longitude_shifts():
    torch.manual_seed(0)
    conv = PeriodicConv3d(2, 4)
    x = torch.randn(1, 2, 10, 32, 64)
    shifted = torch.roll(x, shifts=17, dims=-1)
    torch.testing.assert_close(conv(shifted), torch.roll(conv(x), shifts=17, dims=-1), atol=1e-5, rtol=1e-5)


def test_datacube_shapes_and_checkpointing():
    torch.manual_seed(0)
    cube = torch.randn(3, 2, 10, 32, 64)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        enc = DatacubeEncoder(DatacubeConfig(base_channels=8, depth=2, d_model=32, n_layers=1, n_heads=2,
                                             activation_checkpointing=ckpt))
        pooled, tokens = enc(cube)
        assert pooled.shape == (3, 32) and tokens.shape == (3, 1 + enc.n_patches, 32)
        pooled.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in enc.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="datacube shape"):
        enc(torch.randn(3, 2, 10, 16, 64))


def test_graph_vae_losses_and_pooling():
    torch.manual_seed(0)
    vae = GraphVAE(GraphVAEConfig())
    graphs = [Data(x=torch.randn(n, 64), edge_index=torch.randint(0, n, (2, 2 * n))) for n in (5, 9)]
    batch = Batch.from_data_list(graphs)
    emb, losses = vae(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    assert emb.shape == (2, 16)
    assert set(losses) == {"edge", "node", "kl"} and all(torch.isfinite(v) for v in losses.values())
    vae.eval()
    assert 0.0 <= vae.edge_auc(batch.x, batch.edge_index) <= 1.0
