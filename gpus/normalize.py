"""Turn free-form GPU descriptions ("NVIDIA H100 80GB HBM3", "GeForce RTX 4090") into a model name."""

import re

# Longest names first, so "H100 NVL" wins over "H100" and "RTX 4090 D" over "RTX 4090".
_KNOWN = [
    "GH200", "GB200", "B200", "B100", "H200", "H100 NVL", "H100", "H800", "H20", "A100", "A800", "A40", "A30",
    "A10G", "A10", "A16", "A2", "L40S", "L40", "L20", "L4", "V100", "T4", "P100", "P40", "MI300X", "MI250X",
    "MI210", "RTX 6000 ADA", "RTX A6000", "RTX A5000", "RTX A4000", "RTX 5090", "RTX 4090 D", "RTX 4090",
    "RTX 4080", "RTX 4070 TI", "RTX 4070", "RTX 3090 TI", "RTX 3090", "RTX 3080", "RTX 3070", "RTX 3060",
]  # fmt: skip
_PATTERNS = [(name, re.compile(r"(?<![A-Z0-9])" + re.escape(name).replace(r"\ ", r"[\s-]*") + r"(?![A-Z0-9])"))
             for name in sorted(_KNOWN, key=len, reverse=True)]  # fmt: skip
_NOISE = re.compile(r"\b(NVIDIA|GEFORCE|TESLA|QUADRO|AMD|INSTINCT|RADEON|PCIE|SXM\d?|HBM\d?E?|\d+\s*GB)\b")


def normalize_gpu_model(text: str) -> str:
    """The marketplace's name for a GPU model; unknown models keep their cleaned-up description."""
    upper = text.upper()
    for name, pattern in _PATTERNS:
        if pattern.search(upper):
            return name
    cleaned = " ".join(_NOISE.sub(" ", upper).split())
    return cleaned[:64]
