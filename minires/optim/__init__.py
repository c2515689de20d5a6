"""Optimizers and learning-rate schedules with PyTorch's names and update rules.

opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
sched = minires.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
for epoch in range(epochs):
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    sched.step()
"""

from minires.optim import lr_scheduler
from minires.optim.adam import Adam, AdamW
from minires.optim.optimizer import Optimizer
from minires.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
