"""Every approximate method's hyperparameters: the guarded loop's, which all share, then each
method's own, with its published defaults and where they come from. Torch-free, so the web
process validates an operator's choice (unlearning.methods.Method.params) with these.

Learning rates are the ones measured to work on this service's small GPT-2s (bench/RESULTS.md,
"Approximate unlearning"); the papers' are for 7B models and LoRA and say so beside each.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from unlearning.methods import Method, register

LANGUAGE_MODELS = frozenset({"causal_lm"})
MAX_STEPS = 100_000


# Method parameters that must be positive wherever a method has them (a β of 0 divides by zero; a
# negative one turns NPO into raising the forget set's likelihood).
POSITIVE_WHEREVER_PRESENT = ("beta", "temperature", "latent", "vae_epochs", "proxy_epochs", "proxy_learning_rate")


def check_ranges(params, *, positive: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """A clear error for a value out of range (every weight, `*_weight`, must not be negative)."""
    names = {field.name for field in fields(params)}
    for name in (*positive, *(n for n in POSITIVE_WHEREVER_PRESENT if n in names)):
        if getattr(params, name) <= 0:
            raise ValueError(f"{name} must be positive, not {getattr(params, name)!r}")
    for name in (*non_negative, *(n for n in names if n.endswith("_weight"))):
        if name in names and getattr(params, name) < 0:
            raise ValueError(f"{name} must not be negative, not {getattr(params, name)!r}")


@dataclass(frozen=True)
class GuardedLoopParams:
    """What every language-model method runs under (unlearning.methods.guarded)."""

    learning_rate: float = 1e-4
    # The budget: at most this many optimizer steps (one per forget batch; an epoch is one pass over
    # the forget set). The deletion plan quotes it as the most the job can cost.
    max_steps: int = 300
    batch_size: int = 32
    # Forget and retain measures are evaluated at each of the first this many steps, then every this
    # many steps, and at the end of every epoch longer than that (guarded.evaluated_at).
    eval_every_steps: int = 5
    # The utility floor, relative to the starting model: retained-text loss may rise by at most this
    # fraction, retained QA accuracy fall by at most this much (the audit policy's own utility
    # margin for retained QA is 0.1 too).
    max_retain_loss_increase: float = 0.25
    max_retained_qa_drop: float = 0.1
    retain_eval_size: int = 128  # retained texts the floor is measured on (a fixed sample, for speed)
    retain_qa_eval_size: int = 32
    # LoRA (peft): 0 trains the full parameters; a rank > 0 trains low-rank adapters on every linear
    # layer instead, merged into the new version unless keep_adapter (the version is then the
    # base plus its adapter). UNDIAL's paper: rank 8, alpha 16.
    lora_rank: int = 0
    lora_alpha: int = 16
    # LoRA trains with learning_rate times this: low-rank updates start from zero (B = 0) and move
    # a fraction of the weights, and at the full-parameter rate they barely moved in 6 steps here.
    lora_learning_rate_factor: float = 10.0
    keep_adapter: bool = False
    seed: int = 0

    @property
    def effective_learning_rate(self) -> float:
        return self.learning_rate * (self.lora_learning_rate_factor if self.lora_rank else 1.0)

    def __post_init__(self):
        check_ranges(self, positive=("learning_rate", "max_steps", "batch_size", "eval_every_steps", "retain_eval_size",
                                     "retain_qa_eval_size", "lora_alpha", "lora_learning_rate_factor"),
                     non_negative=("max_retain_loss_increase", "max_retained_qa_drop", "lora_rank"))
        if self.keep_adapter and not self.lora_rank:
            raise ValueError("keep_adapter needs LoRA: set lora_rank above 0")
        if self.max_steps > MAX_STEPS:
            raise ValueError(f"max_steps must be at most {MAX_STEPS}: a longer job would outlive the worker's time limit")


@dataclass(frozen=True)
class GradientAscentParams(GuardedLoopParams):
    """Gradient ascent on the forget set's NLL (Jang et al., "Knowledge Unlearning for Mitigating
    Privacy Risks in Language Models", ACL 2023). Unbounded: only the guard stops it collapsing."""


@dataclass(frozen=True)
class GradDiffParams(GuardedLoopParams):
    """Gradient difference: −γ·NLL(forget) + α·retain term (Liu et al., "Continual Learning and
    Private Unlearning", CoLLAs 2022; TOFU's baseline uses γ = α = 1). The retain term is the NLL of
    retained texts, or the KL divergence from the original model's predictions on them."""

    forget_weight: float = 1.0  # γ
    # α: weighted up from TOFU's 1 because one data subject's texts share their templates with
    # everyone else's (bench/RESULTS.md, "GradDiff's retain weight").
    retain_weight: float = 5.0
    retain_loss: Literal["nll", "kl"] = "nll"


