"""GPUs' datasheet peaks, what a measured rate is a fraction of, and the fractions the suite aims
for on a GPU (`make gpu-check`, `bench perf --device cuda`)."""

from __future__ import annotations

import re

BF16_DENSE_TFLOPS = {
    # NVIDIA datasheets, dense (no sparsity) bf16 tensor-core peak. A key matches the device name as a
    # whole word ("A10" is not in "A100-SXM4", "A40" not in "RTX A4000"); the longest match wins.
    "GH200": 989.0, "H200": 989.0, "H200 NVL": 835.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
    "H100": 989.0,  # H100 SXM: "NVIDIA H100 80GB HBM3"
    "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "A40": 150.0, "A30": 165.0,
    "A10": 125.0, "L4": 121.0, "RTX 6000 Ada": 364.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "A6000": 155.0,
}


def bf16_peak_tflops(name: str) -> float | None:
    """The datasheet's dense bf16 peak of the GPU that `torch.cuda.get_device_name` calls `name`."""
    for key in sorted(BF16_DENSE_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, flags=re.IGNORECASE):
            return BF16_DENSE_TFLOPS[key]
    return None


def hours_at_peak(pflop: float, peak_tflops: float) -> float:
    """The hours `pflop` PFLOP of work take at `peak_tflops` TFLOP/s: its compute floor on that GPU."""
    return pflop * 1e15 / (peak_tflops * 1e12) / 3600


HEADLINE_FRACTION_OF_BF16_PEAK = 0.40
"""The headline training step (the spec's 96-band, hop x1 input at its lowest sample rate: VGG at 96
x 1366 in the paper's grid) at this share of the GPU's dense bf16 peak, or more."""

PROJECTED_FRACTION_OF_BF16_PEAK = hours_at_peak(3778, 989) / 3  # 0.3537
"""A whole grid's work over its projected hours at this share of the dense bf16 peak, or more:
`paper-mtat-vgg`'s 3,778 PFLOP (1.06 hours at an H100's 989 TFLOP/s) in 3 H100-hours."""
