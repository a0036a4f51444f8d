"""Interpretation of the attention taggers (Won, Chun & Serra 2019, section 5.3).

* :func:`attention_map` / :func:`attention_from_attn`: attention from [CLS] to every time step
  of the last layer, heads summed (the paper's Eq. 4 heat map), or per layer / per head.
* :func:`contribution_map`: the tag-wise contribution heat map — tag probabilities when the
  last layer's [CLS] attention is one-hot on each time step in turn, all steps batched.
* :func:`q2l_tag_maps` / :func:`q2l_from_attn`: per-tag cross-attention time maps of q2l.
* :func:`explain_array`: slide the live tagger's chunks (:mod:`rt_tagger.chunker`) over a whole
  file and average the maps on its frame axis.

Every map is a :class:`StepMap`: values over the model's time steps plus :class:`StepTimes`
(each step's input span, spectrogram frames and absolute seconds; conventions in
:mod:`rt_tagger.interpret.timeaxis`). Models run in PyTorch (the contribution map changes
the attention inside the model), in eval mode, without gradients.
"""
from __future__ import annotations

from .contribution import METHODS, contribution_map, top_tags
from .maps import (StepMap, attention_from_attn, attention_map, q2l_from_attn, q2l_tag_maps,
                   resolve_tags, tag_names)
from .timeaxis import StepTimes, TimeBase, spread_to_frames, step_times, time_base
from .whole import FileMaps, chunk_starts, explain_array, file_chunks

__all__ = [
    "METHODS",
    "FileMaps",
    "StepMap",
    "StepTimes",
    "TimeBase",
    "attention_from_attn",
    "attention_map",
    "chunk_starts",
    "contribution_map",
    "explain_array",
    "file_chunks",
    "q2l_from_attn",
    "q2l_tag_maps",
    "resolve_tags",
    "spread_to_frames",
    "step_times",
    "tag_names",
    "time_base",
    "top_tags",
]
