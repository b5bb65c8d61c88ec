"""Pre-train -> fine-tune weight transfer: load a checkpoint's backbone into a network for a new task.

:func:`load_pretrained` reads a Lightning checkpoint of :class:`~fdsl_app.models.module.ClassifierModule` (the
network's weights under ``state_dict`` with the ``net.`` prefix) or a plain state dict (also timm/DeiT's
``{"model": ...}`` and ``{"state_dict": ...}`` files), drops the classifier head, resizes position embeddings
to the new token grid, skips tensors whose shape does not fit, and reports what it did.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

log = logging.getLogger(__name__)

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor.

    Attributes:
        loaded: model keys given the checkpoint's values (resized ones included).
        skipped: checkpoint keys not loaded, with the reason.
        missing: model keys the checkpoint did not provide (the new head, at least): they keep their init.
        resized: loaded keys that were resampled to the model's shape (position embeddings).
    """

    loaded: list[str]
    skipped: dict[str, str]
    missing: list[str]
    resized: list[str] = field(default_factory=list)


def load_pretrained(
    net: nn.Module,
    path: str | Path,
    *,
    report: Callable[[str], object] | None = None,
    ema: bool = False,
) -> LoadReport:
    """Load a pre-trained checkpoint's weights into `net`, except its classifier head.

    Args:
        net: the network to fine-tune (a timm model for the new number of classes and image size).
        path: a Lightning checkpoint of ``ClassifierModule`` or a file holding a plain state dict.
        report: where the one-line-per-category summary goes (e.g. ``print``); default: this module's logger.
        ema: load the checkpoint's EMA weights (``ema.module.*``) instead of the live ones.

    Returns:
        Which keys were loaded, skipped (with reasons), missing and resized.

    Raises:
        ValueError: `path` is not a checkpoint, has no (EMA) state dict, or none of its tensors fits `net`.
    """
    checkpoint = _read(Path(path))
    state = _extract_state_dict(checkpoint, path, ema=ema)
    target = net.state_dict()
    head = _classifier_prefixes(net)
    loadable: dict[str, Tensor] = {}
    skipped: dict[str, str] = {}
    resized: list[str] = []
    for key, value in state.items():
        if _in_head(key, head):
            skipped[key] = "classifier head: the new task's head keeps its init"
        elif key not in target:
            skipped[key] = "not in the model"
        elif value.shape != target[key].shape and key.endswith("pos_embed"):
            value, reason = _resize_pos_embed(net, value, target[key])
            if reason:
                skipped[key] = reason
                continue
            loadable[key] = value
            resized.append(key)
        elif value.shape != target[key].shape:
            skipped[key] = f"shape {_shape(value)} != model {_shape(target[key])}"
        else:
            loadable[key] = value
    if not loadable:
        raise ValueError(_no_fit_message(net, path, checkpoint, skipped))
    result = net.load_state_dict(loadable, strict=False)
    out = LoadReport(loaded=sorted(loadable), skipped=skipped, missing=sorted(result.missing_keys), resized=resized)
    _report(out, path, report or log.info, head)
    return out


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"{path} is not a checkpoint: no such file")
    try:
        # weights_only: a checkpoint from elsewhere must not run code; Lightning's own files load this way.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's weights-only unpickler fails on arbitrary bytes with arbitrary errors
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a checkpoint torch.load can read safely: {detail}") from None


def _extract_state_dict(checkpoint: Any, path: str | Path, *, ema: bool) -> dict[str, Tensor]:
    """The network's tensors, keyed as in the network (prefixes of the Lightning module and wrappers removed)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} is not a checkpoint: it holds a {type(checkpoint).__name__}, not a state dict")
    state = {k: v for k, v in _network_state(checkpoint, ema).items() if isinstance(k, str) and isinstance(v, Tensor)}
    for wrapper in _WRAPPER_PREFIXES:
        if state and all(k.startswith(wrapper) for k in state):
            state = {k.removeprefix(wrapper): v for k, v in state.items()}
    if not state:
        what = "EMA weights (was it trained with optim.ema_decay?)" if ema else "state dict of tensors"
        raise ValueError(f"{path} is not a checkpoint with a {what}")
    return state


def _network_state(checkpoint: Mapping[str, Any], ema: bool) -> Mapping[str, Any]:
    if ema:  # timm and DeiT files keep the EMA network in a container of its own
        found = next(
            (checkpoint[k] for k in ("state_dict_ema", "model_ema") if isinstance(checkpoint.get(k), Mapping)), None
        )
        if found is not None:
            return found
    containers = ("state_dict", "model", "module")
    state = next((checkpoint[k] for k in containers if isinstance(checkpoint.get(k), Mapping)), checkpoint)
    # A Lightning checkpoint of ClassifierModule holds the network under net. and its EMA under ema.module.
    prefix = "ema.module." if ema else "net."
    if ema or any(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k.removeprefix(prefix): v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    return state


def _classifier_prefixes(net: nn.Module) -> tuple[str, ...]:
    """Module names of the classifier head(s): timm's pretrained_cfg, else the module get_classifier() returns."""
    cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
    names = cfg.get("classifier")
    if names:
        return (names,) if isinstance(names, str) else tuple(names)
    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        found = tuple(name for name, module in net.named_modules() if module is head and name)
        if found:
            return found
    return ("head",)


