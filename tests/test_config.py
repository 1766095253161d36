"""server/config.py: the defaults table and the validation that names the option."""

from __future__ import annotations

import pytest

from storypulse.server.config import DEFAULTS, ConfigError, ServerConfig


# -- config ---------------------------------------------------------------------


def test_config_defaults_come_from_the_table():
    config = ServerConfig.from_options({})
    assert config.as_dict() == DEFAULTS
    assert config.heartbeat_timeout == pytest.approx(3 * DEFAULTS["heartbeat"])
    assert ServerConfig.from_options({"port": None}).port == DEFAULTS["port"]


@pytest.mark.parametrize("options, names", [
    ({"min_workers": 5, "max_workers": 2}, "--min-workers 5 is above --max-workers 2"),
    ({"port": 65534}, "--port"),
    ({"port": 0}, "--port"),
    ({"max_workers": 0}, "--max-workers"),
    ({"min_workers": -1}, "--min-workers"),
    ({"time_scale": -0.5}, "--time-scale"),
    ({"stats_interval": 0}, "--stats-interval"),
    ({"rate_window": 0.1, "stats_interval": 0.5}, "--rate-window"),
    ({"heartbeat": -1}, "--heartbeat"),
    ({"shutdown_grace": -1}, "--shutdown-grace"),
    ({"queue_max": 3}, "--queue-max"),
    ({"log_level": "loud"}, "--log-level"),
    ({"bind": ""}, "--bind"),
    ({"flow_window": 0.0}, "--flow-window 0.0: must be > 0 and <= 86400 seconds"),
    ({"flow_window": 86_401.0}, "--flow-window"),
    ({"wip_limit": -1}, "--wip-limit -1: must be within 0-100000"),
    ({"wip_limit": 100_001}, "--wip-limit"),
    ({"colour": "red"}, "colour"),
])
def test_config_validation_names_the_option(options, names):
    with pytest.raises(ConfigError) as err:
        ServerConfig.from_options(options)
    assert names in str(err.value)


# -- what durability means: one text, in config.DURABILITY_LEVELS -----------------------


def test_each_store_keeps_each_durability_level_as_its_text_says():
    from storypulse.server.config import DEFAULTS, DURABILITY_LEVELS
    from storypulse.server.store import BACKENDS

    assert DEFAULTS["durability"] == "power-loss"
    for backend in BACKENDS:
        for level, meaning in DURABILITY_LEVELS.items():
            assert f"{backend.title} {backend.durability_setting(level)}" in meaning, (backend, level)


def test_the_help_the_install_guide_and_the_packaged_file_say_what_the_config_says():
    """The meaning of --durability is written once (the config field's metadata)."""
    from storypulse.server.cli import server_parser
    from storypulse.server.config import meaning_of_choices
    from support import REPO

    meaning = meaning_of_choices("durability")
    assert meaning.startswith("power-loss: a story is acknowledged only once it is flushed")
    assert meaning in " ".join(server_parser().format_help().split())
    (row,) = [line for line in (REPO / "docs" / "install.md").read_text().splitlines()
              if line.startswith("| `durability` |")]
    assert row.split(" | ")[-1].rstrip(" |").replace("`", "") == meaning
    lines = (REPO / "packaging" / "linux" / "server.toml").read_text().splitlines()
    above = lines[:lines.index('durability = "power-loss"')]
    comment = []
    for line in reversed(above):  # the comment block just above the key
        if not line.startswith("#"):
            break
        comment.insert(0, line.lstrip("# "))
    assert meaning in " ".join(comment)
