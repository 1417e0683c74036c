"""Checkpoints are loaded without running code from them (smallvision.networks.load_checkpoint)."""

from __future__ import annotations

import os

import pytest
import torch


def test_a_checkpoint_that_runs_code_when_unpickled_is_refused(tmp_path):
    from smallvision import networks
    from smallvision.errors import DataError

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    ckpt = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": {"spec": {"network": "scratch"}}, "state_dict": {"net.w": Exploit()}}, ckpt)
    with pytest.raises(DataError, match=r"refusing to load .*best\.ckpt"):
        networks.load_checkpoint(ckpt)
    assert not marker.exists()