@dataclass(frozen=True)
class NPOParams(GuardedLoopParams):
    """Negative preference optimisation: −(2/β)·log σ(−β·log(π_θ(y)/π_ref(y))) on forget texts, plus
    α·NLL(retain) ("NPO+RT"; Zhang et al., "Negative Preference Optimization", COLM 2024: β = 0.1)."""

    beta: float = 0.1
    forget_weight: float = 1.0
    retain_weight: float = 1.0


@dataclass(frozen=True)
class SimNPOParams(GuardedLoopParams):
    """NPO without the reference model, length-normalised: −(2/β)·log σ(−(β/|y|)·log π_θ(y) − δ), plus
    λ·NLL(retain) (Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for
    LLM Unlearning", 2024: β = 4.5, δ = 0, λ = 0.125 on TOFU)."""

    beta: float = 4.5
    delta: float = 0.0
    forget_weight: float = 1.0
    retain_weight: float = 0.125


@dataclass(frozen=True)
class RMUParams(GuardedLoopParams):
    """Representation misdirection: a middle layer's activations on forget tokens steered toward c·u
    for a fixed random unit vector u, its activations on retained tokens kept at the original's,
    only the MLPs of that layer and the two before it updated (Li et al., "The WMDP Benchmark", ICML
    2024: layer 7 of Zephyr-7B, c = 6.5, α = 1200, lr 5e-5). Activations are compared in units of
    the original's mean activation norm at that layer, so that c means the same on any width and
    scale; c keeps WMDP's 6.5 as a multiple of that norm, and α is measured here (WMDP's 1200 is in
    Zephyr's raw units, which these are not)."""

    learning_rate: float = 1e-3
    layer: int = -1  # the decoder block steered; -1: the middle one of the architecture
    updated_layers: int = 3  # MLPs updated: the steered layer's and those just before it
    steering_coefficient: float = 6.5  # c, in units of the layer's mean activation norm
    retain_weight: float = 10.0  # α (measured on the demo models: at 100 the forget term barely moved in 12 steps)

    def __post_init__(self):
        super().__post_init__()
        if self.layer < -1 or self.updated_layers < 1:
            raise ValueError("rmu.layer is a decoder block's index, or -1 for the middle one; updated_layers at least 1")


@dataclass(frozen=True)
class IdkDPOParams(GuardedLoopParams):
    """DPO toward a refusal: for each forget question (or text, split after its first third), "I don't
    know"-style answers preferred to the true one, against the original as reference, plus
    α·NLL(retain) (Rafailov et al., "Direct Preference Optimization", NeurIPS 2023; Maini et al.,
    "TOFU", COLM 2024, IdkDPO: β = 0.1)."""

    beta: float = 0.1
    forget_weight: float = 1.0
    retain_weight: float = 1.0


@dataclass(frozen=True)
class UNDIALParams(GuardedLoopParams):
    """Self-distillation with adjusted logits: the student is trained toward the original's
    distribution with the true next token's logit lowered by β, a bounded target that cannot
    collapse the way ascent does (Dong et al., "UNDIAL", NAACL 2025: β = 10, LoRA rank 8, lr 1e-4).
    The paper uses no retain term; open-unlearning adds α·NLL(retain) (α = 1), kept here."""

    beta: float = 10.0
    forget_weight: float = 1.0
    retain_weight: float = 1.0


ROW_MODELS = frozenset({"classifier", "regressor"})


@dataclass(frozen=True)
class RowLoopParams:
    """What every tabular method runs under (unlearning.methods.rows): measured after each epoch (or
    each candidate step), stopped at the target (the forgotten rows' loss reaches never-trained rows')
    or the utility floor, measured from the original: held-out accuracy down by at most
    max_heldout_accuracy_drop (classifiers; the audit policy's margin is 0.03), held-out squared error
    over the target variance up by at most max_heldout_error_rise (regressors; the policy's: 0.1)."""

    learning_rate: float = 1e-3
    max_epochs: int = 5
    batch_size: int = 64
    max_heldout_accuracy_drop: float = 0.03
    max_heldout_error_rise: float = 0.1
    seed: int = 0

    def __post_init__(self):
        check_ranges(self, positive=("learning_rate", "max_epochs", "batch_size"),
                     non_negative=("max_heldout_accuracy_drop", "max_heldout_error_rise", "step_halvings"))


