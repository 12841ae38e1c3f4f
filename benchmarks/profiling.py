"""What ran in a piece of work: the backend of torch's scaled_dot_product_attention and the busiest
kernels, from torch.profiler (CUDA kernels on CUDA, aten operators on CPU).

torch picks the attention backend at run time (flash, memory-efficient, cuDNN or math on CUDA;
flash or math on CPU) from the dtypes, head dims, mask and dropout, and each backend is its own
aten operator, so the operators recorded during the work name it.
"""

from typing import Callable, Iterable, List, Sequence

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity

# the aten operator of each backend of F.scaled_dot_product_attention
SDPA_OPERATORS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash_cpu",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}
# Mega's blocked softmax kernel for CPU (mega_fairseq/modules/attention.py), which calls no SDPA
BLOCKED_CPU_KERNEL = "_SoftmaxAttentionBlocks"
NO_SDPA = "none"


def sdpa_backend(operators: Iterable[str]) -> str:
    """The SDPA backends among profiled operator names, sorted and joined by "+" when several
    ran; "none" when no SDPA ran, "none (blocked CPU kernel)" when Mega's CPU kernel did instead."""
    operators = set(operators)
    backends = sorted({SDPA_OPERATORS[name] for name in operators if name in SDPA_OPERATORS})
    if backends:
        return "+".join(backends)
    return f"{NO_SDPA} (blocked CPU kernel)" if BLOCKED_CPU_KERNEL in operators else NO_SDPA


def busiest(events: Sequence, device: str, top: int = 5) -> List[list]:
    """[name, share of the time] of the ``top`` busiest kernels of profiler ``events``
    (``key_averages()``): on CUDA the device kernels by their own device time, on CPU the aten
    operators by their own CPU time; shares are of the total over those kernels or operators."""
    if device == "cuda":
        timed = [(event.key, event.self_device_time_total) for event in events if event.device_type == DeviceType.CUDA]
    else:
        timed = [(event.key, event.self_cpu_time_total) for event in events if event.key.startswith("aten::")]
    total = sum(time for _, time in timed)
    timed.sort(key=lambda item: -item[1])
    return [[name, time / total if total else 0.0] for name, time in timed[:top]]


def profile(work: Callable[[], object], device: str, top: int = 5) -> dict:
    """Runs ``work()`` once under torch.profiler: {"sdpa_backend": see :func:`sdpa_backend`,
    "kernels": see :func:`busiest`}. Untimed: the profiler slows the work down."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch.profiler.profile(activities=activities) as profiler:
        work()
        if device == "cuda":
            torch.cuda.synchronize()
    events = profiler.key_averages()
    return {"sdpa_backend": sdpa_backend(event.key for event in events), "kernels": busiest(events, device, top)}


def sdpa_backend_of(work: Callable[[], object]) -> str:
    """The SDPA backend that ``work()`` runs (see :func:`sdpa_backend`), from the operators alone
    (recorded where they are called, whatever the device): cheaper than :func:`profile` on CUDA,
    which traces the kernels too."""
    with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as profiler:
        work()
    return sdpa_backend(event.key for event in profiler.key_averages())
