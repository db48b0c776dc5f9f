"""PyTorch: autograd with ``backward()``, then ``optimizer.apply`` under ``no_grad``."""

from __future__ import annotations

import torch


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return found


def sync(tree) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_train_step(model, loss_fn, optimizer):
    optimizer.build(model.trainable_variables)

    def step(x, y):
        y_pred = model(x, training=True)
        loss = loss_fn(y, y_pred)
        for extra in model.losses:  # regularization, as fit adds it
            loss = loss + extra
        model.zero_grad()
        loss.backward()
        grads = [v.value.grad for v in model.trainable_weights]
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_weights)
        return loss.detach(), y_pred.detach() if hasattr(y_pred, "detach") else y_pred

    return step
