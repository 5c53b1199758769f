"""Why a shadow copy produced no comparison: a fixed set, so it can label a counter."""

from __future__ import annotations

import enum


class DropReason(enum.StrEnum):
    """Why a shadow copy produced no comparison."""

    QUEUE_FULL = "queue_full"
    BODY_TOO_LARGE = "body_too_large"
    SHADOW_TIMEOUT = "shadow_timeout"
    SHADOW_ERROR = "shadow_error"
    NOT_MIRRORED_UNSAFE = "not_mirrored_unsafe"
    PRIMARY_FAILED = "primary_failed"
    # The JSON walk would have visited more than the route's `diff.max_nodes`.
    DIFF_BUDGET = "diff_budget"
    # The pairs waiting for the worker's diff helper already hold its bound of bytes.
    DIFF_BACKLOG = "diff_backlog"
    # The diff helper could not start, died, or failed the comparison.
    DIFF_FAILED = "diff_failed"
