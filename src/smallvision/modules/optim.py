"""How a technique's weights are updated: the optimiser, its parameter groups (layer-wise learning rates, no weight
decay on biases and norm weights) and the learning-rate schedule (warm-up, cosine decay).

The book's recipe is one constant RMSprop rate for every trainable weight (`layer_decay: 1.0`, `weight_decay: 0.0`,
`lr_schedule.name: constant`): that is one parameter group and no scheduler, exactly as before these options.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, SequentialLR

from smallvision.errors import ConfigError
from smallvision.models.backbones import layers_top_down
from smallvision.models.heads import TransferNet
from smallvision.schema_techniques import LrSchedule, Optimizer

# The optimisers a technique can name (techniques.<t>.optimizer.name); RMSprop's alpha and eps are Keras' rho and
# epsilon (conf/techniques/*.yaml), momentum is used by RMSprop and SGD. weight_decay is decoupled in AdamW and an
# L2 penalty in the others.
OPTIMIZERS = {
    "rmsprop": lambda params, c: torch.optim.RMSprop(
        params, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
}


def make_optimizer(params, cfg: Optimizer) -> torch.optim.Optimizer:
    """The optimiser `cfg` (a technique's `optimizer` settings) names, over `params` (tensors, or the groups of
    `param_groups`)."""
    return OPTIMIZERS[cfg.name](params, cfg)


def layers_from_the_head(net: nn.Module) -> list[list[nn.Parameter]]:
    """A network's parameters by depth from the output: a base + head network gives the head, then the base's
    layers from the top down to the stem; any other network (the scratch convnet, a head alone) is one layer."""
    if isinstance(net, TransferNet):
        return [list(net.head.parameters()), *layers_top_down(net.base)]
    return [list(net.parameters())]


def param_groups(net: nn.Module, cfg: Optimizer) -> list[dict]:
    """The trainable parameters of `net` as optimiser groups, ordered from the head down to the stem.

    The layer at depth d (the head is 0) learns at `lr * layer_decay ** d`, so the layers nearest the input,
    the most general features, move least (discriminative fine-tuning). With `weight_decay`, each layer's
    biases and norm weights (1-D tensors) form their own group without decay. Every trainable parameter is in
    exactly one group; frozen ones in none. `layer_decay: 1.0` puts every layer in one group.
    """
    layers = layers_from_the_head(net)
    if cfg.layer_decay == 1:
        layers = [[p for layer in layers for p in layer]]
    groups = []
    for depth, layer in enumerate(layers):
        trainable = [p for p in layer if p.requires_grad]
        lr = cfg.lr * cfg.layer_decay**depth
        decayed = [p for p in trainable if p.ndim > 1 or not cfg.weight_decay]
        plain = [p for p in trainable if p.ndim <= 1 and cfg.weight_decay]
        for params, decay in ((decayed, cfg.weight_decay), (plain, 0.0)):
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": decay, "depth": depth})
    if not groups:
        raise ConfigError("nothing to train: every parameter of the network is frozen")
    return groups


def lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LrSchedule | None, total_steps: int, epochs: int
) -> dict | None:
    """Lightning's scheduler config for `schedule` (a technique's `lr_schedule` node), stepped every batch: a linear
    warm-up over `warmup_epochs`, then constant or a cosine decay to 0 at the last step. None: constant, no warm-up
    (the book), also when `schedule` is None."""
    if schedule is None:
        return None
    steps_per_epoch = max(1, int(total_steps) // max(1, epochs))
    warmup = min(round(schedule.warmup_epochs * steps_per_epoch), int(total_steps) - 1)
    if schedule.name == "constant" and warmup <= 0:
        return None
    after = (
        CosineAnnealingLR(optimizer, T_max=max(1, int(total_steps) - max(warmup, 0)))
        if schedule.name == "cosine"
        else ConstantLR(optimizer, factor=1.0, total_iters=0)
    )
    if warmup > 0:
        ramp = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup)
        after = SequentialLR(optimizer, [ramp, after], milestones=[warmup])
    return {"scheduler": after, "interval": "step", "frequency": 1}
