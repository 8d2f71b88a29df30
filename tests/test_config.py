from __future__ import annotations

from pathlib import Path

import pytest

from m3leo_cli.config import load_settings
from m3leo_cli.errors import ConfigError


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('workers = 3\nendpoint = "http://file:1"\ndata_dir = "/from/file"\n')
    env = {"M3LEO_CONFIG": str(cfg), "HF_ENDPOINT": "http://env:2/"}
    s = load_settings({"data_dir": tmp_path / "flag"}, env=env)
    assert s.data_dir == tmp_path / "flag"  # flag beats file
    assert s.endpoint == "http://env:2"  # env beats file, trailing slash stripped
    assert s.workers == 3  # file beats default
    assert s.revision == "main"  # default
    assert s.config_path == cfg


def test_m3leo_variables_beat_hf_ones() -> None:
    env = {"M3LEO_ENDPOINT": "http://a", "HF_ENDPOINT": "http://b", "HF_TOKEN": "hf_x"}
    s = load_settings(env=env)
    assert s.endpoint == "http://a"
    assert s.token == "hf_x"
    assert s.request_budget == 5000  # a token raises the Hub's resolver quota


def test_offline_flag_and_anonymous_budget() -> None:
    s = load_settings(env={"HF_HUB_OFFLINE": "1"})
    assert s.offline is True
    assert s.request_budget == 3000


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("workers = 'many'", "bad value"), ("colour = 1", "unknown setting"), ("[[x", "cannot read")],
)
def test_bad_config_file_is_a_config_error(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"M3LEO_CONFIG": str(cfg)})
    assert fragment in exc.value.message
    assert exc.value.hint


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"M3LEO_WORKERS": "0"})
    assert "workers" in exc.value.message
    with pytest.raises(ConfigError) as exc2:
        load_settings(env={"M3LEO_TIMEOUT": "soon"})
    assert "$M3LEO_TIMEOUT" in exc2.value.message


def test_sources_say_where_each_value_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("workers = 3\n")
    s = load_settings({"revision": "v1"}, env={"M3LEO_CONFIG": str(cfg), "HF_TOKEN": "hf_x"})
    assert s.source_of("revision") == "command line"
    assert s.source_of("token") == "$HF_TOKEN"
    assert s.source_of("workers") == str(cfg)
    assert s.source_of("timeout") == "default"


def test_workers_are_bounded() -> None:
    from m3leo_cli.errors import UsageError

    with pytest.raises(UsageError) as exc:
        load_settings({"workers": 100_000}, env={})
    assert exc.value.message.startswith("--workers must be between 1 and 256")
    with pytest.raises(ConfigError) as cexc:
        load_settings(env={"M3LEO_WORKERS": "999"})
    assert "$M3LEO_WORKERS" in cexc.value.message
