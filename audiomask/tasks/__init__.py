"""Tasks: what a kind of model does, as the trainer, the commands, the server and the exporter
need to know it — its input signals, objectives, training data and validation score.

Separation (one mixture in, one estimate per source out) and echo cancellation (microphone and
far-end reference in, the near-end talker out) are two implementations of :class:`Task`;
callers ask :func:`task_of` for a model's task instead of testing model names.

>>> task_of(audiomask.load("d3net-aec-small")).inputs
('microphone', 'far_end')
"""

from audiomask.tasks.base import TASKS, Task, task_of
from audiomask.tasks.echo_cancellation import ECHO_CANCELLATION, EchoCancellation
from audiomask.tasks.separation import SEPARATION, Separation

__all__ = ["ECHO_CANCELLATION", "SEPARATION", "TASKS", "EchoCancellation", "Separation", "Task", "task_of"]
