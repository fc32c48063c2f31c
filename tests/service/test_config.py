import json
from pathlib import Path

import pytest

from service.config import ConfigError, artifact_paths, hash_api_key, load_settings, parse_settings

REPO = Path(__file__).resolve().parents[2]

BACKENDS = [{"name": "m", "model": "served-m", "replicas": ["http://127.0.0.1:9000"]}]
MODELS = [{"name": "pub", "strategy": {"kind": "direct", "backend": "m"}}]


def test_minimal_config_gets_defaults() -> None:
    settings = parse_settings({"backends": BACKENDS, "models": MODELS})
    assert settings.server.port == 8000 and settings.cache.redis_url is None
    assert settings.backend("m").timeouts.total_s == 600


@pytest.mark.parametrize(("raw", "key"), [
    ({"backends": [{"name": "m", "model": "x", "replicas": []}], "models": MODELS}, "backends.0.replicas"),
    ({"backends": [{"name": "m", "model": "x", "replicas": ["not a url"]}], "models": MODELS}, "backends.0.replicas.0"),
    ({"backends": BACKENDS, "models": MODELS, "server": {"port": 0}}, "server.port"),
    ({"backends": BACKENDS, "models": MODELS, "dispatch": {"retires": 2}}, "dispatch.retires"),
    ({"backends": BACKENDS, "models": [{"name": "p", "strategy": {"kind": "direct"}}]}, "models.0.strategy.backend"),
    ({"backends": BACKENDS, "models": MODELS, "auth": {"api_key_hashes": ["plain"]}}, "auth"),
    ({"backends": [{**BACKENDS[0], "api_key": "k\n"}], "models": MODELS}, "backends.0.api_key"),  # a file's newline
    ({"backends": BACKENDS, "models": MODELS, "cache": {"redis_url": "redis+sentinel://h:26379"}},
     "cache: Value error, redis_url: Redis URL must specify one of the following schemes"),
    ({"backends": BACKENDS, "models": MODELS, "cache": {"redis_url": "redis://:p/x@h:1/0"}}, "cache: Value error"),
    ({"backends": BACKENDS, "models": MODELS, "server": {"max_concurrent_body_bytes": 1000}},
     "server: Value error, max_concurrent_body_bytes must be at least max_body_bytes"),
])
def test_errors_name_the_bad_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(raw)
    assert key in str(error.value)


def test_references_across_sections_name_the_key() -> None:
    models = [{"name": "pub", "strategy": {"kind": "direct", "backend": "nope"}}]
    with pytest.raises(ConfigError) as caught:
        parse_settings({"backends": BACKENDS, "models": models})
    assert str(caught.value) == ("invalid configuration:\n  models.0.strategy ('pub'): unknown backend 'nope'; the "
                                 "backends are 'm'")
    with pytest.raises(ConfigError, match="\n  backends: names must be unique; 'm' repeat$"):
        parse_settings({"backends": BACKENDS * 2, "models": models})


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "backends: [{name: m, model: x, replicas: ['http://h:1'], api_key: '${BACKEND_KEY}'}]\n"
        "models: [{name: p, strategy: {kind: direct, backend: m}}]\n")
    monkeypatch.setenv("BACKEND_KEY", "s3cret")
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", "redis://127.0.0.1:6390/0")
    settings = load_settings(path)
    assert settings.backend("m").api_key == "s3cret"
    assert settings.cache.redis_url == "redis://127.0.0.1:6390/0"
    monkeypatch.delenv("BACKEND_KEY")
    with pytest.raises(ConfigError, match="BACKEND_KEY is not set"):
        load_settings(path)


def test_the_redis_url_from_the_environment_is_taken_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("backends: [{name: m, model: x, replicas: ['http://h:1']}]\n"
                    "models: [{name: p, strategy: {kind: direct, backend: m}}]\ncache:\n")  # an empty section
    monkeypatch.setenv("SWITCHYARD_REDIS_URL", "redis://:pa${ss}@127.0.0.1:6390/0")  # not expanded again
    assert load_settings(path).cache.redis_url == "redis://:pa${ss}@127.0.0.1:6390/0"


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_api_key_hash_format() -> None:
    assert hash_api_key("k").startswith("sha256:") and len(hash_api_key("k")) == 71


def test_shipped_configs_are_valid() -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "deploy" / "local").glob("*.yaml")):
        load_settings(path)


@pytest.mark.parametrize("name", ["cpu.yaml", "sim.yaml"])
def test_shipped_configs_find_their_artifacts_from_any_directory(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = artifact_paths(load_settings(REPO / "deploy" / "local" / name))
    assert paths and all(Path(path).is_dir() for _, path in paths), paths
    monkeypatch.chdir(REPO)  # from the repository root they stay as written
    assert all(path.startswith("deploy/local/artifacts/")
               for _, path in artifact_paths(load_settings(f"deploy/local/{name}")))


def test_relative_artifacts_are_found_beside_the_config_unless_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf" / "art" / "router").mkdir(parents=True)
    (tmp_path / "conf" / "art" / "switcher").mkdir()
    (tmp_path / "cwd" / "art" / "switcher").mkdir(parents=True)
    config = tmp_path / "conf" / "c.yaml"
    candidates = [{"backend": "m", "cost": 1.0, "thinking": {"switcher": "art/switcher", "family": "qwen3"}},
                  {"backend": "n", "cost": 2.0}]
    backends = [*BACKENDS, {"name": "n", "model": "served-n", "replicas": ["http://127.0.0.1:9001"]}]
    config.write_text(json.dumps({"backends": backends, "models": [
        {"name": "auto", "strategy": {"kind": "lookahead", "router": "art/router", "candidates": candidates}},
        {"name": "gone", "strategy": {"kind": "lookahead", "router": "art/missing", "candidates": candidates}}]}))
    monkeypatch.chdir(tmp_path / "cwd")
    assert artifact_paths(load_settings(config)) == [
        ("models.0.strategy.router", str(tmp_path / "conf" / "art" / "router")),
        ("models.0.strategy.candidates.0.thinking.switcher", "art/switcher"),  # the working directory's
        ("models.1.strategy.router", "art/missing"),  # nowhere: as written, for the error to name
        ("models.1.strategy.candidates.0.thinking.switcher", "art/switcher"),
    ]
