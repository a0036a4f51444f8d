"""Random-weight checkpoints of registry architectures, for engine and export tests."""
from __future__ import annotations

import torch

from rt_tagger.checkpoint import load_checkpoint, save_checkpoint
from rt_tagger.models import get_arch


def make_checkpoint(path, arch: str, args: dict, seed: int = 0, provenance: dict | None = None):
    """A random-weight checkpoint of ``arch`` saved to ``path`` and loaded back."""
    torch.manual_seed(seed)
    model = get_arch(arch).factory(**args).eval()
    logmel = get_arch(arch).logmel
    save_checkpoint(path, model, arch=arch, arch_args=args,
                    tags=[f"tag{i}" for i in range(model.n_tags)],
                    sample_rate=logmel.sample_rate if logmel else 16000,
                    input_kind=model.input_kind, input_length=model.input_length, logmel=logmel,
                    provenance=provenance)
    return load_checkpoint(path)
