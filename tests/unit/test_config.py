from pathlib import Path

import pytest

from gpuhive.config import Settings, load_settings, update_settings, write_settings
from gpuhive.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    assert s == Settings() and s.heartbeat_interval == 5.0 and s.listen_port == 2222


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    write_settings(tmp_path / "config.toml", {"listen_port": 3000, "heartbeat_interval": 2.0,
                                              "endpoint": "h:3000"})
    s = load_settings(tmp_path, env={"GPUHIVE_HEARTBEAT_INTERVAL": "1.5"})
    assert (s.listen_port, s.heartbeat_interval, s.endpoint) == (3000, 1.5, "h:3000")
    s = load_settings(tmp_path, env={"GPUHIVE_HEARTBEAT_INTERVAL": "1.5"},
                      overrides={"heartbeat_interval": 0.5, "listen_port": None})
    assert (s.listen_port, s.heartbeat_interval) == (3000, 0.5)


@pytest.mark.parametrize(
    ("env", "key"),
    [({"GPUHIVE_LISTEN_PORT": "abc"}, "listen_port"),
     ({"GPUHIVE_LISTEN_PORT": "70000"}, "listen_port"),
     ({"GPUHIVE_HEARTBEAT_INTERVAL": "0"}, "heartbeat_interval"),
     ({"GPUHIVE_ENDPOINT": "nohost"}, "endpoint"),
     ({"GPUHIVE_FORWARD_PORT_MIN": "50000", "GPUHIVE_FORWARD_PORT_MAX": "40000"},
      "forward_port_min")],
)
def test_bad_values_name_the_key(tmp_path: Path, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, env=env)
    assert info.value.data["key"] == key and key in str(info.value)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("hartbeat = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'hartbeat'"):
        load_settings(tmp_path, env={})


def test_broken_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("listen_port = = 3\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, env={})


def test_update_settings_keeps_what_is_there_and_escapes_strings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_settings(path, {"listen_port": 3000})
    update_settings(path, {"overlay_endpoint": "home.example.org:51821",
                           "endpoint": 'ctl "x":2222'})
    s = load_settings(tmp_path, env={})
    assert s.listen_port == 3000 and s.overlay_endpoint == "home.example.org:51821"
    assert s.endpoint == 'ctl "x":2222'
    with pytest.raises(ConfigError, match="unknown setting"):
        update_settings(path, {"no_such_key": 1})
