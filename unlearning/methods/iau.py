"""IAU (unlearning.methods.hyperparameters.IAUParams): one full-batch step against the forgotten rows'
gradient, corrected by the retained rows', tried at the given rate and at halves of it from the
same weights; the loop keeps the step within the utility floor that lands nearest the target."""

from __future__ import annotations

import copy

import torch

INDEPENDENT_CANDIDATES = True  # every candidate starts from the model as it was


def budget(params) -> int:
    return params.step_halvings + 1


def mean_gradient(network, rows, loss) -> list[torch.Tensor]:
    network.zero_grad(set_to_none=True)
    loss.on(network, rows).backward()
    return [p.grad.detach().clone() for p in network.parameters()]


def candidates(network, data, params, loss):
    network.train()
    retain, forget = mean_gradient(network, data.retain_rows, loss), mean_gradient(network, data.forget_rows, loss)
    network.zero_grad(set_to_none=True)
    direction = [params.retain_weight * r - params.forget_weight * f for r, f in zip(retain, forget)]
    start = copy.deepcopy(network.state_dict())
    for halving in range(params.step_halvings + 1):
        rate = params.learning_rate / 2**halving
        network.load_state_dict(start)
        with torch.no_grad():
            for weight, step in zip(network.parameters(), direction):
                weight -= rate * step
        yield f"one step at rate {rate:g}"
