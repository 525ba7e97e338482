from .export import ExportFinal, export_policy
from .generations import SampleGenerations
from .guards import NonFiniteError, NonFiniteGuard
from .preemption import PREEMPTED_EXIT_CODE, Preempted, Preemption
from .timing import StepTimer

__all__ = [
    "ExportFinal",
    "export_policy",
    "SampleGenerations",
    "NonFiniteError",
    "NonFiniteGuard",
    "PREEMPTED_EXIT_CODE",
    "Preempted",
    "Preemption",
    "StepTimer",
]
