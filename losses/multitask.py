"""The masked multi-task loss for partially labelled batches (SPEC section 3).

For each sample b and each task t it labels:
    w_t * L_t(final) + prelim_weight * w_t * L_t(prelim),
the sample's sum is rescaled by (#tasks / #tasks labelled for b), and the batch loss is
the mean over samples. Losses are computed for the whole batch at once as a (B, T)
table and masked with `task_mask`; unlabelled pairs are selected away with
`torch.where`, so they receive exactly zero gradient.
"""
import torch
from torch import nn


class MultiTaskLoss(nn.Module):
    """`criterion(outputs, batch) -> (total, per_task)`, see docs/conventions.md."""

    def __init__(self, tasks, task_losses, loss_weights, prelim_weight):
        super().__init__()
        self.tasks = list(tasks)
        self.task_losses = task_losses  # task -> fn(output, target) -> (B,)
        self.register_buffer("loss_weights", torch.tensor([float(loss_weights[t]) for t in self.tasks]),
                             persistent=False)
        self.prelim_weight = float(prelim_weight)

    def _loss_table(self, predictions, batch):
        """Per-sample loss of every task. -> (B, T)"""
        return torch.stack([self.task_losses[t](predictions[t], batch[t]) for t in self.tasks], dim=1)

    def forward(self, outputs, batch):
        final = self._loss_table(outputs["final"], batch)  # (B, T)
        combined = final
        if self.prelim_weight > 0:
            combined = final + self.prelim_weight * self._loss_table(outputs["prelim"], batch)

        batch_size, num_tasks = final.shape
        task_mask = batch.get("task_mask")
        if task_mask is None:
            task_mask = torch.ones(batch_size, num_tasks, dtype=torch.bool, device=final.device)
        task_mask = task_mask.to(device=final.device, dtype=torch.bool)

        weights = self.loss_weights.to(final.device)  # no-op once the module is on that device
        weighted = torch.where(task_mask, combined * weights, torch.zeros_like(combined))
        num_labelled = task_mask.sum(1).clamp_min(1)  # (B,)
        per_sample = weighted.sum(1) * (num_tasks / num_labelled)
        total = per_sample.mean()

        # Logging: mean final-output loss over the samples that label each task; a task
        # no sample of this batch labels has no entry.
        final = final.detach()
        per_task = {}
        for index, count in enumerate(task_mask.sum(0).tolist()):  # one host sync
            if count > 0:
                per_task[self.tasks[index]] = final[:, index][task_mask[:, index]].sum() / count
        return total, per_task
