"""GLaMM architectures (full and uniformly scaled) and random-weight construction for benchmarks.

The speed of a forward pass does not depend on weight values, so benchmarks build the real
architecture with random weights: no download, same shapes, same token counts.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..clip import random_clip_towers
from ..lvlm import LVLMArchitecture, scaled_depth, scaled_width
from ..sam import GroundingEncoder, SamArchitecture
from .model import GLaMM, GLaMMConfig

__all__ = ["GLaMMArchitecture", "build_random_segmenter"]


@dataclass(frozen=True)
class GLaMMArchitecture(LVLMArchitecture):
    """Every shape that decides GLaMM: CLIP towers, LLaMA-7B (the shared defaults), SAM.
    ``full()`` is the released model."""

    llm_vocab: int = 32007
    sam: SamArchitecture = SamArchitecture()

    @classmethod
    def full(cls) -> "GLaMMArchitecture":
        """CLIP ViT-L/14-336 + LLaMA-7B + SAM ViT-H (FACTS §2)."""
        return cls()

    def scaled(self, width: float, depth: float) -> "GLaMMArchitecture":
        """Every component's widths times ``width`` and depths times ``depth`` (head widths kept);
        token counts (576 visual, 1024 px SAM input) are unchanged."""
        sw, sh = scaled_width(self.sam.vision_width, width, self.sam.vision_width // self.sam.vision_heads)
        sam_depth = scaled_depth(self.sam.vision_depth, depth)
        period = self.sam.vision_depth // len(self.sam.global_attn_indexes)
        globals_ = tuple(i for i in range(sam_depth) if (i + 1) % period == 0) or (sam_depth - 1,)
        embed = max(16, round(self.sam.embed_dim * width / 8) * 8)
        sam = replace(
            self.sam, vision_width=sw, vision_heads=sh, vision_mlp_dim=4 * sw, vision_depth=sam_depth,
            global_attn_indexes=globals_, embed_dim=embed, decoder_mlp_dim=max(32, round(self.sam.decoder_mlp_dim * width)),
            iou_head_hidden_dim=embed,
        )
        return replace(self, **self.scaled_shared_fields(width, depth), sam=sam)

    def describe(self) -> dict:
        d = asdict(self)
        d["sam"] = asdict(self.sam)
        return d


def build_random_segmenter(arch: GLaMMArchitecture, device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
                           attn_implementation: str | None = None):
    """A ``GLaMMSegmenter`` over random weights of ``arch`` (tokenizer: the tiny offline one)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..lvlm import pick_attn_implementation
    from ..tokenizer import ReleasedLlamaTokenizer
    from ..tokenizer_files import write_llama_tokenizer
    from .segmenter import GLaMMSegmenter

    torch.manual_seed(seed)
    llm_cfg = LlamaConfig(vocab_size=arch.llm_vocab, hidden_size=arch.llm_width, intermediate_size=arch.llm_mlp,
                          num_hidden_layers=arch.llm_layers, num_attention_heads=arch.llm_heads, num_key_value_heads=arch.llm_heads)
    llm_cfg._attn_implementation = pick_attn_implementation(device, attn_implementation)
    with torch.device(device):
        llm = LlamaForCausalLM(llm_cfg)
        projector = nn.Sequential(nn.Linear(arch.clip_width, arch.llm_width), nn.GELU(), nn.Linear(arch.llm_width, arch.llm_width))
        fcs = nn.Sequential(nn.Linear(arch.llm_width, arch.llm_width), nn.ReLU(inplace=True), nn.Linear(arch.llm_width, arch.sam.embed_dim))
        grounding = GroundingEncoder(arch.sam.to_sam_config())
    parts = [m.to(dtype).eval().requires_grad_(False) for m in (llm, projector, fcs, grounding)]
    model = GLaMM(*parts, config=GLaMMConfig(llm_fields={}))
    clip = random_clip_towers(arch, device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        write_llama_tokenizer(Path(tmp))
        tokenizer = ReleasedLlamaTokenizer.from_pretrained(tmp)
    return GLaMMSegmenter(model, clip, tokenizer, device, dtype)
