"""Inference latency of base and pruned models, measured by pytest-benchmark's ``benchmark`` fixture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_advprune.session import AdvPruneSession
    from pytest_advprune.specs import VariantSpec

WARMUP_ROUNDS = 3


def time_inference(benchmark: Any, session: AdvPruneSession, variant: VariantSpec) -> float | None:
    """Time one forward pass over a batch of evaluation images; returns the median in seconds (None when
    pytest-benchmark is disabled, as it is under xdist).

    Runs under ``torch.inference_mode`` with the session's fixed CPU thread count; on CUDA each call
    synchronizes, so the time covers the kernels and not only their launch.
    """
    import torch

    from pytest_advprune.evaluation import normalize

    settings = session.settings
    base = session.base_model(variant.model)
    module = base.module if variant.pruning is None else session.pruned_model(variant.model, variant.pruning).module
    size = base.size if variant.pruning is None else session.pruned_model(variant.model, variant.pruning).size
    images = session.eval_set(base.entry.dataset).images
    repeats = -(-settings.timing_batch_size // len(images))
    batch = normalize(
        images.repeat(repeats, *([1] * (images.dim() - 1)))[: settings.timing_batch_size], base.entry.normalization
    )
    device = session.device
    on_cuda = device.type == "cuda"

    def forward() -> None:
        module(batch)
        if on_cuda:
            torch.cuda.synchronize(device)

    benchmark.group = f"{variant.model} inference"
    benchmark.extra_info.update(
        {
            "model": variant.model,
            "pruning": variant.pruning.id if variant.pruning else "base",
            "pruning_method": variant.pruning.name if variant.pruning else None,
            "amount": variant.pruning.amount if variant.pruning else 0.0,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "batch_size": settings.timing_batch_size,
            "threads": settings.threads,
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda,
            "parameters": size.parameters,
            "nonzero_parameters": size.nonzero_parameters,
            "macs": size.macs,
        }
    )
    module.eval()
    with session.threads(), torch.inference_mode():
        benchmark.pedantic(forward, rounds=settings.timing_rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else None
