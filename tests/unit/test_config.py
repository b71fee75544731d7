from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli.main import main
from collector.config import settings as config
from collector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = """
[[bus]]
name = "bus1"
port = "/dev/ttyUSB0"

[[meter]]
id = "m1"
bus = "bus1"
address = "000000000001"

[[schedule]]
name = "interval"
every = "15m"
quantities = ["1-0:1.8.0"]
"""


def load_text(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return config.load(path)


def test_the_shipped_example_config_loads() -> None:
    settings = config.load(ROOT / "collector.toml")
    assert [b.name for b in settings.buses] == ["bus1"]
    assert settings.meters[1].multiplier == 40.0
    assert settings.schedules[2].frozen_days == 3


def test_unknown_key_suggests_the_close_one_with_an_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, BASE.replace('port = "/dev/ttyUSB0"',
                                         'port = "/dev/ttyUSB0"\nbaudrate = 9600'))
    text = str(info.value)
    assert "collector.toml: bus[0].baudrate: unknown key; did you mean 'baud'?" in text
    assert "for example: baud = 2400" in text


def test_bad_address_names_the_meter_index_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"meter\[0\]\.address: '0000000000x1' must be 12"):
        load_text(tmp_path, BASE.replace('"000000000001"', '"0000000000x1"'))


def test_meter_on_an_undefined_bus_lists_the_known_buses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'bus9' is not a \[\[bus\]\] name \(known: bus1\)"):
        load_text(tmp_path, BASE.replace('bus = "bus1"', 'bus = "bus9"'))


def test_two_meters_with_one_address_on_one_bus_are_refused(tmp_path: Path) -> None:
    twin = '\n[[meter]]\nid = "m2"\nbus = "bus1"\naddress = "000000000001"\n'
    with pytest.raises(ConfigError, match="already used by meter m1"):
        load_text(tmp_path, BASE + twin)


def test_bad_duration_and_bad_obis_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'fortnightly' is not a duration"):
        load_text(tmp_path, BASE.replace('"15m"', '"fortnightly"'))
    with pytest.raises(ConfigError, match="'energy' is not an OBIS code"):
        load_text(tmp_path, BASE.replace('["1-0:1.8.0"]', '["energy"]'))


def test_password_in_the_storage_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must not hold the password"):
        load_text(tmp_path, '[storage]\nurl = "postgresql://u:secret@h/db"\n' + BASE)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"collector.toml: \(syntax\)"):
        load_text(tmp_path, BASE + "\n[[meter]\n")


def test_run_with_a_bad_config_exits_2_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(BASE.replace("baud", "x").replace('"15m"', '"soon"'))
    result = CliRunner().invoke(main, ["run", "-c", str(path)])
    assert result.exit_code == 2
    assert "schedule[0].every" in result.output


def test_a_reshape_threshold_may_be_negative_but_must_be_a_correlation(tmp_path: Path) -> None:
    assert load_text(tmp_path, BASE + "[flags]\nshape_corr = -0.5\n").flags.thresholds \
        .shape_corr == -0.5
    with pytest.raises(ConfigError, match=r"flags\.shape_corr: a correlation runs from -1 to 1"):
        load_text(tmp_path, BASE + "[flags]\nshape_corr = -1.5\n")
    with pytest.raises(ConfigError, match=r"flags\.drop_ratio: must not be negative"):
        load_text(tmp_path, BASE + "[flags]\ndrop_ratio = -0.1\n")


def test_api_workers_are_a_small_positive_count(tmp_path: Path) -> None:
    assert load_text(tmp_path, BASE + "[api]\nworkers = 4\n").api.workers == 4
    assert load_text(tmp_path, BASE).api.workers == 1
    with pytest.raises(ConfigError, match=r"api\.workers: must be between 1 and 64, got 0"):
        load_text(tmp_path, BASE + "[api]\nworkers = 0\n")


async def test_a_head_end_bounds_what_the_broker_may_have_in_flight_to_it(
        tmp_path: Path) -> None:
    from collector.acquisition import mqtt_link

    got = load_text(tmp_path, BASE + '[mqtt]\nrole = "headend"\nreceive_maximum = 50\n')
    assert got.mqtt.receive_maximum == 50
    client = mqtt_link.client(got.mqtt, "headend-1", persistent=True)
    assert client._properties is not None and client._properties.ReceiveMaximum == 50
    with pytest.raises(ConfigError, match=r"receive_maximum.*1\.\.65535"):
        load_text(tmp_path, BASE + '[mqtt]\nrole = "headend"\nreceive_maximum = 0\n')
