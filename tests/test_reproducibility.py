"""Committed numbers reproduce on other CPUs: the numeric kernels are pinned to their AVX2 code paths
(Makefile PINNED: MKL_CBWR, ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA). This machine computes a forward pass,
a training step and a greedy generation of SmolLM2's shape twice in fresh processes: pinned as `make`
runs, and pinned on an emulated AVX2-only CPU (MKL_ENABLE_INSTRUCTIONS=AVX2, what an AMD EPYC / pre-AVX-512
Intel box runs); the bytes must be equal. tests/test_store_sample.py then checks real jobs end to end."""
import os
import subprocess
import sys

from rwku_nb.jobs import AVX2_PINS as PINNED

SCRIPT = r"""
import hashlib, torch
from rwku_nb import models
torch.manual_seed(0)
model, tok = models.load_model("tiny-random", device="cpu")
ids = tok(["Stephen King wrote", "The capital of France is"], return_tensors="pt", padding=True)
h = hashlib.sha256()
with torch.no_grad():
    h.update(model(**ids).logits.numpy().tobytes())
out = model(**ids, labels=ids["input_ids"])
out.loss.backward()
torch.optim.AdamW(model.parameters(), lr=1e-3).step()
with torch.no_grad():
    h.update(model(**ids).logits.numpy().tobytes())
    h.update(model.generate(**ids, max_new_tokens=8, do_sample=False).numpy().tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest())
"""


def _run(env: dict) -> tuple[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in PINNED and k != "MKL_ENABLE_INSTRUCTIONS"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    capability, digest = out.stdout.split()[-2:]
    return capability, digest


def test_makefile_pins_the_kernels():
    from rwku_nb.paths import REPO_ROOT

    line = next(l for l in (REPO_ROOT / "Makefile").read_text().splitlines() if l.startswith("PINNED :="))
    assert dict(kv.split("=") for kv in line.split(":=")[1].split()) == PINNED


def test_pinned_kernels_give_the_same_bytes_on_an_avx2_only_cpu():
    capability, here = _run(PINNED)
    assert capability == "AVX2"  # ATen's vectorized kernels run their AVX2 variant
    _, avx2_box = _run({**PINNED, "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert here == avx2_box
    native_capability, native = _run({})  # unpinned, for the record (-s shows it)
    print(f"unpinned kernels here: {native_capability}, {'the same' if native == here else 'different'} bytes")
