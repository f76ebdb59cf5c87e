"""Python client of StepFlow Gateway: register AsyncAPI documents, publish
messages and subscribe to channels."""

from .client import StepFlowGateway
from .errors import StepFlowError
from .subscription import MessageCallback

__all__ = ["MessageCallback", "StepFlowError", "StepFlowGateway"]
