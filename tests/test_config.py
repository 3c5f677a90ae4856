"""Config validation: every problem reported with file, path and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mstream.cli import main
from mstream.config import load_config, parse_config
from mstream.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[[services]]
name = "gen"
provider = "generator"
count = 10

[[services]]
name = "files"
provider = "file"
base_dir = "{tmp}"

[[connectors]]
name = "one"
source = {{ service_name = "gen", resource = "users", output_encoding = "json" }}
sinks = [{{ service_name = "files", resource = "a.jsonl", output_encoding = "json" }}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env or {})
    return info.value.problems


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.format(tmp=tmp_path)), {})
    assert [s.name for s in cfg.services] == ["gen", "files"]
    connector = cfg.connectors[0]
    assert connector.enabled and connector.sinks[0].resource == "a.jsonl"
    assert cfg.system.startup_state == "seed_from_file"


def test_examples_validate() -> None:
    for example in sorted((ROOT / "examples").glob("*.toml")):
        try:
            load_config(example, {})
        except ConfigError as exc:
            if "is not available in this install" in str(exc):
                continue  # a provider that this install lacks
            raise


def test_bad_encoding_names_the_full_path(tmp_path: Path) -> None:
    text = GOOD.format(tmp=tmp_path) + (
        '\n[[connectors]]\nname = "two"\n'
        'source = { service_name = "gen", output_encoding = "json" }\n'
        'sinks = [{ service_name = "files", resource = "b", output_encoding = "xml" }]\n'
    )
    found = problems(tmp_path, text)
    assert found == [
        f"{tmp_path / 'cfg.toml'}: connectors[1].sinks[0].output_encoding: "
        "must be one of: json, bson, avro (got 'xml')"
    ]


def test_every_problem_is_reported_once(tmp_path: Path) -> None:
    text = """
[[services]]
name = "gen"
provider = "generator"
count = "ten"
colour = "blue"

[[services]]
name = "q"
provider = "carrier-pigeon"

[[connectors]]
name = "c"
source = { service_name = "missing", output_encoding = "json" }
sinks = [{ service_name = "gen", output_encoding = "json" }]
"""
    found = [p.split(": ", 1)[1] for p in problems(tmp_path, text)]
    assert "services[0].count: expected integer" in found
    assert any(
        p.startswith(
            "services[0].colour: unknown field (the Rust original ignores unknown keys; "
            "remove it or check its spelling; known for provider 'generator': "
        )
        for p in found
    )
    assert any(
        p.startswith("services[1].provider: unknown provider 'carrier-pigeon'") for p in found
    )
    assert any(
        p.startswith("connectors[0].source.service_name: no service named 'missing'") for p in found
    )
    assert any(
        p.startswith(
            "connectors[0].sinks[0].service_name: provider 'generator' of service 'gen' cannot be a sink"
        )
        for p in found
    )
    assert len(found) == 5


def test_env_values(tmp_path: Path) -> None:
    text = GOOD.format(tmp="env:OUT_DIR")
    cfg = load_config(write(tmp_path, text), {"OUT_DIR": str(tmp_path)})
    assert cfg.service("files").options["base_dir"] == str(tmp_path)  # type: ignore[union-attr]
    found = problems(tmp_path, text, {})
    assert found == [
        f"{tmp_path / 'cfg.toml'}: services[1].base_dir: environment variable OUT_DIR is not set"
    ]


def test_avro_needs_a_schema_and_known_schema_ids() -> None:
    raw = {
        "services": [{"name": "g", "provider": "generator"}, {"name": "o", "provider": "stdout"}],
        "connectors": [
            {
                "name": "c",
                "source": {"service_name": "g", "output_encoding": "json", "schema_id": "nope"},
                "sinks": [{"service_name": "o", "output_encoding": "avro"}],
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "x.toml", {})
    assert info.value.problems == [
        "x.toml: connectors[0].source.schema_id: unknown schema id 'nope' (defined: none)",
    ]
    del raw["connectors"][0]["source"]["schema_id"]  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "x.toml", {})
    assert info.value.problems == [
        "x.toml: connectors[0].sinks[0].output_encoding: avro needs a schema "
        "(set schema_id here or on an earlier step)",
    ]


def test_schema_inherited_from_source_satisfies_avro_sink() -> None:
    raw = {
        "services": [
            {"name": "g", "provider": "generator"},
            {"name": "o", "provider": "stdout"},
            {"name": "f", "provider": "file"},
        ],
        "connectors": [
            {
                "name": "c",
                "schemas": [{"id": "s", "service_name": "f", "resource": "x.avsc"}],
                "source": {"service_name": "g", "output_encoding": "json", "schema_id": "s"},
                "sinks": [{"service_name": "o", "output_encoding": "avro"}],
            }
        ],
    }
    assert parse_config(raw, "x.toml", {}).connectors[0].sinks[0].schema_id is None


def test_duplicate_names_and_bad_system(tmp_path: Path) -> None:
    text = GOOD.format(tmp=tmp_path) + (
        '\n[[connectors]]\nname = "one"\n'
        'source = { service_name = "gen", output_encoding = "json" }\n'
        'sinks = [{ service_name = "files", resource = "b", output_encoding = "json" }]\n'
        '\n[system.job_lifecycle]\nstartup_state = "sometimes"\n'
        '\n[system.checkpoints]\nservice_name = "files"\nresource = "cps"\n'
    )
    found = [p.split(": ", 1)[1] for p in problems(tmp_path, text)]
    assert "connectors[1].name: duplicate connector name 'one'" in found
    assert (
        "system.job_lifecycle.startup_state: must be one of: force_from_file, seed_from_file, keep "
        "(got 'sometimes')"
    ) in found


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "[[services]\n")[0].startswith(
        f"{tmp_path / 'cfg.toml'}: invalid TOML:"
    )
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_exit_code_2_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        '[[services]]\nname = "g"\nprovider = "generator"\nrate = -1\ncount = 1.5\n',
    )
    assert main(["validate", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {path}: services[0].count: expected integer",
        f"error: {path}: services[0].rate: must be between 0.001 and 1e7",
    ]


def test_cli_validate_ok(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.format(tmp=tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "mstream.cli", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "OK (2 services, 1 connectors)" in done.stdout


def test_validation_names_a_misspelled_step_key_and_an_unknown_generator_shape() -> None:
    raw = {
        "services": [{"name": "g", "provider": "generator"}, {"name": "o", "provider": "stdout"}],
        "connectors": [
            {
                "name": "c",
                "source": {"service_name": "g", "resource": "counter", "output_encodng": "json"},
                "sinks": [{"service_name": "o", "output_encoding": "json"}],
            },
            {
                "name": "d",
                "source": {"service_name": "g", "resource": "user", "output_encoding": "json"},
                "sinks": [{"service_name": "o", "output_encoding": "json"}],
            },
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "t.toml", {})
    problems = info.value.problems
    assert "t.toml: connectors[0].source.output_encoding: missing required field" in problems
    assert any(
        p.startswith(
            "t.toml: connectors[0].source.output_encodng: unknown field (did you mean 'output_encoding'?"
        )
        for p in problems
    )
    assert (
        "t.toml: connectors[1].source.resource: did you mean 'users'? provider 'generator' has no "
        "resource 'user' (expected: users, orders, counter)" in problems
    )


def test_the_readmes_validate_example_reports_every_error_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mstream.cli import main

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("$ mstream validate --config broken.toml\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(Path(__file__).parent / "data")
    assert main(["validate", "--config", "broken.toml"]) == 2
    assert capsys.readouterr().err == block


def test_validate_reports_a_missing_or_broken_script_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mstream.cli import main

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "broken.lua").write_text("function transform(data, attributes)\n  return result(\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[[services]]
name = "scripts"
provider = "udf"
engine = {{ kind = "lua" }}
script_path = "{scripts}"
[[services]]
name = "gen"
provider = "generator"
[[services]]
name = "out"
provider = "stdout"
[[connectors]]
name = "c"
source = {{ service_name = "gen", resource = "counter", output_encoding = "json" }}
middlewares = [
  {{ service_name = "scripts", resource = "broken.lua", output_encoding = "json" }},
  {{ service_name = "scripts", resource = "missing.lua", output_encoding = "json" }},
]
sinks = [{{ service_name = "out", output_encoding = "json" }}]
"""
    )
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "connectors[0].middlewares[0].resource: " in err and "broken.lua:3: syntax error" in err
    assert "connectors[0].middlewares[1].resource: udf script 'missing.lua' not found" in err


