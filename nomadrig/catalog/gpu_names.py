"""GPU model names as people and clouds write them, reduced to one comparable key.

Team files say "RTX 4090", nvidia-smi says "NVIDIA GeForce RTX 4090", GCP says
"nvidia-tesla-t4": the catalog must resolve all of them to the same row.
"""

from __future__ import annotations

import re

# Words that vendors and clouds add around the model name but that never tell models apart.
_NOISE = ("nvidia", "geforce", "tesla", "quadro")
# The unqualified "A100" is the 40 GB part on both clouds (AWS p4d, GCP nvidia-tesla-a100).
_ALIASES = {"a100": "a10040gb"}


def gpu_key(name: str) -> str:
    """Reduce a GPU name to lowercase letters and digits without vendor words.

    >>> gpu_key("NVIDIA GeForce RTX 4090") == gpu_key("rtx4090") == gpu_key("RTX 4090")
    True
    """
    key = name.lower()
    for word in _NOISE:
        key = key.replace(word, " ")
    key = re.sub(r"[^a-z0-9]", "", key)
    return _ALIASES.get(key, key)



def gpu_keys(model: str, vram_gb: float) -> tuple[str, str]:
    """The keys a catalog model answers to: its name, and its name plus memory size.

    Cloud ids append the memory to the model ("nvidia-h100-80gb", "nvidia-a100-80gb"),
    so "H100" with 80 GB also answers to "h10080gb".
    """
    key = gpu_key(model)
    return key, f"{key}{int(vram_gb)}gb"