@dataclass(frozen=True)
class IAUParams(RowLoopParams):
    """One full-batch step, θ − η·(α·∇L(retain) − γ·∇L(forget)): removing a row has the influence of
    adding one with the opposite gradient, and the retained rows' gradient corrects the step (Liu et
    al., "Efficient Machine Unlearning via Influence Approximation", 2025). Its gradient restriction
    during training (a gradient-norm penalty, α = 0.005) is a training option (train_tabular_model
    --gradient-norm-penalty 0.005). The guard tries the step at η and at halves of it, each from the
    same weights, and keeps the one within the floor whose forget loss is nearest the target."""

    # From a large step down: the mean gradient of rows a model fits well is small, and one step at
    # the training rate barely moves them (on digits: forget loss 0.005 → 0.011 at rate 1).
    learning_rate: float = 100.0
    forget_weight: float = 1.0
    retain_weight: float = 1.0
    step_halvings: int = 20  # down to 1e-4: one row's gradient can be far larger than a mean over many


@dataclass(frozen=True)
class BlindspotParams(RowLoopParams):
    """A "blindspot" proxy trained briefly on retained rows (it never saw the forgotten ones); the
    model fine-tuned so its outputs and intermediate activations on forgotten rows match the proxy's
    (attention transfer, weight λ = 50) while keeping its task loss on retained rows (Tarun et al.,
    "Deep Regression Unlearning", ICML 2023)."""

    proxy_epochs: int = 1
    proxy_learning_rate: float = 3e-3  # the tabular training recipe's rate: "briefly" is the epochs
    attention_weight: float = 50.0
    output_weight: float = 1.0
    retain_weight: float = 1.0


@dataclass(frozen=True)
class GaussianFinetuneParams(RowLoopParams):
    """Regressors: the forgotten rows' targets redrawn from a normal fit of the training targets, then
    one epoch of fine-tuning on retained and relabelled rows (the baseline of Tarun et al., ICML 2023),
    at the tabular training recipe's rate."""

    learning_rate: float = 3e-3
    max_epochs: int = 1


@dataclass(frozen=True)
class LabelAgnosticParams(RowLoopParams):
    """Label-agnostic forgetting: VAEs model the extractor's representations of all training rows and of
    the forgotten rows; the extractor is pushed away from the forgotten rows' distribution while the
    training rows' stay likely, and aligned with the original's on retained rows by a contrastive
    loss (the paper's two stages, here one loss per batch). No labels are used (Shen et al.,
    "Label-Agnostic Forgetting", ICLR 2024)."""

    latent: int = 8
    vae_epochs: int = 30
    contrastive_weight: float = 1.0
    temperature: float = 0.5


for method in (
    Method("gradient_ascent", "Gradient ascent", "approximate", LANGUAGE_MODELS, GradientAscentParams,
           "Jang et al., ACL 2023"),
    Method("graddiff", "Gradient difference (GradDiff)", "approximate", LANGUAGE_MODELS, GradDiffParams,
           "Liu et al., CoLLAs 2022; Maini et al., TOFU, COLM 2024"),
    Method("npo", "Negative preference optimisation (NPO)", "approximate", LANGUAGE_MODELS, NPOParams,
           "Zhang et al., COLM 2024"),
    Method("simnpo", "Simple NPO (SimNPO)", "approximate", LANGUAGE_MODELS, SimNPOParams, "Fan et al., 2024"),
    Method("rmu", "Representation misdirection (RMU)", "approximate", LANGUAGE_MODELS, RMUParams,
           "Li et al., WMDP, ICML 2024"),
    Method("idkdpo", "Preference for refusals (IdkDPO)", "approximate", LANGUAGE_MODELS, IdkDPOParams,
           "Rafailov et al., NeurIPS 2023; Maini et al., TOFU, COLM 2024"),
    Method("undial", "Self-distillation with adjusted logits (UNDIAL)", "approximate", LANGUAGE_MODELS, UNDIALParams,
           "Dong et al., NAACL 2025"),
    Method("iau", "Influence-approximation unlearning (IAU)", "approximate", ROW_MODELS, IAUParams,
           "Liu et al., 2025 (arXiv 2507.23257)"),
    Method("blindspot", "Blindspot unlearning", "approximate", ROW_MODELS, BlindspotParams, "Tarun et al., ICML 2023"),
    Method("gaussian_finetune", "Gaussian fine-tuning", "approximate", frozenset({"regressor"}), GaussianFinetuneParams,
           "Tarun et al., ICML 2023"),
    Method("label_agnostic", "Label-agnostic forgetting (LAF)", "approximate", ROW_MODELS, LabelAgnosticParams,
           "Shen et al., ICLR 2024"),
):
    register(method)
