"""Gaussian fine-tuning (unlearning.methods.hyperparameters.GaussianFinetuneParams), regressors only:
the forgotten rows' targets replaced by draws from a normal fit of the training targets, then
fine-tuning on the retained and relabelled rows, so the model's answers for them become what it
would guess for anyone."""

from __future__ import annotations

import torch

from unlearning.methods.rows import batches


def candidates(network, data, params, loss):
    targets = loss.targets(data.retain_rows + data.forget_rows)
    generator = torch.Generator().manual_seed(params.seed)
    drawn = targets.mean() + targets.std() * torch.randn(len(data.forget_rows), generator=generator)
    relabelled = [{**row, "target": float(value)} for row, value in zip(data.forget_rows, drawn)]
    optimizer = torch.optim.AdamW(network.parameters(), lr=params.learning_rate, weight_decay=0.0)
    for epoch in range(1, params.max_epochs + 1):
        network.train()
        for batch in batches(data.retain_rows + relabelled, params.batch_size, generator):
            loss.on(network, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        yield f"epoch {epoch}"
