"""Chat backend running a Hugging Face causal LM in-process with ``transformers`` and a lean decode loop.

Why not ``model.generate()`` + ``TextIteratorStreamer``: per token, generate() runs a stack of logits
processors, stopping criteria and a streamer thread; our loop does one forward pass with the KV cache and
picks a token (same sampling semantics, greedy output identical). The dtype is chosen in ``resolve_dtype``
and a GGUF is dequantised once into a cached checkpoint (``convert_gguf``). Figures: benchmarks/bench_llm.py.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from rag.errors import InvalidInput, ModelUnavailable
from rag.llm.base import ChatMessage, GenerationParams

# The int8 matmul kernel is for a few rows (decoding); above this, dequantising is faster.
_INT8_KERNEL_MAX_ROWS = 4

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class TransformersChatModel:
    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        dtype: str = "auto",
        context_window: int = 4096,
        cache_dir: Path | None = None,
        name: str | None = None,
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.dtype, self.int8 = resolve_dtype(dtype, device)
        self.tokenizer, self.model = load_causal_lm(model, gguf_file, self.dtype, device, cache_dir)
        if self.int8:
            quantize_linears_int8(self.model)
        use_decode_attention(self.model)
        self.precision = "int8 weights, bfloat16 activations" if self.int8 else str(self.dtype).removeprefix("torch.")
        self.name = name or Path(gguf_file or model).stem
        limit = getattr(self.model.config, "max_position_embeddings", None) or context_window
        self.context_window = min(context_window, int(limit))
        self._eos = _eos_ids(self.model, self.tokenizer)
        # transformers 5.x renamed forward(past_key_values=) to forward(cache=); 4.x knows only the old name.
        forward_params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward_params else "past_key_values"
        self._lock = threading.Lock()

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        with self._lock:
            input_ids = self.encode_chat(messages)
            budget = self.context_window - input_ids.shape[1]
            if budget <= 0:
                raise InvalidInput(
                    f"prompt too long for the model: {input_ids.shape[1]} tokens, context window {self.context_window}"
                )
            tokens = self.generate_ids(input_ids, params, max_new_tokens=min(params.max_tokens, budget))
            yield from _stop_at(_detokenize(self.tokenizer, tokens), params.stop)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode_chat(self, messages: list[ChatMessage]) -> torch.Tensor:
        encoded = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return encoded["input_ids"].to(self.device)

    def generate_ids(self, input_ids: torch.Tensor, params: GenerationParams, max_new_tokens: int) -> Iterator[int]:
        """Token ids one at a time: prefill once, then one single-token forward pass per new token."""
        import torch
        from transformers import DynamicCache

        model = self.model
        generator = None
        if params.seed is not None and params.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        with torch.inference_mode():
            cache = {self._cache_kwarg: DynamicCache(config=model.config)}
            seen = input_ids[0]
            logits = model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **cache).logits
            for step in range(max_new_tokens):
                # Like generate(): sampling works on a float32 copy of the last position's logits.
                token = pick_token(logits[0, -1].float(), seen, params, generator)
                if token in self._eos:
                    return
                yield token
                if step + 1 == max_new_tokens:
                    return
                next_ids = torch.tensor([[token]], device=self.device)
                if params.repetition_penalty != 1.0:
                    seen = torch.cat([seen, next_ids[0]])
                logits = model(input_ids=next_ids, use_cache=True, **cache).logits


def pick_token(
    logits: torch.Tensor, seen: torch.Tensor, params: GenerationParams, generator: torch.Generator | None
) -> int:
    """Same semantics and order as generate()'s processors: repetition penalty, temperature, top-k, top-p."""
    import torch

    if params.repetition_penalty != 1.0:
        score = logits.gather(0, seen)
        score = torch.where(score < 0, score * params.repetition_penalty, score / params.repetition_penalty)
        logits = logits.scatter(0, seen, score)
    if params.temperature <= 0:
        return int(logits.argmax())
    logits = logits / params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - params.top_p)
        remove[-1] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(0, order, remove), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


def resolve_dtype(dtype: str, device: str) -> tuple[torch.dtype, bool]:
    """(compute dtype, int8 weights?) for "auto", "int8" or a torch dtype name ("bfloat16", "float32").

    Decoding one token reads every weight once, so on CPU its speed follows the bytes per weight:
    measured here (2 threads, bundled 0.5B model) float32 ~5.5 tokens/s, bfloat16 ~12, int8 weights
    with bfloat16 activations ~22. "auto" takes int8 where the CPU has native bf16 (AVX512-BF16 / AMX;
    without it the int8 kernel is slower than plain float32), and bfloat16 on CUDA.
    """
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16, False
        return (torch.bfloat16, True) if _cpu_has_bf16() and _has_int8_kernel() else (torch.float32, False)
    if dtype == "int8":
        return torch.bfloat16, True
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ModelUnavailable(f"unknown dtype {dtype!r}; use auto, int8, bfloat16, float16 or float32")
    return value, False


def _has_int8_kernel() -> bool:
    import torch

    return hasattr(torch, "_weight_int8pack_mm")


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def quantize_linears_int8(model: PreTrainedModel) -> None:
    """Swap every ``nn.Linear`` (lm_head included) for a weight-only int8 copy with one scale per output
    channel: half the bytes of bfloat16 per decoded token. Greedy output on the bundled model matched
    bfloat16's in our checks; generate() on the swapped model is still the reference for our loop."""
    import torch

    layer_class = _int8_linear_class()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, child_name, layer_class(child))


