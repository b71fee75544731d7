"""aiomqtt's private paho client, which paho_adapter reaches into: fail loudly on change."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import aiomqtt
import pytest
from packaging.specifiers import SpecifierSet

from collector.acquisition import paho_adapter

ROOT = Path(__file__).resolve().parents[2]


async def test_aiomqtt_still_wraps_a_paho_client_with_what_the_adapter_uses() -> None:
    client = aiomqtt.Client("127.0.0.1")
    paho = paho_adapter._paho(client)  # raises, naming the adapter, if it moved
    for name in paho_adapter.PAHO_ATTRIBUTES:
        assert callable(getattr(paho, name)) or name == "on_publish", name


def test_the_adapter_names_itself_when_the_private_client_is_gone() -> None:
    class Moved:
        pass

    with pytest.raises(RuntimeError, match=r"paho_adapter\.py needs updating"):
        paho_adapter._paho(Moved())  # type: ignore[arg-type]


def test_the_installed_aiomqtt_is_inside_the_range_pinned_in_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("aiomqtt")]
    spec = SpecifierSet(pin.removeprefix("aiomqtt").split("#")[0].strip())
    assert len(spec), "aiomqtt must be pinned to the versions the adapter was tested with"
    assert "<" in str(spec), "an upper bound: a new aiomqtt release must be tested first"
    assert version("aiomqtt") in spec
