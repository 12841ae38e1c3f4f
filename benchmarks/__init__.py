"""Training and decoding speed and memory of Mega, Mega-chunk and Transformer baselines, on the
GPU when torch sees one (CUDA), else on CPU.

    python -m benchmarks --json bench.json --plot bench.png        # or: make bench
    python -m benchmarks --device cpu                              # CPU even where a GPU is present

``--device auto`` (the default) picks ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``;
``--device cuda`` without CUDA is an argument error. The same table comes out on either device,
its headings and the plot's title naming it (the GPU's name, or the CPU model and threads), and
the JSON records it (``machine.device``, with ``machine.gpu`` on CUDA, and ``settings.device``).
Models and inputs are moved to the device (``.to(device)``), every model alike.

Training: forward + backward of a stack of encoder layers on random B x L x d inputs, a fixed
number of tokens per step (B = tokens // L), reported as milliseconds per 1K tokens (best of
``--repeats`` steps after one warm-up step, all in one worker process, the models of one length
taking turns step by step so that load on a shared machine hits them alike) and peak memory (one
step in a fresh process per configuration, after a one-chunk warm-up step: on CPU, growth of the
peak resident set size over the resident set size just before the step, so it counts activations,
gradients and temporaries, not the interpreter, libraries, parameters or warm-up state).
The Mega-chunk rows also get a FLOP count (``mega_forward_flops``) and the achieved rate,
next to the rate of a plain matmul of the projections' shape measured in the same worker
(on the same device).

On CUDA, where kernels run asynchronously, each timed step (training step, matmul, decoded
token) starts and ends with ``torch.cuda.synchronize()``, the warm-up as on CPU; peak memory
is measured in the same fresh process per configuration, after the same warm-up, as the growth
of ``torch.cuda.max_memory_allocated()`` (after ``torch.cuda.reset_peak_memory_stats()``) over
``torch.cuda.memory_allocated()`` just before the step: tensor memory, not the allocator's
cache or the CUDA context. The default step is 32768 tokens on CUDA (8192 on CPU), so that the
short lengths' batches keep the GPU busy; ``--threads`` and ``--omp-wait-policy`` still apply to
the workers but matter only on CPU.

Precision (``--precision``): what models train in, by default bfloat16 autocast on CUDA (the
forward pass under ``torch.autocast``; ``fp16`` for float16 autocast) and float32 on CPU, where
bfloat16 matmuls are emulated unless the CPU has AVX512-BF16 or AMX (``--precision bf16`` runs
bfloat16 autocast there too). ``fp32`` on CUDA keeps torch's default of TF32 off for matmuls (the
JSON records ``machine.tf32_matmul``). The plain matmul's operands are in the same dtype.

What ran: after the timed steps, one more step of every training configuration, each matmul and
one decoded token of each decoder run under torch.profiler, and the JSON records beside each
figure the backend of torch's scaled_dot_product_attention (``sdpa_backend``: flash, efficient,
cudnn, math, flash_cpu, or none, "none (blocked CPU kernel)" for Mega's own CPU kernel) and the
busiest kernels with their share of the time (``kernels``: CUDA kernels on CUDA, aten operators
on CPU); the report prints them as a table.

Models: ``mega`` and ``mega_chunk`` (the library's ``MegaStack``, prenorm, full attention and
chunks of ``--chunk-size``), ``hf_mega`` / ``hf_mega_chunk`` (the Hugging Face ``transformers``
port of the official code, skipped when transformers < 4.41 is not installed),
``torch_transformer`` (``nn.TransformerEncoder``, fused scaled-dot-product attention) and
``fairseq_transformer`` (fairseq's ``TransformerEncoderLayerBase``). Same width everywhere:
d, FFN size, layers; the Transformers use ``--heads`` heads of d / heads dims.

Decoding: median per-token latency of this package's ``mega_lm`` with chunks (Mega-chunk), fed
one token at a time through fairseq's incremental interface after a real prefill of 256, 1K, 4K
and 16K tokens, against fairseq's ``transformer_lm`` of the same width and depth with its
key/value cache, the two taking turns token by token; and the tokens per second of fairseq's
``SequenceGenerator`` (beam 5, 32 sequences at once, 128 and 512 tokens each) with both; with
``--translation-beam-lengths``, the same beam search with this package's ``mega`` translation model (full
attention, as the WMT16 recipe) and fairseq's ``transformer`` of the same sizes, over sentences of
``--source-length`` tokens.

Files: ``harness`` (command line, worker subprocesses, measurements), ``cases`` (the models
and the FLOP count), ``report`` (ratios, tables, plot), ``profiling`` (SDPA backend and kernels),
and ``fused_attention``, a comparison of its own (``python -m benchmarks.fused_attention``;
``fused_attention.compare`` and ``format_table`` to call it): the masks that fused softmax attention
(the CUDA dispatch) passes to torch against the explicit score-sized mask, per shape, memory kept
and time side by side. ``gpu_check`` validates a GPU machine (``make gpu-check``, see its docstring).
``paper`` (``python -m benchmarks paper``, ``make bench-paper``) is the paper's efficiency table:
the LRA Text presets trained through fairseq's trainer, steps/s and peak memory relative to the
Transformer beside the paper's figures (see its docstring).
"""
