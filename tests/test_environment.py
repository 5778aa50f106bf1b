"""A missing requirement skips on a developer's machine and fails in CI."""

import pytest

from tests.environment import missing, needs


def test_missing_names_the_absent_tool() -> None:
    assert missing(root=False, tools=("sh",)) is None
    assert "kumonet-no-such-tool" in (missing(root=False, tools=("kumonet-no-such-tool",)) or "")


def test_outside_ci_it_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        needs(root=False, tools=("kumonet-no-such-tool",))


def test_in_ci_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make test"):
        needs(root=False, tools=("kumonet-no-such-tool",))
