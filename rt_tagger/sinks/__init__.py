"""Outputs that read the pipeline's messages: JSON Lines and the terminal view."""
from .jsonl import JsonlWriter, validate_message
from .terminal import TerminalView

__all__ = ["JsonlWriter", "TerminalView", "validate_message"]
