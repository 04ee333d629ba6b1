"""Errors the user can act on, and the process exit codes the CLI maps them to.

Slicer's background-process runner reads the exit code to tell bad input (show the message),
a cancel (say nothing) and an internal failure (show the log) apart.
"""

EXIT_OK = 0
EXIT_FAILED = 1  # unexpected internal error: a bug or an environment problem
EXIT_BAD_INPUT = 2  # the user's input (file, image, option, model) cannot be used; argparse uses 2 too
EXIT_CANCELLED = 3  # the run was stopped on request (terminate signal / Ctrl+C); nothing was written


class SpineBrainError(Exception):
    """Base class for errors with a message meant for the user."""

    exit_code = EXIT_FAILED


class InputError(SpineBrainError, ValueError):
    """The input cannot be used. The message says what is wrong and what to do."""

    exit_code = EXIT_BAD_INPUT


class ModelError(InputError):
    """A model package is missing, corrupt, tampered with, or made for another task."""


class CancelledError(SpineBrainError):
    """The run was cancelled on request."""

    exit_code = EXIT_CANCELLED


class InputTypeError(InputError, TypeError):
    """A Python caller passed the wrong kind of object (e.g. a numpy array where an image is needed)."""
