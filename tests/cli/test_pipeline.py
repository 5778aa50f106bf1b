"""``kumonet pipeline`` prints the declared tables."""

import pytest

from kumonet.cli.main import main
from kumonet.dataplane.pipeline import KUMONET_PIPELINE


def test_pipeline_lists_every_declared_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline"]) == 0
    out = capsys.readouterr().out
    for table in KUMONET_PIPELINE.tables:
        assert table.name in out