def test_a_source_that_reads_one_encoding_refuses_another_input_encoding() -> None:
    raw = {
        "services": [
            {"name": "g", "provider": "generator"},
            {
                "name": "m",
                "provider": "mongodb",
                "connection_string": "mongodb://h",
                "db_name": "d",
            },
            {"name": "o", "provider": "stdout"},
        ],
        "connectors": [
            {
                "name": "a",
                "source": {
                    "service_name": "g",
                    "input_encoding": "avro",
                    "output_encoding": "json",
                },
                "sinks": [{"service_name": "o", "output_encoding": "json"}],
            },
            {
                "name": "b",
                "source": {
                    "service_name": "m",
                    "resource": "c",
                    "input_encoding": "json",
                    "output_encoding": "json",
                },
                "sinks": [{"service_name": "o", "output_encoding": "json"}],
            },
            {
                "name": "c",
                "source": {
                    "service_name": "m",
                    "resource": "c",
                    "input_encoding": "bson",
                    "output_encoding": "json",
                },
                "sinks": [{"service_name": "o", "output_encoding": "json"}],
            },
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "t.toml", {})
    assert info.value.problems == [
        "t.toml: connectors[0].source.input_encoding: a generator source reads json, not 'avro' "
        "(remove it, or set output_encoding to convert)",
        "t.toml: connectors[1].source.input_encoding: a mongodb source reads bson, not 'json' "
        "(remove it, or set output_encoding to convert)",
    ]


def test_validate_checks_file_paths_against_the_file_roots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mstream.cli import main

    (tmp_path / "files").mkdir()
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[[services]]
name = "files"
provider = "file"
base_dir = "{tmp_path / "files"}"
[[connectors]]
name = "c"
source = {{ service_name = "files", resource = "in.jsonl", output_encoding = "json" }}
sinks = [{{ service_name = "files", resource = "../escape.jsonl", output_encoding = "json" }}]
"""
    )
    assert main(["validate", "--config", str(config)]) == 2
    assert "connectors[0].sinks[0].resource: " in capsys.readouterr().err
