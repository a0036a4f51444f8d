"""Optimiser schedules: the paper's Adam -> SGD with best-weight reloads, plain Adam, plain SGD.

``paper`` (Won et al. 2019, section 3.4): Adam (lr 1e-4, betas 0.9/0.999) until
``switch_epoch``; then the weights of the best validation ROC-AUC epoch are **loaded** and
training continues with SGD (momentum 0.9, Nesterov, weight decay 1e-4) at ``sgd_lr``; at each
of ``drop_epochs`` the best weights are loaded again and the learning rate is multiplied by
``lr_drop``. (The authors' public code assigns the checkpoint path to ``self.load`` instead of
calling the loader, so its reload never happens; this one does.) Every phase change builds a
fresh optimiser: momentum accumulated for discarded weights does not belong to the reloaded ones.

``adam``: Adam at ``adam_lr`` throughout. ``sgd``: SGD from the start with the same drops,
without reloads ("SGD with manual learning rate scheduling", the paper's Figure 5 baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Phase", "make_optimizer", "phase_at"]


@dataclass(frozen=True)
class Phase:
    index: int  # changes exactly when the optimiser is rebuilt
    kind: str  # "adam" | "sgd"
    lr: float
    reload_best: bool  # load the best weights when entering this phase


def phase_at(cfg, epoch: int) -> Phase:
    drops = sum(epoch >= d for d in cfg.drop_epochs)
    if cfg.optimizer == "adam":
        return Phase(0, "adam", cfg.adam_lr, False)
    if cfg.optimizer == "sgd":
        return Phase(drops, "sgd", cfg.sgd_lr * cfg.lr_drop ** drops, False)
    if epoch < cfg.switch_epoch:
        return Phase(0, "adam", cfg.adam_lr, False)
    return Phase(1 + drops, "sgd", cfg.sgd_lr * cfg.lr_drop ** drops, True)


def make_optimizer(cfg, params, phase: Phase) -> torch.optim.Optimizer:
    if phase.kind == "adam":
        return torch.optim.Adam(params, lr=phase.lr, betas=(0.9, 0.999))
    return torch.optim.SGD(params, lr=phase.lr, momentum=cfg.momentum, nesterov=True,
                           weight_decay=cfg.weight_decay)
