"""The masked multi-task loss for partially labelled batches (the public release's).

For each sample b and each task t it labels:
    w_t * L_t(final) + prelim_weight * w_t * L_t(prelim),
the sample's sum is rescaled by (#tasks / #tasks labelled for b), and the batch loss is
the mean over samples. Losses are computed only for the labelled (sample, task) pairs,
one batched call per task: unlabelled pairs cost nothing and get no gradient.
A model without a refinement stage (the MTL baseline) returns its preliminary prediction
as the final one (`outputs["final"] is outputs["prelim"]`): that one prediction is counted
once, with weight w_t.
"""
import torch
from torch import nn


class MultiTaskLoss(nn.Module):
    """`criterion(outputs, batch) -> (total, per_task)`, see docs/conventions.md.

    `outputs` is the model's: with `outputs["pairs"]` ({task: sample indices}, training
    with a task mask) `final[task]` / `prelim[task]` hold the labelled rows only, in that
    order; without it they hold every sample, and `batch["task_mask"]` (all True when
    absent) selects the rows.
    """

    def __init__(self, tasks, task_losses, loss_weights, prelim_weight):
        super().__init__()
        self.tasks = list(tasks)
        self.task_losses = task_losses  # task -> fn(output, target) -> (n,)
        self.loss_weights = {t: float(loss_weights[t]) for t in self.tasks}
        self.prelim_weight = float(prelim_weight)

    def _labelled(self, outputs, task_mask):
        """{task: (sample indices, final rows, prelim rows)} of the labelled pairs."""
        if "pairs" in outputs:
            return {t: (idx, outputs["final"][t], outputs["prelim"][t]) for t, idx in outputs["pairs"].items()}
        labelled = {}
        for index, task in enumerate(self.tasks):
            idx = task_mask[:, index].nonzero().flatten()
            if len(idx):
                labelled[task] = (idx, outputs["final"][task][idx], outputs["prelim"][task][idx])
        return labelled

    def forward(self, outputs, batch):
        task_mask = batch.get("task_mask")
        if task_mask is None:  # every task labelled for every sample
            any_output = next(iter(outputs["final"].values()))
            task_mask = torch.ones(any_output.shape[0], len(self.tasks), dtype=torch.bool)
        batch_size, num_tasks = task_mask.shape
        labelled = self._labelled(outputs, task_mask.bool())
        prelim_weight = 0.0 if outputs["final"] is outputs["prelim"] else self.prelim_weight
        if not labelled:  # no sample labels any task: nothing to learn from this batch
            return torch.zeros((), requires_grad=True), {}

        device = next(iter(labelled.values()))[1].device
        # (#tasks / #labelled tasks) of every sample, the release's rescaling
        rescale = num_tasks / task_mask.to(device=device).sum(1).clamp_min(1)  # (B,)
        total, per_task = 0.0, {}
        for task, (idx, final, prelim) in labelled.items():
            target = batch[task].to(device)[idx]
            loss = self.task_losses[task](final, target)  # (n,)
            per_task[task] = loss.detach().mean()
            if prelim_weight > 0:
                loss = loss + prelim_weight * self.task_losses[task](prelim, target)
            total = total + self.loss_weights[task] * (loss * rescale[idx]).sum()
        return total / batch_size, per_task
