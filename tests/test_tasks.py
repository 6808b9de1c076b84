"""Tasks: separation and echo cancellation behind one protocol (audiomask.tasks)."""

import pytest
import torch

import audiomask
from audiomask.losses import aec_loss, aec_near_end_loss, pit_si_sdr_loss
from audiomask.tasks import ECHO_CANCELLATION, SEPARATION, TASKS, task_of


def test_each_model_has_its_task():
    assert task_of(audiomask.build("convtasnet", "tiny")) is SEPARATION
    assert task_of(audiomask.build("d3net-aec", "tiny")) is ECHO_CANCELLATION
    assert set(TASKS) == {"separation", "aec"}
    assert SEPARATION.inputs == ("mixture",) and ECHO_CANCELLATION.inputs == ("microphone", "far_end")


def test_losses_by_name_auto_and_across_tasks():
    assert SEPARATION.loss("auto") is pit_si_sdr_loss and ECHO_CANCELLATION.loss("auto") is aec_loss
    assert ECHO_CANCELLATION.loss("aec_near_end") is aec_near_end_loss
    with pytest.raises(ValueError, match="aec_near_end is an objective of the aec task, but the model.s task is separation"):
        SEPARATION.loss("aec_near_end")
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        ECHO_CANCELLATION.loss("l1")


def test_loss_args_bind_keywords_of_the_objective():
    est, targets = torch.randn(2, 3, 800), torch.randn(2, 3, 800)
    targets[1, 0] = 0  # far-end single talk: the suppression term, which suppression_weight scales
    bound = ECHO_CANCELLATION.loss("aec_near_end", {"suppression_weight": 0.25, "max_db": 20.0})
    assert bound(est, targets) == aec_near_end_loss(est, targets, suppression_weight=0.25, max_db=20.0)
    assert bound(est, targets) != aec_near_end_loss(est, targets)
    assert ECHO_CANCELLATION.loss("aec_near_end", {}) is aec_near_end_loss
    with pytest.raises(ValueError, match="optim.loss_args: aec_near_end takes no argument 'weight'; it takes "
                                         "suppression_weight, echo_free_weight, max_db, silent_db"):
        ECHO_CANCELLATION.loss("aec_near_end", {"weight": 1.0})


def test_unknown_task_is_one_line():
    model = torch.nn.Linear(1, 1)
    model.task = "dereverberation"
    with pytest.raises(ValueError, match="unknown task 'dereverberation'; known: aec, separation"):
        task_of(model)


def test_validation_gain_is_zero_for_doing_nothing():
    """The score is an improvement over the input: an identity model gets 0 dB."""
    torch.manual_seed(0)
    near, echo = torch.randn(1, 8000), torch.randn(1, 8000)
    passthrough = lambda mic, far: mic  # noqa: E731
    targets = torch.stack([near, echo, torch.zeros_like(near)], 1)
    assert ECHO_CANCELLATION.validation_gain(passthrough, (near + echo, echo, targets)) == pytest.approx(0.0, abs=1e-5)
    src = torch.randn(1, 2, 8000)
    copies = lambda mix: mix[:, None].expand(-1, 2, -1)  # noqa: E731
    assert SEPARATION.validation_gain(copies, (src.sum(1), src)) == pytest.approx(0.0, abs=1e-5)
