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
