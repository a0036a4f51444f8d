"""Model inputs from prepared data: random training chunks and song-level evaluation chunks.

Training is instance-level (Won et al.): every epoch visits each training clip once, in a
seeded random order, as one chunk of the model's input length at a random position. The whole
epoch plan (order, positions, augmentation parameters) is drawn from ``(seed, epoch)``, so a
resumed run and every DDP rank see exactly the batches of an uninterrupted single process.
"""
from __future__ import annotations

import numpy as np
import torch

from rt_tagger.errors import ConfigError
from rt_tagger.features import LogMel, LogMelConfig

from . import augment
from .data.dataset import Prepared, chunk_starts, take

__all__ = ["ChunkSource", "model_logmel"]


def model_logmel(arch: str, model) -> LogMelConfig | None:
    """The log-mel ``model`` takes (None for waveform models): its ``model.cfg.logmel``.

    ``arch`` names the model in the error for a model built without the factory."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ConfigError(f"{arch}: the model has no description (model.cfg); build it with "
                          "rt_tagger.factory.create_model")
    return cfg.logmel


class ChunkSource:
    """Chunks of one model's input from a :class:`Prepared` dataset."""

    def __init__(self, data: Prepared, logmel: LogMelConfig | None, input_length: int,
                 cfg=None) -> None:
        self.data, self.cfg, self.length = data, cfg, int(input_length)
        self.logmel_cfg = logmel
        self.store = data.features(logmel)
        self.wave_aug = cfg is not None and augment.needs_waveform(cfg) and logmel is not None
        self.raw = data.features(None) if self.wave_aug else None
        self.logmel = LogMel(logmel) if self.wave_aug else None
        # samples per input step: hop for a log-mel model, 1 for a waveform model
        self.hop = logmel.hop_length if logmel is not None else 1
        # Distillation: chunks start on multiples of ``grid`` steps (where cached teacher
        # outputs exist) and ``target_fn(clips, starts)`` gives their targets.
        self.grid = 1
        self.target_fn = None

    def indices(self, split: str) -> np.ndarray:
        stores = [self.store] + ([self.raw] if self.raw is not None else [])
        return self.data.indices(split, stores)

    def targets(self, clips: np.ndarray, starts: np.ndarray) -> np.ndarray:
        if self.target_fn is not None:
            return np.asarray(self.target_fn(clips, starts), np.float32)
        return self.data.labels[clips].astype(np.float32)

    def _start(self, n_frames: int, u) -> np.ndarray:
        """Chunk start(s) for uniform draw(s) ``u`` in [0, 1): on the grid when one is set."""
        slots = np.maximum(n_frames - self.length, 0) // self.grid + 1
        return (np.asarray(u) * slots).astype(np.int64) * self.grid

    # ---- training
    def plan(self, train: np.ndarray, epoch: int, seed: int, batch_size: int,
             steps: int = 0) -> list[dict]:
        """The epoch's global batches: clips, chunk starts and augmentation parameters."""
        rng = np.random.default_rng([seed, epoch])
        if steps > 0:
            order = train[rng.integers(0, train.size, steps * batch_size)]
        else:
            order = train[rng.permutation(train.size)]
            order = order[: (order.size // batch_size) * batch_size]  # drop the last partial
        lengths = np.array([self.store.length(i) for i in order], np.int64)
        starts = self._start(lengths, rng.random(order.size))
        aug = augment.draw(self.cfg, rng, order.size) if self.cfg is not None else None
        batches = []
        for b in range(0, order.size, batch_size):
            sl = slice(b, b + batch_size)
            batches.append({"clips": order[sl], "starts": starts[sl],
                            "aug": None if aug is None else {k: v[sl] for k, v in aug.items()}})
        self._train = train
        return batches

    def batch(self, item: dict) -> tuple[torch.Tensor, np.ndarray]:
        """Model input ``(b, L, n_mels)`` or ``(b, L)`` and the label targets ``(b, n_tags)``."""
        clips, starts, aug = item["clips"], item["starts"], item["aug"]
        y = self.targets(clips, starts)
        wave = aug is not None and augment.needs_waveform(self.cfg)
        xs = []
        for k, (i, s) in enumerate(zip(clips, starts)):
            if not wave:
                x = self.store.chunk(i, s, self.length)
            else:
                x, other = self._wave_chunk(i, s), None
                if aug["mix"][k]:
                    j = self._train[int(aug["mix_pick"][k] * self._train.size)]
                    s_j = int(self._start(self.store.length(j), aug["mix_start"][k]))
                    other = self._wave_chunk(j, s_j)
                    y[k] = np.maximum(y[k], self.targets(np.array([j]), np.array([s_j]))[0])
                x = augment.apply_wave(self.cfg, x, aug, k, other)
                if self.logmel is not None:
                    x = self.logmel(x, nonfinite="zero")
            if aug is not None and self.cfg.aug_shift:
                x = augment.apply_shift(x, aug, k)
            xs.append(x)
        return torch.from_numpy(np.stack(xs)), y

    def _wave_chunk(self, i: int, start: int) -> np.ndarray:
        """The waveform under input steps ``[start, start + L)``: the chunk itself for a
        waveform model; ``(L - 1) * hop`` samples (exactly L centred frames) for a log-mel one."""
        if self.raw is None:
            return self.store.chunk(i, start, self.length)
        return self.raw.chunk(i, start * self.hop, (self.length - 1) * self.hop)

    # ---- evaluation
    def song_chunks(self, i: int, n_chunks: int) -> tuple[torch.Tensor, np.ndarray]:
        """Evaluation chunks of clip ``i`` and their starts (in input steps)."""
        starts = chunk_starts(self.store.length(i), self.length, n_chunks)
        clip = self.store.clip(i)
        xs = [self.store.chunk(i, int(s), self.length) if not self.store.on_the_fly else
              take(clip, int(s), self.length) for s in starts]
        return torch.from_numpy(np.stack(xs)), starts