@functools.cache
def _int8_linear_class() -> type:
    import torch
    import torch.nn.functional as F

    class Int8Linear(torch.nn.Module):
        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
            self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
            self.register_buffer("scale", scale.to(linear.weight.dtype))
            self.bias = linear.bias
            self.in_features, self.out_features = linear.in_features, linear.out_features

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = x.reshape(-1, self.in_features)
            if rows.shape[0] <= _INT8_KERNEL_MAX_ROWS:
                out = torch._weight_int8pack_mm(rows, self.weight_int8, self.scale)
            else:  # prompt prefill is compute-bound: dequantise and use the ordinary matmul
                out = F.linear(rows, self.weight_int8.to(rows.dtype) * self.scale[:, None])
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    return Int8Linear


_DECODE_ATTENTION = "rag_gqa_decode"


def use_decode_attention(model: PreTrainedModel) -> bool:
    """Route single-token attention through ``_gqa_decode_attention`` (prefill keeps SDPA).

    torch's CPU SDPA kernel is tuned for long queries: with one query over a 1,300-token KV cache it took
    ~2.2 ms a layer, 40% of a decode step here; two small matmuls on the grouped heads take a fraction.
    Returns False (model unchanged) where this transformers version has no attention registry.
    """
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    if model.config._attn_implementation != "sdpa":
        return False
    AttentionInterface.register(_DECODE_ATTENTION, _gqa_decode_attention)
    AttentionMaskInterface.register(_DECODE_ATTENTION, sdpa_mask)
    model.set_attn_implementation(_DECODE_ATTENTION)
    return True


def _gqa_decode_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    if q_len != 1 or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    kv_heads = key.shape[1]
    # (batch, heads, 1, dim) -> (batch, kv_heads, heads per kv head, dim): no repeat_kv copy of the cache.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)) * (scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    out = torch.matmul(probs, value).reshape(batch, heads, 1, dim)
    return out.transpose(1, 2), None


def load_causal_lm(
    model: str, gguf_file: str | None, dtype: torch.dtype, device: str, cache_dir: Path | None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a tokenizer and model. A GGUF is dequantised once into a safetensors checkpoint under
    ``cache_dir`` (converting takes ~40 s here, loading the checkpoint ~3 s) and loaded from there."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, extra = model, {}
    if gguf_file:
        if cache_dir is None:
            cache_dir = Path(tempfile.gettempdir()) / "rag-models"
        source, extra = str(convert_gguf(Path(model), gguf_file, dtype, cache_dir)), {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"transformers could not load model {model!r}: {exc}") from exc
    return tokenizer, lm.to(device).eval()


def convert_gguf(folder: Path, gguf_file: str, dtype: torch.dtype, cache_dir: Path) -> Path:
    """``cache_dir/<stem>.<dtype>.hf``: the GGUF dequantised to ``dtype`` as a transformers checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = folder / gguf_file
    if not gguf_path.is_file():
        raise ModelUnavailable(f"GGUF file not found: {gguf_path}")
    target = cache_dir / f"{gguf_path.stem}.{str(dtype).removeprefix('torch.')}.hf"
    done = target / ".complete"
    if done.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=1800):
        if done.is_file():
            return target
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
            lm = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"transformers could not read GGUF {gguf_path}: {exc}") from exc
        # The weights are plain dequantised tensors now; drop the marker that forbids saving them.
        lm.config.__dict__.pop("quantization_config", None)
        lm.hf_quantizer = None
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=cache_dir))
        try:
            lm.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / ".complete").write_text(f"{gguf_path}\n", encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return frozenset(ids)


def _detokenize(tokenizer: PreTrainedTokenizerBase, tokens: Iterator[int]) -> Iterator[str]:
    """Text deltas; holds back while the tail is an incomplete UTF-8 sequence (a CJK character split
    across byte-level tokens decodes to U+FFFD until its last byte arrives)."""
    ids: list[int] = []
    emitted = ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(emitted):
            continue
        if len(text) > len(emitted):
            yield text[len(emitted) :]
            emitted = text


def _stop_at(pieces: Iterator[str], stops: list[str]) -> Iterator[str]:
    """Pass pieces through until a stop string appears (it and what follows are dropped). Text that could
    be the start of a stop string is held back until it is known not to be."""
    stops = [s for s in stops if s]
    if not stops:
        yield from pieces
        return
    pending = ""
    for piece in pieces:
        pending += piece
        cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            if cut:
                yield pending[:cut]
            return
        keep = max(_overlap(pending, s) for s in stops)
        if len(pending) > keep:
            yield pending[: len(pending) - keep]
            pending = pending[len(pending) - keep :]
    if pending:
        yield pending


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


_instances: dict[tuple[Any, ...], TransformersChatModel] = {}
_instances_lock = threading.Lock()


def shared_transformers_model(
    locate: Callable[[], tuple[str, str | None]],
    *,
    key: str,
    device: str,
    threads: int | None,
    context_window: int,
    cache_dir: Path | None,
    dtype: str = "auto",
    name: str | None = None,
) -> TransformersChatModel:
    """One loaded copy per model per process (a 0.5B model takes 1-2.5 GB of RAM). ``locate`` returns
    (model, gguf_file) and runs only when no copy is loaded yet."""
    instance_key = (key, device, dtype, context_window)
    with _instances_lock:
        instance = _instances.get(instance_key)
        if instance is None:
            model, gguf_file = locate()
            instance = TransformersChatModel(
                model, gguf_file=gguf_file, device=device, threads=threads, dtype=dtype,
                context_window=context_window, cache_dir=cache_dir, name=name,
            )
            _instances[instance_key] = instance
        return instance