def _resize_pos_embed(net: nn.Module, value: Tensor, target: Tensor) -> tuple[Tensor, str]:
    """`value` resampled to the model's token grid, or an empty tensor and the reason it cannot be."""
    if value.ndim != 3 or value.shape[-1] != target.shape[-1]:
        return value, f"shape {_shape(value)} != model {_shape(target)} (embedding widths differ)"
    # timm ViTs without embed_class keep no position embedding for the prefix (class/register) tokens.
    prefix = 0 if getattr(net, "no_embed_class", False) else int(getattr(net, "num_prefix_tokens", 1))
    old_side = math.isqrt(value.shape[1] - prefix)
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if old_side * old_side != value.shape[1] - prefix or grid is None:
        return value, f"shape {_shape(value)} != model {_shape(target)} (not a square token grid to resample)"
    new = resample_abs_pos_embed(value, new_size=list(grid), old_size=[old_side, old_side], num_prefix_tokens=prefix)
    if new.shape != target.shape:
        return value, f"shape {_shape(value)} != model {_shape(target)} (prefix tokens differ)"
    return new, ""


def _no_fit_message(net: nn.Module, path: str | Path, checkpoint: Any, skipped: dict[str, str]) -> str:
    cfg = getattr(net, "pretrained_cfg", None) or {}
    name = cfg.get("architecture") or type(net).__name__
    source = checkpoint.get("net_architecture") if isinstance(checkpoint, Mapping) else None
    trained = f" (trained as {source})" if source else ""
    example = next((f"; e.g. {k}: {r}" for k, r in skipped.items() if "head" not in r), "")
    return f"checkpoint {path}{trained} does not fit model {name}: none of its {len(skipped)} tensors loads{example}"


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def _summarise(keys: list[str] | dict[str, str]) -> str:
    """Keys with block indices folded (``blocks.*.attn.qkv.weight x12``), so a line stays readable."""
    counts: dict[str, int] = {}
    for key in keys:
        pattern = re.sub(r"\.\d+\.", ".*.", key)
        counts[pattern] = counts.get(pattern, 0) + 1
    return ", ".join(p if n == 1 else f"{p} x{n}" for p, n in counts.items())


def _in_head(key: str, head: tuple[str, ...]) -> bool:
    return any(key == h or key.startswith(h + ".") for h in head)


def _report(out: LoadReport, path: str | Path, emit: Callable[[str], object], head: tuple[str, ...]) -> None:
    emit(f"init_from {path}: loaded {len(out.loaded)} tensors: {_summarise(out.loaded)}")
    if out.resized:
        emit(f"init_from {path}: resized {len(out.resized)} to the model's token grid: {', '.join(out.resized)}")
    if out.skipped:
        reasons: dict[str, list[str]] = {}
        for key, reason in out.skipped.items():
            reasons.setdefault(reason, []).append(key)
        groups = "; ".join(f"{_summarise(keys)} ({reason})" for reason, keys in reasons.items())
        emit(f"init_from {path}: skipped {len(out.skipped)}: {groups}")
    if out.missing:
        emit(f"init_from {path}: {len(out.missing)} model tensors keep their init: {_summarise(out.missing)}")
    backbone = [k for k in out.missing if not _in_head(k, head)]
    if backbone:
        log.warning(
            "init_from %s: %d backbone tensors keep their init (absent from the checkpoint or of another shape): %s",
            path,
            len(backbone),
            _summarise(backbone),
        )
