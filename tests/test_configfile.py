"""The layering of server options: TOML file < environment < command line."""

import pytest

from storypulse.server.configfile import KEYS, ConfigError, config_path, load, merge, read_file, server_config


def test_later_layers_win_and_unset_layers_leave_values_alone():
    merged = merge(
        {"port": 6000, "min_workers": 1, "db": "/var/lib/storypulse/a.db"},
        {"STORYPULSE_PORT": "7000", "STORYPULSE_MAX_WORKERS": "8", "HOME": "/root"},
        {"port": 8000, "time_scale": None},
    )
    assert merged == {"port": 8000, "min_workers": 1, "max_workers": 8, "db": "/var/lib/storypulse/a.db"}


def test_environment_values_are_typed():
    merged = merge({}, {"STORYPULSE_TIME_SCALE": "0.5", "STORYPULSE_MIN_WORKERS": " 3 ",
                        "STORYPULSE_LOG_LEVEL": "debug"}, {})
    assert merged == {"time_scale": 0.5, "min_workers": 3, "log_level": "debug"}
    assert isinstance(merged["time_scale"], float)


def test_an_empty_environment_variable_counts_as_unset():
    assert merge({"port": 6000}, {"STORYPULSE_PORT": ""}, {}) == {"port": 6000}


def test_a_whole_number_in_the_file_is_accepted_where_a_number_is_expected():
    merged = merge({"stats_interval": 1}, {}, {})
    assert merged == {"stats_interval": 1.0} and isinstance(merged["stats_interval"], float)


@pytest.mark.parametrize("env, value, words", [
    ("STORYPULSE_PORT", "55x", ["STORYPULSE_PORT", "'55x'", "whole number"]),
    ("STORYPULSE_MIN_WORKERS", "2.5", ["STORYPULSE_MIN_WORKERS", "whole number"]),
    ("STORYPULSE_TIME_SCALE", "fast", ["STORYPULSE_TIME_SCALE", "'fast'", "a number"]),
    ("STORYPULSE_HEARTBEAT", "nan", ["STORYPULSE_HEARTBEAT", "finite"]),
])
def test_a_bad_environment_value_names_the_variable(env, value, words):
    with pytest.raises(ConfigError) as err:
        merge({}, {env: value}, {})
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("key, raw, words", [
    ("port", "5555", ["'port'", "whole number", "str"]),
    ("port", True, ["'port'", "boolean"]),
    ("port", 5555.0, ["'port'", "float"]),
    ("time_scale", "1", ["'time_scale'", "a number"]),
    ("db", 3, ["'db'", "a string"]),
    ("bind", ["127.0.0.1"], ["'bind'", "an array"]),
    ("shutdown_grace", float("inf"), ["shutdown_grace", "finite"]),
])
def test_a_badly_typed_file_value_names_the_key_and_the_file(key, raw, words):
    with pytest.raises(ConfigError) as err:
        merge({key: raw}, {}, {}, file_label="/etc/storypulse/server.toml")
    assert "/etc/storypulse/server.toml" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_an_unknown_key_is_an_error_naming_the_key_and_the_file():
    with pytest.raises(ConfigError, match=r"server\.toml: unknown key 'min-workers' \(did you mean 'min_workers'\?\)"):
        merge({"min-workers": 2}, {}, {}, file_label="server.toml")
    with pytest.raises(ConfigError, match="unknown key 'colour'; known keys: db, bind"):
        merge({"colour": "red"}, {}, {}, file_label="server.toml")


def test_unrelated_and_unknown_environment_variables_are_ignored():
    assert merge({}, {"STORYPULSE_COLOUR": "red", "PORT": "1"}, {}) == {}


def test_every_key_has_an_env_var_and_an_option_of_the_same_name():
    key = KEYS["stats_interval"]
    assert (key.env, key.option) == ("STORYPULSE_STATS_INTERVAL", "--stats-interval")
    assert len({k.env for k in KEYS.values()}) == len(KEYS)


def test_keys_follow_the_servers_config_table():
    """A setting added to the server's table gets a file key and a variable with no change here."""
    from dataclasses import fields

    from storypulse.server.config import ServerConfig

    assert set(KEYS) == {f.name for f in fields(ServerConfig)}
    assert (KEYS["db"].type, KEYS["port"].type, KEYS["heartbeat"].type) == (str, int, float)


def test_the_file_comes_from_the_option_then_the_environment_then_nowhere(tmp_path):
    assert config_path("a.toml", {"STORYPULSE_CONFIG": "b.toml"}).name == "a.toml"
    assert config_path(None, {"STORYPULSE_CONFIG": "b.toml"}).name == "b.toml"
    assert config_path(None, {"STORYPULSE_CONFIG": ""}) is None
    assert config_path(None, {}) is None


def test_load_reads_the_file_and_layers_the_rest_on_top(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text('# the service\ndb = "/srv/sp.db"\nport = 6000\nmax_workers = 4\n')
    merged = load(None, {"STORYPULSE_CONFIG": str(path), "STORYPULSE_PORT": "6100"}, {"max_workers": 6})
    assert merged == {"db": "/srv/sp.db", "port": 6100, "max_workers": 6}


def test_a_missing_or_broken_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_file(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML.*line 1"):
        read_file(broken)


def test_the_packaged_default_file_parses_and_uses_only_known_keys():
    from support import REPO

    values = read_file(REPO / "packaging" / "linux" / "server.toml")
    merged = merge(values, {}, {}, file_label="server.toml")
    assert merged["db"].startswith("/var/lib/storypulse/")


def test_the_validated_config_takes_defaults_for_what_no_layer_sets(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text("min_workers = 2\nmax_workers = 3\n")
    config = server_config(str(path), {"STORYPULSE_TIME_SCALE": "0.5"}, {"port": 6001, "bind": None})
    assert (config.min_workers, config.max_workers, config.time_scale, config.port) == (2, 3, 0.5, 6001)
    assert config.bind == "127.0.0.1"


def test_a_range_error_says_which_layer_set_the_value(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text("min_workers = 6\nmax_workers = 3\n")
    with pytest.raises(ConfigError) as err:
        server_config(str(path), {"STORYPULSE_PORT": "70000"}, {})
    assert "--port 70000" in str(err.value) and "environment variable STORYPULSE_PORT" in str(err.value)
    with pytest.raises(ConfigError) as err:
        server_config(str(path), {}, {})
    message = str(err.value)
    assert "--min-workers 6 is above --max-workers 3" in message
    assert f"min_workers: key 'min_workers' in {path}" in message
    assert f"max_workers: key 'max_workers' in {path}" in message
    # Given on the command line, the option names itself: no note.
    with pytest.raises(ConfigError) as err:
        server_config(None, {}, {"port": 0})
    assert str(err.value) == "--port 0: must be within 1-65533 (P+2 is used too)"


def test_the_install_guide_documents_every_key():
    """docs/install.md holds the one table of keys, variables and options: no key left out."""
    from support import REPO

    rows = [line for line in (REPO / "docs" / "install.md").read_text().splitlines() if line.startswith("| `")]
    for key in KEYS.values():
        assert any(f"| `{key.name}` | `{key.env}` |" in row for row in rows), f"{key.name} is not in the table"
