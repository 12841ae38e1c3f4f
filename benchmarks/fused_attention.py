"""Fused softmax attention (the dispatch of CUDA: torch's scaled_dot_product_attention) with the
masks it passes now against the explicit B x ... x Q x K mask it passed before, per shape: memory
kept for the backward pass, the bias gradient of the memory-efficient backward, and time.

    python -m benchmarks.fused_attention                       # on cuda when available, else cpu
    python -m benchmarks.fused_attention --device cpu --json fused.json

Each shape is one Mega attention block (``MovingAverageGatedAttention``, LRA Text's sizes by
default) on a B x L x d input with a padding mask, run on the fused dispatch on every device
(on CPU too, where the model otherwise takes its blocked kernel), twice:

- ``explicit``: ``mask_mode="explicit"``, the mask where(visible, bias, -inf) of B x nc x c x c;
- ``fused``: the default; the causal mask folded into the c x c bias, key padding as a column
  of q and k, dropped by a right-padded causal block (a decoder).

Measured per path: ``kept_mb``, the tensors kept for the backward pass of one forward
(``torch.autograd.graph.saved_tensors_hooks``, parameters left out), where SDPA counts what its
memory-efficient CUDA kernel keeps (query, key, value, mask, output and the float32 row
log-sum-exp; ``SdpaRecorder``); ``bias_grad_mb``, the largest bias gradient that kernel's
backward allocates (the mask broadcast to B x H x Q x K, keys rounded up to 16, when it requires
grad; read from the kernel's source); ``ms``, forward + backward with the real SDPA (best of
``--repeats``; on CPU SDPA runs its math kernel, which holds the scores, so shapes whose scores
pass ``--max-timed-scores`` are not timed there); on CUDA also ``peak_mb``, the allocator's peak
during forward + backward over what was allocated before. Ratios are explicit / fused.

``compare(shapes, device, repeats)`` returns the rows, ``format_table(rows)`` the markdown table.
"""

import argparse
import json
import math
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from mega_fairseq.modules import MegaLayerConfig, attention
from mega_fairseq.modules.gated_attention import MovingAverageGatedAttention

SIZES = dict(embed_dim=128, z_dim=64, hidden_dim=256, n_dim=16)  # mega_lra_text


class Shape(NamedTuple):
    name: str
    batch: int
    length: int
    chunk: int  # -1: full attention
    causal: bool
    padding: str  # "right" or "left"


SHAPES = [
    Shape("lra_text", 25, 4000, -1, False, "right"),
    Shape("lra_text_chunk", 25, 4000, 128, False, "right"),
    Shape("encoder_1k", 8, 1024, -1, False, "right"),
    Shape("lm_decoder_2k", 4, 2048, -1, True, "right"),
    Shape("lm_decoder_chunk", 4, 8192, 1024, True, "right"),
    Shape("mt_decoder_left_pad", 32, 256, -1, True, "left"),
]
PATHS = ("explicit", "fused")
_SDPA = F.scaled_dot_product_attention


