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


# -- the workflow: --stages, --stage-wip, --scenario -----------------------------------


def test_without_stages_one_stage_with_the_pool_bounds():
    config = ServerConfig.from_options({"min_workers": 2, "max_workers": 5, "stage_wip": "work=3"})
    assert config.workflow.names == ("work",)
    assert config.workflow.stages[0].min_workers == 2 and config.workflow.stages[0].max_workers == 5
    assert config.workflow.wip_limits == {"work": 3}


def test_stages_and_their_wip_limits():
    config = ServerConfig.from_options({"stages": "analysis:1-2,build:1-6,test:2",
                                        "stage_wip": "build=3,test=2"})
    assert config.workflow.describe() == "analysis:1-2,build:1-6,test:2"
    assert config.workflow.wip_limits == {"analysis": 0, "build": 3, "test": 2}


def test_a_scenario_brings_its_stages_and_its_limits_and_options_override_them():
    config = ServerConfig.from_options({"scenario": "bottleneck"})
    assert config.workflow.describe() == "analysis:1-2,build:1-6,test:1-2"
    assert config.wip_limit == 0
    config = ServerConfig.from_options({"scenario": "bottleneck", "wip_limit": 8,
                                        "stage_wip": "test=2"})
    assert config.wip_limit == 8 and config.workflow.wip_limits["test"] == 2


def test_a_scenario_file_with_a_system_limit(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('name = "b"\nwip_limit = 4\n[load]\nrate = 1\n[[stage]]\nname = "dev"\n'
                    'workers = "2-3"\n[[stage]]\nname = "review"\n')
    config = ServerConfig.from_options({"scenario": str(path)})
    assert config.workflow.names == ("dev", "review") and config.wip_limit == 4


@pytest.mark.parametrize("options, words", [
    ({"stages": "analysis:1-2,build:6-1"}, "--stages 'analysis:1-2,build:6-1': stage 'build': "
                                           "min workers 6 is above max workers 1"),
    ({"stages": "a:1,A:2"}, "stage 'A' is named twice"),
    ({"stages": "a:1,,b:2"}, "an empty part"),
    ({"stages": "build"}, "--stages part 'build': expected NAME:MIN-MAX"),
    ({"stage_wip": "deploy=2"}, "--stage-wip part 'deploy=2': unknown stage 'deploy'; the stages are work"),
    ({"stages": "a:1,b:1", "stage_wip": "b=many"}, "--stage-wip part 'b=many': WIP limit: 'many' is not"),
    ({"stages": "a:1", "scenario": "single"}, "--stages 'a:1' and --scenario 'single': give one"),
    ({"stages": "a:1", "min_workers": 2}, "--min-workers with --stages: each stage has its own pool"),
    ({"scenario": "single", "max_workers": 2}, "--max-workers with --scenario"),
    ({"scenario": "nowhere"}, "--scenario: scenario 'nowhere': no such file"),
])
def test_a_bad_workflow_is_refused_naming_the_option_and_the_part(options, words):
    with pytest.raises(ConfigError) as err:
        ServerConfig.from_options(options)
    assert words in str(err.value)


def test_a_bad_scenario_file_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('name = "b"\n[load]\nrate = 1\n[[stage]]\nname = "dev"\ntasks = "4-1"\n')
    with pytest.raises(ConfigError, match=r"--scenario: .*board.toml, line 6: stage 'dev': tasks"):
        ServerConfig.from_options({"scenario": str(path)})


def test_stages_come_from_the_file_and_the_environment_too(tmp_path):
    from storypulse.server.configfile import server_config

    path = tmp_path / "server.toml"
    path.write_text('stages = "dev:1-3,review:1"\nstage_wip = "review=1"\n')
    config = server_config(str(path), {}, {})
    assert config.workflow.describe() == "dev:1-3,review:1" and config.workflow.wip_limits["review"] == 1
    config = server_config(None, {"STORYPULSE_SCENARIO": "bottleneck"}, {})
    assert config.workflow.names == ("analysis", "build", "test")
    with pytest.raises(ConfigError, match=r"--min-workers with --stages.*STORYPULSE_STAGES"):
        server_config(None, {"STORYPULSE_STAGES": "dev:2"}, {"min_workers": 3})
