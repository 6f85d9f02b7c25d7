"""How kept CLIP tokens reach the LLM in the video path."""

import pytest
import torch
import torch.nn.functional as F

from video.layout import layout_frame_tokens, masked_cell_pool, regrid_pool


def test_cells_with_every_token_equals_videoglamm_pooling():
    feats = torch.randn(3, 576, 8)
    indices = torch.stack([torch.randperm(576) for _ in range(3)])
    shuffled = torch.gather(feats, 1, indices.unsqueeze(-1).expand(-1, -1, 8))
    pooled = masked_cell_pool(indices, shuffled, (24, 24), 2)
    reference = F.adaptive_avg_pool2d(feats.transpose(1, 2).reshape(3, 8, 24, 24), 12).flatten(2).transpose(1, 2)
    for f in range(3):
        torch.testing.assert_close(pooled[f], reference[f])


def test_cells_average_only_kept_tokens_per_touched_cell():
    feats = torch.arange(6 * 2, dtype=torch.float32).view(1, 6, 2)
    indices = torch.tensor([[0, 1, 24, 2, 100, 101]])  # cell 0 gets 3 tokens, cell 1 one, cell (2,2) two
    pooled = masked_cell_pool(indices, feats, (24, 24), 2)[0]
    assert pooled.shape == (3, 2)
    torch.testing.assert_close(pooled[0], feats[0, [0, 1, 2]].mean(0))
    torch.testing.assert_close(pooled[1], feats[0, 3])
    torch.testing.assert_close(pooled[2], feats[0, [4, 5]].mean(0))


def test_regrid_and_unpooled():
    indices = torch.stack([torch.randperm(576)[:196] for _ in range(2)])
    feats = torch.randn(2, 196, 4)
    out = regrid_pool(indices, feats, 12)
    assert out.shape == (2, 144, 4)
    with pytest.raises(ValueError, match="square budget"):
        regrid_pool(indices[:, :195], feats[:, :195], 12)
    flat = layout_frame_tokens("unpooled", indices, feats, (24, 24))
    order = torch.argsort(indices[0])
    torch.testing.assert_close(flat[0], feats[0, order])
    with pytest.raises(ValueError, match="unknown layout"):
        layout_frame_tokens("zigzag", indices, feats, (24, 24))
