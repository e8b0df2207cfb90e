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
    └── ModelCapabilityError    (also TypeError)   the model cannot do what the strategy asks,
                                                    e.g. entropy without ``predict_proba``

Messages name what was wrong: the parameter or column, the value received and what was expected.
"""

from __future__ import annotations

__all__ = [
    "InvalidDataError",
    "InvalidParameterError",
    "LabelwiseError",
    "ModelCapabilityError",
    "PoolExhaustedError",
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
