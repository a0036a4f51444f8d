"""Deployment helpers: a Triton Inference Server model repository from a checkpoint
(:mod:`rt_tagger.deploy.triton_repo`) and a PyTriton server for the project's own engine
(:mod:`rt_tagger.deploy.pytriton_serve`). Nothing here is imported by the streaming runtime.
"""
from __future__ import annotations

from .triton_repo import default_model_name, validate_config, write_triton_repository

__all__ = ["default_model_name", "validate_config", "write_triton_repository"]
