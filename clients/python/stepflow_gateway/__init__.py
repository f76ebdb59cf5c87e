"""Python client of StepFlow Gateway."""

from .client import StepFlowGateway
from .errors import StepFlowError

__all__ = ["StepFlowGateway", "StepFlowError"]
