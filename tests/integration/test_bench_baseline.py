"""The bare Faust baseline of ``ripple bench`` runs on the real broker and passes every event on."""

import asyncio
import math

import pytest

from streams.bench import faust_baseline


@pytest.mark.parametrize("batch", [0, 64])
def test_bare_faust_baseline_passes_every_event_through_a_table(bootstrap, tmp_path, batch):
    eps = asyncio.run(faust_baseline(bootstrap, 300, table=True, batch=batch, log_path=tmp_path / "faust.log",
                                     timeout_s=60))
    assert not math.isnan(eps) and eps > 0, (tmp_path / "faust.log").read_text()[-2000:]
