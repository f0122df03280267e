"""Label-agnostic forgetting (unlearning.methods.hyperparameters.LabelAgnosticParams): no row's label
is read. Two small VAEs learn the extractor's representations of all training rows and of the
forgotten rows; each batch then (1) moves the extractor so that the forgotten rows' representations
are explained badly by the forgotten-rows VAE and well by the training-rows VAE, and (2) aligns its
representations of retained rows with the original extractor's by a contrastive loss (each row's
new representation nearest its own old one among the batch). The paper runs (1) and (2) as two
stages; here they are one loss, so that every epoch's state, which the loop measures against the
utility floor, has been aligned."""

from __future__ import annotations

import copy

import torch

from unlearning.methods.rows import batches, extractor


class VAE(torch.nn.Module):
    def __init__(self, width: int, latent: int):
        super().__init__()
        self.encode, self.decode = torch.nn.Linear(width, 2 * latent), torch.nn.Linear(latent, width)

    def loss(self, representations: torch.Tensor) -> torch.Tensor:
        """Per row: reconstruction error plus the KL term (the negative ELBO up to constants)."""
        mean, log_variance = self.encode(representations).chunk(2, dim=-1)
        sample = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
        reconstruction = (self.decode(sample) - representations).pow(2).sum(-1)
        return reconstruction + 0.5 * (mean.pow(2) + log_variance.exp() - 1 - log_variance).sum(-1)


def fitted_vae(representations: torch.Tensor, params) -> VAE:
    vae = VAE(representations.shape[-1], params.latent)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    for _ in range(params.vae_epochs):
        vae.loss(representations).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return vae.requires_grad_(False)


def contrastive(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE: each row's new representation should be nearest its own old one."""
    similarity = torch.nn.functional.normalize(new, dim=-1) @ torch.nn.functional.normalize(old, dim=-1).T
    return torch.nn.functional.cross_entropy(similarity / temperature, torch.arange(len(new)))


def candidates(network, data, params, loss):
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    features = extractor(network)
    original = copy.deepcopy(features).requires_grad_(False)
    forget = loss.features(data.forget_rows)
    with torch.no_grad():
        training, forgotten = features(loss.features(data.retain_rows + data.forget_rows)), features(forget)
    training_vae, forget_vae = fitted_vae(training, params), fitted_vae(forgotten, params)
    with torch.no_grad():
        typical = forget_vae.loss(forgotten).mean()  # how well it explains them now: the push's unit and cap
    optimizer = torch.optim.AdamW(features.parameters(), lr=params.learning_rate, weight_decay=0.0)
    for epoch in range(1, params.max_epochs + 1):
        network.train()
        for batch in batches(data.retain_rows, params.batch_size, generator):
            represented = features(forget)
            pushed = (-forget_vae.loss(represented).clamp(max=4 * typical).mean()
                      + training_vae.loss(represented).mean())
            rows = loss.features(batch)
            aligned = contrastive(features(rows), original(rows), params.temperature)
            (pushed / typical + params.contrastive_weight * aligned).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        yield f"epoch {epoch}"
