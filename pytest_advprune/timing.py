"""Inference latency of base and pruned models, measured by pytest-benchmark's ``benchmark`` fixture."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from pytest_advprune.session import AdvPruneSession
    from pytest_advprune.specs import VariantSpec

WARMUP_ROUNDS = 3


def device_description(device: torch.device) -> dict[str, Any]:
    """What ran the timings: device, GPU model, torch and CUDA versions (for extra_info and machine info)."""
    import torch

    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,  # type: ignore[no-untyped-call]
    }


def timing_batch(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``batch_size`` evaluation images, cycling through them when there are fewer."""
    repeats = -(-batch_size // len(images))
    return images.repeat(repeats, *([1] * (images.dim() - 1)))[:batch_size]


def time_inference(benchmark: Any, session: AdvPruneSession, variant: VariantSpec) -> float | None:
    """Time one forward pass over a batch of evaluation images; returns the median in seconds (None when
    pytest-benchmark is disabled, as it is under xdist).

    Runs under ``torch.inference_mode`` with the session's fixed CPU thread count, after warm-up rounds;
    on CUDA every call ends with ``torch.cuda.synchronize``, so the time covers the kernels and not only
    their launch.
    """
    import torch

    from pytest_advprune.evaluation import normalize

    settings = session.settings
    base = session.base_model(variant.model)
    model = base if variant.pruning is None else session.pruned_model(variant.model, variant.pruning)
    dtype = getattr(torch, settings.dtype)
    module = model.module if dtype == torch.float32 else copy.deepcopy(model.module).to(dtype)
    images = session.eval_set(base.entry.dataset).images
    batch = normalize(timing_batch(images, variant.batch_size), base.entry.normalization).to(dtype)
    device = session.device
    on_cuda = device.type == "cuda"

    def forward() -> None:
        module(batch)
        if on_cuda:
            torch.cuda.synchronize(device)

    benchmark.group = f"{variant.model} inference, batch {variant.batch_size}"
    benchmark.extra_info.update(
        {
            "model": variant.model,
            "pruning": variant.pruning_id,
            "pruning_method": variant.pruning.name if variant.pruning else None,
            "amount": variant.pruning.amount if variant.pruning else 0.0,
            "batch_size": variant.batch_size,
            "dtype": settings.dtype,
            "threads": settings.threads,
            "parameters": model.size.parameters,
            "nonzero_parameters": model.size.nonzero_parameters,
            "macs": model.size.macs,
            **device_description(device),
        }
    )
    module.eval()
    with session.threads(), torch.inference_mode():
        benchmark.pedantic(forward, rounds=settings.timing_rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else None