class SdpaRecorder:
    """Stands in for F.scaled_dot_product_attention and records, per call, the bytes its
    memory-efficient CUDA kernel keeps for the backward pass and the bias gradient its backward
    allocates; with ``compute=False`` it returns zeros (that require grad) instead of attending."""

    def __init__(self, compute: bool, z_dim: int):
        self.compute, self.z_dim = compute, z_dim
        self.kept: List[Tensor] = []
        self.extra_bytes = 0  # the log-sum-exp, which this stand-in does not create
        self.bias_grad_bytes = 0
        self.masks: List[str] = []

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None, **kwargs) -> Tensor:
        if self.compute:
            with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):  # not the math kernel's
                out = _SDPA(q, k, v, attn_mask=attn_mask, **kwargs)
        else:
            out = v.new_zeros(*q.shape[:-1], v.size(-1)).requires_grad_(q.requires_grad)
        entries, rows = math.prod(q.shape[:-2]), q.size(-2)
        self.kept += [t for t in (q, k, v, attn_mask, out) if t is not None]
        self.extra_bytes += entries * rows * 4
        if attn_mask is not None and attn_mask.requires_grad:
            keys = -(-k.size(-2) // 16) * 16
            self.bias_grad_bytes = max(self.bias_grad_bytes, entries * rows * keys * attn_mask.element_size())
        self.masks.append(self.describe(q, attn_mask))
        return out

    def describe(self, q: Tensor, mask: Optional[Tensor]) -> str:
        """What reached SDPA: the c x c bias alone, with the padding feature, or a B x ... mask."""
        if mask is not None and mask.dim() > 2:
            return "explicit"
        return "bias" if q.size(-1) == self.z_dim else "bias + feature"


def storage_key(tensor: Tensor):
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def kept_bytes(saved: List[Tensor], recorder: SdpaRecorder, parameters: List[Tensor]) -> int:
    """Bytes of the distinct storages kept for the backward pass, parameters left out."""
    skip = {storage_key(p) for p in parameters}
    storages = {storage_key(t) for t in saved + recorder.kept} - skip
    return sum(nbytes for _, nbytes in storages) + recorder.extra_bytes


def build(shape: Shape, device: str) -> MovingAverageGatedAttention:
    torch.manual_seed(0)
    cfg = MegaLayerConfig(chunk_size=shape.chunk, dropout=0.0, max_positions=max(shape.length, 2), **SIZES)
    return MovingAverageGatedAttention(cfg, causal=shape.causal).to(device).train()


def inputs(shape: Shape, device: str):
    """x (B x L x d) and a padding mask: every other sequence full, the others of decreasing length."""
    x = torch.randn(shape.batch, shape.length, SIZES["embed_dim"], device=device, requires_grad=True)
    lengths = torch.tensor([shape.length if i % 2 == 0 else max(1, shape.length * (shape.batch - i) // shape.batch)
                            for i in range(shape.batch)], device=device).unsqueeze(-1)
    positions = torch.arange(shape.length, device=device)
    mask = positions >= lengths if shape.padding == "right" else positions < shape.length - lengths
    return x, mask


def run_path(layer: MovingAverageGatedAttention, shape: Shape, path: str, x: Tensor, mask: Tensor) -> Tensor:
    layer.mask_mode = "explicit" if path == "explicit" else "auto"
    return layer(x, mask, right_padded=path == "fused" and shape.padding == "right")[0]


def precision(device: str):
    """bfloat16 autocast on CUDA, as in training there; float32 on CPU (where attention would run
    in float32 under autocast anyway)."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


def memory_model(layer, shape: Shape, path: str, x: Tensor, mask: Tensor) -> Dict[str, object]:
    """One forward pass under saved-tensor hooks, SDPA replaced by the accounting stand-in."""
    recorder = SdpaRecorder(compute=False, z_dim=layer.zdim)
    saved: List[Tensor] = []

    def pack(tensor: Tensor) -> Tensor:
        saved.append(tensor)
        return tensor

    F.scaled_dot_product_attention = recorder
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), precision(x.device.type):
            run_path(layer, shape, path, x, mask)
    finally:
        F.scaled_dot_product_attention = _SDPA
    return {"kept_mb": kept_bytes(saved, recorder, list(layer.parameters())) / 2 ** 20,
            "bias_grad_mb": recorder.bias_grad_bytes / 2 ** 20, "mask": ", ".join(sorted(set(recorder.masks)))}


def timed_step(step: Callable[[], None], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(shape: Shape, device: str, repeats: int, max_timed_scores: Optional[int]) -> List[dict]:
    layer = build(shape, device)
    x, mask = inputs(shape, device)
    scores = shape.batch * shape.length * (shape.chunk if 0 < shape.chunk < shape.length else shape.length)
    rows = []
    for path in PATHS:
        row = {**shape._asdict(), "path": path, "device": device,
               **memory_model(layer, shape, path, x, mask)}

        def step():
            layer.zero_grad(set_to_none=True)
            with precision(device):
                out = run_path(layer, shape, path, x, mask)
            out.float().square().mean().backward()

        if max_timed_scores is None or scores <= max_timed_scores:
            step()  # warm-up
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                step()
                row["peak_mb"] = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
            row["ms"] = 1e3 * min(timed_step(step, device) for _ in range(repeats))
        rows.append(row)
    return rows


def compare(shapes: List[Shape], device: str, repeats: int = 3,
            max_timed_scores: Optional[int] = None) -> List[dict]:
    """Both paths on every shape, on the fused dispatch (forced on CPU)."""
    dispatch = attention.uses_cpu_kernel
    attention.uses_cpu_kernel = lambda d: False
    try:
        return [row for shape in shapes for row in measure(shape, device, repeats, max_timed_scores)]
    finally:
        attention.uses_cpu_kernel = dispatch


def _cell(explicit: Optional[float], fused: Optional[float], digits: int = 1) -> str:
    if explicit is None or fused is None:
        return "-"
    ratio = f"{explicit / fused:.1f}x" if fused > 0 else "-"
    return f"{explicit:.{digits}f} / {fused:.{digits}f} ({ratio})"


def format_table(rows: List[dict]) -> str:
    device = rows[0]["device"] if rows else "?"
    precision = "bfloat16 autocast" if device == "cuda" else "float32"
    lines = [f"## Fused softmax attention on {device} ({precision}): explicit / fused (ratio)", "",
             "| shape | B | L | c | causal | padding | fused mask | kept MB | bias grad MB | ms | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for index in range(0, len(rows), len(PATHS)):
        explicit, fused = rows[index:index + len(PATHS)]
        cells = [_cell(explicit.get(key), fused.get(key)) for key in ("kept_mb", "bias_grad_mb", "ms", "peak_mb")]
        lines.append(f"| {fused['name']} | {fused['batch']} | {fused['length']} | "
                     f"{fused['chunk'] if fused['chunk'] > 0 else 'full'} | {'yes' if fused['causal'] else 'no'} | "
                     f"{fused['padding']} | {fused['mask']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fused_attention", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--shapes", nargs="+", choices=[s.name for s in SHAPES], default=[s.name for s in SHAPES],
                        help="which shapes (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per path (best kept)")
    parser.add_argument("--max-timed-scores", type=int, default=None,
                        help="time only shapes with at most this many scores, B x L x c (default: all on cuda, "
                             "2^25 on cpu, where SDPA's math kernel holds them)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.max_timed_scores is None and args.device == "cpu":
        args.max_timed_scores = 2 ** 25
    shapes = [s for s in SHAPES if s.name in args.shapes]
    rows = compare(shapes, args.device, args.repeats, args.max_timed_scores)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
