from .export import ExportFinal, export_policy
from .generations import SampleGenerations
from .guards import NonFiniteError, NonFiniteGuard
from .timing import StepTimer

__all__ = ["ExportFinal", "export_policy", "SampleGenerations", "NonFiniteError", "NonFiniteGuard", "StepTimer"]
