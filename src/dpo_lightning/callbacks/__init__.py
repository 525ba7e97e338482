from .export import ExportFinal, export_policy

__all__ = ["ExportFinal", "export_policy"]
