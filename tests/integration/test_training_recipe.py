"""The training-run recipe (``longify.training_run.run_training``) that ``pretrain`` and ``qa train`` share:
killed right after any of its steps (SIGKILL), the same command again ends with the result of an uninterrupted
run: the same weights, metrics and training loss, and the same count of tokens trained on in its cost record. ``pretrain`` of a short source converts it inside the recipe,
so a kill before, during or after the conversion is covered too.

Each killed run is a fork of this process (no interpreter start per step), single-threaded like the
reference run, so that the weights can be compared bit for bit."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from helpers import (
    killed_in_fork,
    qa_train_argv,
    read_json,
    same_weights,
    small_pretrain_argv,
    write_wikitext,
)
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain
from longify.qa.args import parse_qa_args
from longify.qa.train import train_qa
from longify.training_run import STEPS, TrainingCommand


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread, here and in the forks (where OpenMP's pool must not be used), for every run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def killed_at(step: str, run: Callable[[], object]) -> None:
    """Run ``run`` in a fork of this process that SIGKILLs itself once the recipe has reached ``step``."""

    def reached(self: TrainingCommand, name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    def patched() -> object:
        TrainingCommand.reached = reached  # type: ignore[method-assign]  # in the fork only
        return run()

    killed_in_fork(patched)


def test_every_step_is_a_reached_point() -> None:
    """The kill points below are the recipe's own list, in the order it reaches them."""
    assert STEPS[0] == "locked" and STEPS[-1] == "finished" and len(set(STEPS)) == len(STEPS) == 9


# -------------------------------------------------------------------------------------------- pretrain


@pytest.fixture(scope="module")
def pretrain_setup(tiny_sources, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recipe-pretrain")
    wiki = write_wikitext(root / "wiki")
    ref = root / "runs" / "reference"
    pretrain(parse_pretrain_args(small_pretrain_argv(tiny_sources["roberta"], ref, wiki, 4)))
    return {"root": root, "wiki": wiki, "reference": ref, "source": tiny_sources["roberta"]}


@pytest.mark.parametrize("step", STEPS)
def test_pretrain_of_a_short_source_killed_after_any_step_resumes_to_the_same_result(
    pretrain_setup, step
) -> None:
    s = pretrain_setup
    run = s["root"] / "runs" / step.replace(" ", "-")
    argv = small_pretrain_argv(s["source"], run, s["wiki"], 4)
    killed_at(step, lambda: pretrain(parse_pretrain_args(argv)))
    pretrain(parse_pretrain_args(argv))
    same_weights(s["reference"], run)
    same_weights(s["reference"] / "converted", run / "converted")
    a, b = read_json(s["reference"] / "pretrain_metrics.json"), read_json(run / "pretrain_metrics.json")
    for key in ("initial", "evals", "final", "steps", "train_loss"):
        assert a[key] == b[key], key
    assert b["cost"]["steps"] == 4 and b["cost"]["train_tokens"] == a["cost"]["train_tokens"] == 4 * 2 * 128
    assert read_json(run / "longify_run.json")["defining_args"]["--seed"] == 7


# -------------------------------------------------------------------------------------------- qa train


@pytest.fixture(scope="module")
def qa_reference(qa_setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ref = tmp_path_factory.mktemp("recipe-qa") / "reference"
    train_qa(parse_qa_args(qa_train_argv(qa_setup, ref)))
    return ref


@pytest.mark.parametrize("step", STEPS)
def test_qa_train_killed_after_any_step_resumes_to_the_same_result(
    qa_setup, qa_reference, tmp_path, step
) -> None:
    run = tmp_path / "run"
    argv = qa_train_argv(qa_setup, run)
    killed_at(step, lambda: train_qa(parse_qa_args(argv)))
    train_qa(parse_qa_args(argv))
    expected, got = read_json(qa_reference / "results.json"), read_json(run / "results.json")
    assert got["train"]["global_step"] == expected["train"]["global_step"]
    assert got["train"]["training_loss"] == expected["train"]["training_loss"]
    assert got["average"] == expected["average"]
    assert (
        got["cost"]["train_tokens"] == expected["cost"]["train_tokens"] > 0
    )  # the whole run's, across a kill
    assert read_json(run / "predictions.json") == read_json(qa_reference / "predictions.json")
    same_weights(qa_reference, run)


def test_the_cost_record_says_what_the_training_took(pretrain_setup, qa_reference, qa_setup) -> None:
    """Seconds per step, real tokens per second (QA windows: their non-padding tokens only) and peak memory."""
    pre = read_json(pretrain_setup["reference"] / "pretrain_metrics.json")["cost"]
    qa = read_json(qa_reference / "results.json")["cost"]
    for cost in (pre, qa):
        assert cost["train_seconds"] > 0 and cost["peak_memory_mb"] > 10
        assert cost["seconds_per_step"] == pytest.approx(cost["train_seconds"] / cost["steps"], rel=0.02)
        assert cost["train_tokens_per_second"] == pytest.approx(
            cost["train_tokens"] / cost["train_seconds"], rel=1e-3
        )
        assert cost["memory"] == "cpu max rss" and cost["device"].startswith("cpu-")
    windows = read_json(qa_reference / "results.json")["train"]["global_step"] * 4 * 64
    assert 0 < qa["train_tokens"] < windows  # windows padded to 64 count only their real tokens
