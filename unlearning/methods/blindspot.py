"""Blindspot (unlearning.methods.hyperparameters.BlindspotParams): a proxy of the model's shape,
trained briefly on retained rows only, has a blind spot where the forgotten rows are. The model is
fine-tuned so that on the forgotten rows its outputs and its hidden activations' attention maps
match the proxy's, while its task loss on retained rows stays low."""

from __future__ import annotations

import copy

import torch

from unlearning.methods.rows import batches, extractor


def attention(activations: torch.Tensor) -> torch.Tensor:
    """An activation's attention map (Zagoruyko and Komodakis, 2017): squared, normalised per row."""
    return torch.nn.functional.normalize(activations.pow(2), dim=-1)


def proxy_of(network, data, params, loss, generator) -> torch.nn.Module:
    proxy = copy.deepcopy(network)
    for layer in proxy:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    optimizer = torch.optim.AdamW(proxy.parameters(), lr=params.proxy_learning_rate, weight_decay=0.0)
    proxy.train()
    for _ in range(params.proxy_epochs):
        for batch in batches(data.retain_rows, params.batch_size, generator):
            loss.on(proxy, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return proxy.eval().requires_grad_(False)


def candidates(network, data, params, loss):
    generator = torch.Generator().manual_seed(params.seed)
    torch.manual_seed(params.seed)
    proxy = proxy_of(network, data, params, loss, generator)
    forget = loss.features(data.forget_rows)
    with torch.no_grad():
        proxy_outputs, proxy_attention = proxy(forget), attention(extractor(proxy)(forget))
    optimizer = torch.optim.AdamW(network.parameters(), lr=params.learning_rate, weight_decay=0.0)
    for epoch in range(1, params.max_epochs + 1):
        network.train()
        for batch in batches(data.retain_rows, params.batch_size, generator):
            pulled = (params.output_weight * torch.nn.functional.mse_loss(network(forget), proxy_outputs)
                      + params.attention_weight * (attention(extractor(network)(forget)) - proxy_attention)
                      .norm(dim=-1).mean())
            (params.retain_weight * loss.on(network, batch) + pulled).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        yield f"epoch {epoch}"
