"""ImageNet class lists: which ImageNet-1k classes a subset such as ImageNet-100 holds, and how many images it has.

A list file holds one WordNet id a line (label = its place among them) and ``# key: value`` header lines:
``source`` (where the list was published), ``train_images`` and ``val_images`` (the image counts of a full copy,
checked against the folders a run reads). Shipped lists are named (``data.class_list=cmc``); any other file is
given by its path and works the same way (without count headers its counts are recorded, not checked).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LISTS_DIR = Path(__file__).with_name("class_lists")

# Named lists shipped in class_lists/.
SHIPPED = {"cmc": "imagenet100_cmc.txt"}

# Lists known by name whose wnids are not public: what to do instead. AIST's ImageNet-100 (the subset its FDSL
# fine-tuning scripts untar from a private imnet100.tar) is not the CMC list; its wnids are not published anywhere
# we could find, so no list is shipped for it and none is guessed.
UNPUBLISHED = {
    "aist": "AIST's ImageNet-100 class list (reported: 128,585 training / 5,000 validation images) is not public, so "
    "it is not shipped; put its wnids in a file, one a line, with '# train_images: 128585' and '# val_images: 5000' "
    "header lines, and pass data.class_list=PATH_TO_FILE",
}

_WNID = re.compile(r"n\d{8}")
_HEADER = re.compile(r"#\s*([a-z_]+)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class ClassList:
    """A parsed class list: `name` is the shipped name or the file path as given."""

    name: str
    path: Path
    wnids: tuple[str, ...]
    source: str | None = None
    train_images: int | None = None  # a full copy's counts (None: not stated, not checked)
    val_images: int | None = None

    def expected(self, split: str) -> int | None:
        return self.train_images if split == "train" else self.val_images

    def record(self) -> dict[str, Any]:
        """What a run records of the list: its name, where it was published, a digest of its wnids and the wnids."""
        return {
            "name": self.name, "source": self.source,
            "wnids_sha256": hashlib.sha256("\n".join(self.wnids).encode()).hexdigest(),
            "expected_images": {"train": self.train_images, "val": self.val_images}, "wnids": list(self.wnids),
        }  # fmt: skip


def load_class_list(spec: str | Path) -> ClassList:
    """The class list named `spec` (``cmc``) or read from the file at path `spec`.

    Raises:
        ValueError: the name is unknown or its list is not public, the file is missing, or it holds something other
            than unique WordNet ids (``n`` and 8 digits) and ``# key: value`` headers.
    """
    text = str(spec)
    if text in UNPUBLISHED:
        raise ValueError(f"data.class_list={text}: {UNPUBLISHED[text]}")
    path = LISTS_DIR / SHIPPED[text] if text in SHIPPED else Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"data.class_list={text}: no such list; use one of {', '.join(SHIPPED)} or the path of a "
                         "file of wnids, one a line")  # fmt: skip
    headers: dict[str, str] = {}
    wnids: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _HEADER.fullmatch(line)
            if match:
                headers[match[1]] = match[2]
            continue
        wnid = line.split()[0]
        if not _WNID.fullmatch(wnid):
            raise ValueError(f"class list {path} line {number}: {wnid!r} is not a WordNet id (n and 8 digits)")
        wnids.append(wnid)
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if not wnids or repeated:
        problem = f"repeats {' '.join(repeated)}" if repeated else "holds no wnids"
        raise ValueError(f"class list {path} {problem}; give each class once, one wnid a line")
    return ClassList(text, path, tuple(wnids), headers.get("source"), _count(headers, "train_images", path),
                     _count(headers, "val_images", path))  # fmt: skip


def _count(headers: dict[str, str], key: str, path: Path) -> int | None:
    value = headers.get(key)
    if value is None:
        return None
    digits = value.replace(",", "").replace("_", "")
    if not digits.isdigit():
        raise ValueError(f"class list {path}: header {key}: {value!r} is not a whole number")
    return int(digits)
