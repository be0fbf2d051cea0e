"""Per-class adversarial accuracy accumulated over an epoch's training batches.

CFA calibrates from, and the inverse-accuracy reweighting baseline weights by, each
class's robust accuracy on the previous epoch's training adversarial examples. The
counts stay tensors on the device (no host synchronisation per step) and are summed
across DDP ranks once, at epoch end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustfair.losses.peers import classwise_counts, classwise_sums


class ClassAccuracyTally:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.correct: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def reset(self) -> None:
        self.correct = self.count = None

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count the batch's predictions (logits [B, C], labels y [B])."""
        if self.correct is None or self.correct.device != y.device:
            self.correct = torch.zeros(self.num_classes, device=y.device)
            self.count = torch.zeros(self.num_classes, device=y.device)
        correct = (logits.detach().argmax(1) == y).float()
        self.correct += classwise_sums(correct, y, self.num_classes)
        self.count += classwise_counts(y, self.num_classes)

    def accuracy(self, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
        """[C] accuracy over everything added since the last reset (all ranks), None if nothing was."""
        if self.count is None:
            return None
        correct = all_reduce_sum(self.correct.clone())
        count = all_reduce_sum(self.count.clone())
        return (correct / count.clamp(min=1)).detach()
