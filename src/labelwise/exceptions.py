"""The errors Labelwise raises on purpose.

Every error the library raises deliberately derives from :class:`LabelwiseError`, so an adapter
(the CLI, the HTTP server) maps the whole family to exit codes or status codes in one place::

    LabelwiseError
    ├── InvalidDataError        (also ValueError)  the data is unusable: missing file, unknown
    │                                               column, NaN/inf features, mismatched shapes,
    │                                               fewer than two classes where two are needed
    ├── InvalidParameterError   (also ValueError)  a setting is wrong: unknown strategy or model
    │                                               name, a fraction outside [0, 1], a bad range
    ├── PoolExhaustedError                          nothing (or not enough) left to query
    ├── ModelCapabilityError    (also TypeError)   the model cannot do what the strategy asks,
    │                                               e.g. entropy without ``predict_proba``
    ├── NotFoundError                               no such project, item or label -- or one
    │                                               that belongs to another project (HTTP 404)
    ├── ConflictError                               the request clashes with the stored state:
    │                                               nothing to undo, an item leased to someone
    │                                               else (HTTP 409)
    ├── AuthenticationError                         no token, or an unknown one (HTTP 401)
    │   └── PermissionDeniedError                   a valid token whose role may not do this
    │                                               (HTTP 403)
    └── StorageError                                the database or the disk cannot serve:
        │                                           damaged, unreachable (HTTP 503)
        └── DiskFullError                           no space left (HTTP 507)

Messages name what was wrong: the parameter or column, the value received and what was expected.

Data that can be used but looks wrong (a label column with about as many values as rows, a file
whose text encoding had to be guessed, texts that repeat under new ids) is not an error: the
readers and importers emit a :class:`DataWarning` (a :class:`UserWarning`) through
:mod:`warnings` and carry on. Its message is one line naming the file, the column and the
figures; an adapter records them (``warnings.catch_warnings(record=True)``) and shows each.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "DataWarning",
    "DiskFullError",
    "InvalidDataError",
    "InvalidParameterError",
    "LabelwiseError",
    "ModelCapabilityError",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolExhaustedError",
    "StorageError",
]


class LabelwiseError(Exception):
    """Base class of every error Labelwise raises deliberately."""


class InvalidDataError(LabelwiseError, ValueError):
    """The data given cannot be used as it is."""


class InvalidParameterError(LabelwiseError, ValueError):
    """A parameter has a value outside what is accepted."""


class PoolExhaustedError(LabelwiseError):
    """The pool holds fewer unlabeled items than the query asks for."""


class ModelCapabilityError(LabelwiseError, TypeError):
    """The model lacks a method the strategy needs (``predict_proba``, ``decision_function``)."""


class NotFoundError(LabelwiseError):
    """No such object, or it belongs to another project (never say which)."""


class ConflictError(LabelwiseError):
    """The request contradicts the stored state."""


class AuthenticationError(LabelwiseError):
    """Missing or unknown credentials."""


class PermissionDeniedError(AuthenticationError):
    """Known credentials whose role does not allow the request."""


class StorageError(LabelwiseError):
    """The database or the disk cannot serve the request: damaged, unreadable, unreachable."""


class DiskFullError(StorageError):
    """No space is left where the project writes (its database or folder)."""


class DataWarning(UserWarning):
    """The data was used as given, but something in it looks wrong; the message says what."""
