"""UNLEARNING_DEVICE: one setting for every engine. On the CPU (CI), the setting resolves and
refuses as it should; on a CUDA machine, the GPU-marked test checks where the tensors are, and that
SISA's "resumed equals retrained" holds byte for byte there too (deterministic kernels)."""

import pytest
import torch

from tests.conftest import one_torch_thread
from unlearning.numerics import DEVICE_SETTING, device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.mark.parametrize("setting, expected", [("", "cuda" if torch.cuda.is_available() else "cpu"),
                                               ("auto", "cuda" if torch.cuda.is_available() else "cpu"),
                                               ("cpu", "cpu"), (" CPU ", "cpu")])
def test_the_device_setting_resolves(monkeypatch, setting, expected):
    monkeypatch.setenv(DEVICE_SETTING, setting)
    assert device().type == expected


@pytest.mark.parametrize("setting", ["gpu", "cuda:x", "mps"])
def test_a_device_that_is_not_one_is_refused_by_name(monkeypatch, setting):
    monkeypatch.setenv(DEVICE_SETTING, setting)
    with pytest.raises(ValueError, match=f"{DEVICE_SETTING}=.*use auto, cpu, cuda or cuda:N"):
        device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_one_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setenv(DEVICE_SETTING, "cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        device()


def test_on_the_cpu_models_and_their_training_stay_on_the_cpu(tiny_model, monkeypatch):
    from unlearning.loading import load_checkpoint
    from unlearning.lm import text_losses

    monkeypatch.setenv(DEVICE_SETTING, "cpu")
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert len(text_losses(model, tokenizer, ["Question: Who?\nAnswer: nobody"])) == 1


@pytest.mark.gpu
@needs_cuda
def test_on_cuda_every_engine_runs_there_and_sisa_stays_exact(tiny_model, tmp_path, monkeypatch):
    from unlearning.lm import TrainingRecipe, greedy_generate, text_losses, train_causal_lm
    from unlearning.loading import load_checkpoint
    from unlearning.sisa import SisaConfig, execute_deletion, export_served_model, plan_deletion, train_sisa
    from unlearning.sisa_lm import CausalLMLearner
    from unlearning.store import checkpoint_sha256, save_checkpoint

    monkeypatch.setenv(DEVICE_SETTING, "cuda")
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    texts = [r.text for r in tiny_model.world.person_records(tiny_model.world.trained_people[0], include_canary=False)]
    assert len(text_losses(model, tokenizer, texts)) == len(texts)
    assert greedy_generate(model, tokenizer, ["Question: Where was"], 4)
    trained = train_causal_lm(texts, tokenizer, TrainingRecipe(n_layer=1, n_head=2, n_embd=32, epochs=1))
    assert next(trained.parameters()).device.type == "cuda"
    assert checkpoint_sha256(save_checkpoint(trained, tokenizer, tmp_path)[1])

    records = [record.as_json() for record in tiny_model.world.training_records()]
    config = SisaConfig(shards=2, slices=2, seed=1)
    recipe = TrainingRecipe(n_layer=1, n_head=2, n_embd=32, epochs=2, seed=1)
    with one_torch_thread():
        lineage = train_sisa(records, CausalLMLearner(tokenizer, recipe, config), config, tmp_path)
        assert lineage.device and "deterministic" in lineage.device
        late = [i for i, place in lineage.placements.items() if place.slice == 1][:2]
        plan = plan_deletion(lineage, late)
        learner = CausalLMLearner(tokenizer, recipe, config)
        resumed = execute_deletion(lineage, plan, records, learner, tmp_path)
        scratch = execute_deletion(lineage, plan, records, learner, tmp_path, from_scratch=True)
    assert export_served_model(resumed, tmp_path, tokenizer)[0] == export_served_model(scratch, tmp_path, tokenizer)[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_gpu_scale_demo_says_it_needs_cuda_and_trains_nothing(monkeypatch):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    monkeypatch.setenv(DEVICE_SETTING, "auto")
    with pytest.raises(CommandError, match="the gpu-scale demo needs a CUDA device .*resolves to cpu here"):
        call_command("demo", scale="gpu")


def test_a_sisa_deletion_on_another_device_than_its_lineage_is_refused(tmp_path):
    """Resumed on another device, a shard would not equal the same shard retrained from scratch."""
    from dataclasses import replace

    from unlearning.sisa import SisaConfig, execute_deletion, plan_deletion, train_sisa
    from unlearning.tabular import MLPRecipe, TabularLearner, load_tabular

    dataset, config = load_tabular("breast_cancer"), SisaConfig(shards=2, slices=2)
    learner = TabularLearner.for_dataset(dataset, MLPRecipe(epochs=2), config)
    with one_torch_thread():
        lineage = replace(train_sisa(dataset.train, learner, config, tmp_path), device="NVIDIA H200, bf16 autocast")
    plan = plan_deletion(lineage, [dataset.train[0]["record_id"]])
    with pytest.raises(ValueError, match="trained on NVIDIA H200, bf16 autocast, and this worker computes on the CPU"):
        execute_deletion(lineage, plan, dataset.train, learner, tmp_path)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_on_cuda_every_method_unlearns_there_full_and_through_lora(tiny_model, monkeypatch, lora_rank):
    from tests.unit.test_methods import LANGUAGE_MODEL_METHODS, QUICK, subject_split
    from unlearning.lm import mean_text_loss
    from unlearning.loading import load_checkpoint
    from unlearning.methods import UnlearningData, get_method

    monkeypatch.setenv(DEVICE_SETTING, "cuda")
    forget, retain, questions = subject_split(tiny_model)
    for name in LANGUAGE_MODEL_METHODS:
        model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
        before = mean_text_loss(model, tokenizer, forget)
        method = get_method(name)
        outcome = method.unlearn(model, tokenizer, UnlearningData(forget, retain, None, questions),
                                 method.params({**QUICK, "lora_rank": lora_rank}))
        assert {p.device.type for p in outcome.model.parameters()} == {"cuda"}, name
        assert mean_text_loss(outcome.model, tokenizer, forget) > before, name
