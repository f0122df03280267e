"""RMU (unlearning.methods.hyperparameters.RMUParams): misdirect a middle layer's representation of
the forget texts toward a fixed random direction, keep its representation of retained texts, and
update only the MLPs at and just before that layer.

The layer is found by the model's shape, not by GPT-2's names (unlearning.methods.guarded.decoder_blocks:
GPT-2's `transformer.h`, Llama's `model.layers`…), and its MLP as the block's child that holds
linear layers and is not the attention. Activations are divided by the original's mean activation
norm at that layer on retained tokens, so c and α mean the same on any width and scale:

    loss = mean over forget tokens ‖a − c·u‖²  +  α · mean over retained tokens ‖a − a_original‖²
"""

from __future__ import annotations

import torch

from unlearning.methods.guarded import Objective, decoder_blocks, linear_layer_names, text_batch


def needs_reference(params) -> bool:
    return True


def steered_layer(model, params) -> int:
    _, blocks = decoder_blocks(model)
    layer = params.layer if params.layer >= 0 else len(blocks) // 2
    if layer >= len(blocks):
        raise ValueError(f"rmu.layer={params.layer}, but the model has {len(blocks)} decoder blocks (0 to {len(blocks) - 1})")
    return layer


def mlp_names(model, params) -> list[str]:
    """The MLP of the steered block and of the `updated_layers - 1` blocks before it."""
    prefix, blocks = decoder_blocks(model)
    layer = steered_layer(model, params)
    return [f"{prefix}.{index}.{mlp_of(blocks[index], index)}"
            for index in range(max(0, layer - params.updated_layers + 1), layer + 1)]


def mlp_of(block, index: int) -> str:
    named = [name for name, _ in block.named_children()
             if any(word in name.lower() for word in ("mlp", "feed_forward", "ffn"))]
    if len(named) != 1:
        raise ValueError(f"decoder block {index} ({type(block).__name__}) has no single MLP child "
                         f"(children: {', '.join(name for name, _ in block.named_children())})")
    return named[0]


def trainable(model, params) -> list[str]:
    scopes = tuple(name + "." for name in mlp_names(model, params))
    return [name for name, _ in model.named_parameters() if name.startswith(scopes)]


def lora_targets(model, params) -> list[str]:
    return linear_layer_names(model, within=[name + "." for name in mlp_names(model, params)])


class LayerActivations:
    """The steered block's output hidden states, captured on each forward pass of `model`."""

    def __init__(self, model, layer: int):
        _, blocks = decoder_blocks(model)
        self.captured = None
        self.hook = blocks[layer].register_forward_hook(self.capture)

    def capture(self, module, inputs, output):
        self.captured = output[0] if isinstance(output, tuple) else output

    def of(self, model, batch) -> torch.Tensor:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.captured.float()


class RMU(Objective):
    def __init__(self, model, tokenizer, params, reference):
        super().__init__(model, tokenizer, params, reference)
        layer = steered_layer(model, params)
        self.activations = LayerActivations(model, layer)
        self.original = self.activations if reference.lora else LayerActivations(reference.frozen, layer)
        self.generator = torch.Generator().manual_seed(params.seed)
        self.direction, self.scale = None, None  # set on the first step (calibrate)

    def original_activations(self, batch) -> torch.Tensor:
        with self.reference.model(self.model) as original:
            return self.original.of(original, batch)

    def calibrate(self, batch) -> None:
        """The unit of activations (the original's mean norm on retained tokens) and the direction u,
        fixed by the seed, on the first step."""
        mask = batch["attention_mask"].bool()
        hidden = self.original_activations(batch)[mask]
        self.scale = hidden.norm(dim=-1).mean().item()
        direction = torch.rand(hidden.shape[-1], generator=self.generator)
        self.direction = (direction / direction.norm()).to(hidden.device)

    def loss(self, forget, retain):
        params = self.params
        retained, forgotten = (text_batch(self.model, self.tokenizer, texts) for texts in (retain, forget))
        if self.direction is None:
            self.calibrate(retained)
        forget_mask, retain_mask = forgotten["attention_mask"].bool(), retained["attention_mask"].bool()
        steered = self.activations.of(self.model, forgotten)[forget_mask] / self.scale
        forget_loss = (steered - params.steering_coefficient * self.direction).pow(2).sum(-1).mean()
        kept = self.activations.of(self.model, retained)[retain_mask] / self.scale
        before = self.original_activations(retained)[retain_mask] / self.scale
        retain_loss = (kept - before).pow(2).sum(-1).mean()
        return forget_loss + params.retain_weight * retain_loss, {"forget_rmu": forget_loss.item(),
                                                                  "retain_rmu": retain_loss.item()}

    def close(self) -> None:
        """Take the hooks off: the model handed back computes as any other."""
        self.activations.hook.remove()
        self.original.hook.remove()


objective = RMU
