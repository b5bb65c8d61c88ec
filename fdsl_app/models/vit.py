"""Small-image ViT variants registered into timm, so ``timm.create_model`` builds them like any other model.

timm's own ViTs are sized for 224 px (patch 16: a 2x2 grid at 32 px). FDSL pre-training at 32-64 px needs a
smaller patch to keep a useful token grid, which is all these variants change; the network is timm's
``VisionTransformer`` unchanged, so timm's kwargs (``num_classes``, ``drop_path_rate``, ``img_size``,
``in_chans``, ...) and its checkpoint helpers apply. None of them has published weights: ``pretrained=True``
has nothing to load (``create_network`` refuses it).

Importing :mod:`fdsl_app.models` registers them.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

__all__ = ["SMALL_VIT_VARIANTS"]


def _cfg(img_size: int) -> dict[str, Any]:
    # Data defaults follow the FDSL recipes (mean = std = 0.5, bicubic); no url: these variants have no weights.
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, img_size, img_size),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "mit",
    }


# timm's register_model reads the calling module's ``default_cfgs`` at decoration time, so this comes first.
default_cfgs = generate_default_cfgs(
    {
        "vit_nano_patch4_32": _cfg(32),
        "vit_tiny_patch4_32": _cfg(32),
        "vit_tiny_patch8_64": _cfg(64),
    }
)

SMALL_VIT_VARIANTS: dict[str, dict[str, int]] = {
    "vit_nano_patch4_32": {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2},
    "vit_tiny_patch4_32": {"img_size": 32, "patch_size": 4, "embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_tiny_patch8_64": {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 12, "num_heads": 3},
}
"""Architecture of each registered variant; keyword arguments given to ``timm.create_model`` override them."""


def _create(variant: str, pretrained: bool, **kwargs: Any) -> VisionTransformer:
    model_args = {**SMALL_VIT_VARIANTS[variant], **kwargs}
    return build_model_with_cfg(
        VisionTransformer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,  # timm's: resizes position embeddings of loaded weights
        feature_cfg={"out_indices": 3, "feature_cls": "getter"},
        **model_args,
    )


@register_model
def vit_nano_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Nano/4 at 32 px (embed 64, depth 2, heads 2): a test model that trains in seconds on a CPU."""
    return _create("vit_nano_patch4_32", pretrained, **kwargs)


@register_model
def vit_tiny_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Tiny/4 at 32 px (DeiT-Tiny: embed 192, depth 12, heads 3; an 8x8 token grid)."""
    return _create("vit_tiny_patch4_32", pretrained, **kwargs)


@register_model
def vit_tiny_patch8_64(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Tiny/8 at 64 px (DeiT-Tiny: embed 192, depth 12, heads 3; an 8x8 token grid)."""
    return _create("vit_tiny_patch8_64", pretrained, **kwargs)
