"""Raw model outputs -> predictions (one definition for metrics, inference, visualisation)."""
import torch
import torch.nn.functional as F

# task -> raw output (B, C, H, W) float32 -> prediction
_ACTIVATIONS = {
    "semseg": lambda output: output.argmax(dim=1),  # int64 (B, H, W)
    "human_parts": lambda output: output.argmax(dim=1),  # int64 (B, H, W)
    "sal": lambda output: torch.softmax(output, dim=1)[:, 1],  # (B, H, W) foreground probability
    "edge": lambda output: torch.sigmoid(output[:, 0]),  # (B, H, W) boundary probability
    "normals": lambda output: F.normalize(output, p=2, dim=1),  # (B, 3, H, W) unit vectors
    "depth": lambda output: output[:, 0],  # (B, H, W) metres
}


def activate(task, output):
    """Map a raw output (B, C, H, W) to the prediction of docs/conventions.md."""
    return _ACTIVATIONS[task](output.float())
