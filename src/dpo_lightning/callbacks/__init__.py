from .export import ExportFinal, export_policy
from .generations import SampleGenerations

__all__ = ["ExportFinal", "export_policy", "SampleGenerations"]
