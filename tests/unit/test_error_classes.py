"""One vocabulary for what went wrong: every class of the error tree carries a label from one
closed set, the ledger's column and its documentation hold exactly that set, and the retry
policy's names are among it."""

from __future__ import annotations

import re
from typing import get_args

from gateway.errors import ERROR_CLASSES, AllTargetsFailed, SpilloverError, UpstreamFailure
from policies.route import ErrorClass
from tests.support.processes import ROOT


def _tree(root: type[SpilloverError]) -> list[type[SpilloverError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _tree(sub)
    return found


def _outcomes_of_all_failed() -> set[str]:
    timeout = AllTargetsFailed([], [], deadline=True)
    unavailable = AllTargetsFailed([], [], skipped_retry_after=1.0)
    failed = AllTargetsFailed([], [UpstreamFailure("x")])
    return {timeout.error_class, unavailable.error_class, failed.error_class}


def test_every_error_carries_a_label_of_the_closed_set_and_none_is_unused() -> None:
    classes = [c for c in _tree(SpilloverError) if c.__module__ == "gateway.errors"]
    labels = {c.error_class for c in classes if c is not AllTargetsFailed}
    labels |= _outcomes_of_all_failed()
    assert labels == ERROR_CLASSES
    leaves = [c for c in classes if not c.__subclasses__() and c is not AllTargetsFailed]
    by_label = {c.error_class: c.__name__ for c in leaves}
    assert len(by_label) == len(leaves), "two leaves of the tree share a label"


def test_the_retry_policy_names_only_upstream_failure_labels() -> None:
    upstream = {c.error_class for c in _tree(UpstreamFailure)}
    assert set(get_args(ErrorClass)) <= upstream <= ERROR_CLASSES


def test_the_ledger_documentation_lists_exactly_the_closed_set() -> None:
    text = (ROOT / "docs" / "cost-and-ledger.md").read_text()
    section = text.split("## `error_class`: one closed set", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
    assert documented == ERROR_CLASSES
