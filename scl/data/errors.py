"""Errors of the dataset layer.

Every problem a user can fix (a missing folder, a corrupt download, a wrong option) is
raised as a `DataError` whose message names the file or folder at fault *and* the fix,
so `scl prepare` can print it verbatim and exit with status 2 instead of a traceback.
"""

from __future__ import annotations


class DataError(Exception):
    """A dataset cannot be fetched, verified or read; the message says how to fix it."""

    exit_code = 2  # scl.errors


class UnknownDatasetError(DataError, ValueError):
    """A dataset name that is not in the registry (also a ValueError, for callers that expect one)."""


class ChecksumError(DataError):
    """A downloaded or hand-placed file does not have the upstream checksum."""


class ArchiveError(DataError):
    """An archive is truncated, corrupt, or does not have the expected layout."""
