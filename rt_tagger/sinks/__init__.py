"""Outputs that read the pipeline's messages: JSON Lines, the terminal view, and the guard
that keeps one failing output from stopping the others."""
from .guard import GuardedSink, Outputs
from .jsonl import JsonlWriter, validate_message
from .terminal import TerminalView

__all__ = ["GuardedSink", "JsonlWriter", "Outputs", "TerminalView", "validate_message"]
