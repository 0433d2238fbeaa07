"""The scheduler: dataflow graphs of secure ops, the round-merging executor, jobs."""

from ._executor import Executor, JobStatistics, PeerJobStatistics
from ._job import Job, JobSettings
from ._tensor import SecretTensor

__all__ = ["Executor", "Job", "JobSettings", "JobStatistics", "PeerJobStatistics", "SecretTensor"]
