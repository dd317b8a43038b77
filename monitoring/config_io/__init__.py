"""Import and export of monitoring-config.yaml: validation (schema), the plan of changes
(plan), writing it (apply), the whole import in one transaction (service) and export."""

from .errors import ConfigError, Problem
from .export import ExportError, export_config_text, export_document
from .plan import CONFIG_API_USER, Action, Change, Plan, build_plan
from .schema import ConfigSpec, parse_config
from .service import ImportResult, import_config_file

__all__ = [
    "CONFIG_API_USER",
    "Action",
    "Change",
    "ConfigError",
    "ConfigSpec",
    "ExportError",
    "ImportResult",
    "Plan",
    "Problem",
    "build_plan",
    "export_config_text",
    "export_document",
    "import_config_file",
    "parse_config",
]
