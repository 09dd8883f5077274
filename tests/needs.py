"""What a test needs from the machine: skipped on a developer's machine that lacks it, a failure in CI.

CI (``CI=true``) installs every piece the suite uses (``make test``: Debian packages, ../shared's checkpoints
beside the clone), so there a missing piece is a broken set-up, not a reason to skip.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def unless(present: bool, reason: str) -> pytest.MarkDecorator:
    """A mark: skip when not ``present`` outside CI; in CI the test runs (and fails on what is missing)."""
    return pytest.mark.skipif(not present and not IN_CI, reason=reason)


def skip_or_fail(reason: str) -> None:
    """Skip this test outside CI; fail it in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (in CI a missing piece fails: install it in make test)")
    pytest.skip(reason)
