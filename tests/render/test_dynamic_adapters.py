"""What a dynamic deployment's app runs besides vLLM, without vLLM: the staging of adapters into its
adapter folder (templates/deployer_runtime.py), the resolver vLLM asks about a name it does not
know (templates/deployer_lora_resolver.py, with a stand-in for vLLM's registry), and the middleware
that closes vLLM's adapter routes (templates/vllm_auth_guard.py, called as an ASGI app).
tests/local/test_dynamic_vllm.py runs the same pieces with real vLLM."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import pytest

from ..conftest import REPO
from .asgi import run_middleware

TEMPLATES = REPO / "templates"
BASE = "/root/base-model"


def load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, TEMPLATES / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def runtime():
    return load("deployer_runtime_under_test", "deployer_runtime.py")


@pytest.fixture
def resolver():
    return load("deployer_lora_resolver_under_test", "deployer_lora_resolver.py")


def adapter(folder: Path, base: str = "Qwen/Qwen3-4B", weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "base_model_name_or_path": base})
    )
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / "tokenizer_config.json").write_text("{}")
    return folder


def config(folder: Path) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


def version(runtime, folder, name: str) -> Path:
    """The folder the manifest serves adapter `name` from."""
    return Path(folder) / runtime.read_manifest(str(folder))[name]["folder"]


# ## Staging


def test_staging_copies_the_adapter_rewrites_its_base_and_lists_it_last(runtime, tmp_path):
    source = adapter(tmp_path / "chess")
    folder = tmp_path / "staged"
    runtime.stage_adapter(str(folder), "chess", str(source), BASE, "org/chess@abc")
    staged = version(runtime, folder, "chess")
    assert staged.name == "chess@" + hashlib.sha256(b"org/chess@abc").hexdigest()[:12]
    assert sorted(p.name for p in staged.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer_config.json",
    ]
    assert config(staged)["base_model_name_or_path"] == BASE
    assert config(source)["base_model_name_or_path"] == "Qwen/Qwen3-4B"  # the source untouched
    manifest = json.loads((folder / "deployer-adapters.json").read_text())
    entry = manifest["adapters"]["chess"]
    assert (entry["source"], entry["base"]) == ("org/chess@abc", BASE)
    assert time.strptime(entry["staged_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert sorted(p.name for p in folder.iterdir()) == [staged.name, "deployer-adapters.json"]


def test_a_new_version_gets_a_folder_of_its_own_and_the_old_one_goes(runtime, tmp_path):
    """vLLM keys its prefix cache by an adapter's name and folder: a new version in the old
    folder would be answered from what the old weights computed."""
    folder = tmp_path / "staged"
    runtime.stage_adapter(str(folder), "chess", str(adapter(tmp_path / "v1")), BASE, "v1")
    first = version(runtime, folder, "chess")
    v2 = adapter(tmp_path / "v2", weights=b"weights v2")
    (v2 / "tokenizer_config.json").unlink()
    runtime.stage_adapter(str(folder), "chess", str(v2), BASE, "v2")
    second = version(runtime, folder, "chess")
    assert second != first and second.name == runtime.staged_folder_name("chess", "v2")
    assert (second / "adapter_model.safetensors").read_bytes() == b"weights v2"
    assert not (second / "tokenizer_config.json").exists()  # nothing of v1 is in it
    assert runtime.read_manifest(str(folder))["chess"]["source"] == "v2"
    assert sorted(p.name for p in folder.iterdir()) == [second.name, "deployer-adapters.json"]


def test_a_link_out_of_the_source_is_refused_and_leaves_the_staged_copy_as_it_was(
    runtime, tmp_path
):
    folder = tmp_path / "staged"
    runtime.stage_adapter(str(folder), "chess", str(adapter(tmp_path / "v1")), BASE, "v1")
    (tmp_path / "secret").write_text("not an adapter's")
    planted = adapter(tmp_path / "v2")
    (planted / "vocab.json").symlink_to(tmp_path / "secret")
    with pytest.raises(ValueError, match="is a link out of"):
        runtime.stage_adapter(str(folder), "chess", str(planted), BASE, "v2")
    assert runtime.read_manifest(str(folder))["chess"]["source"] == "v1"
    staged = version(runtime, folder, "chess")
    assert (staged / "adapter_model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in folder.iterdir()) == [staged.name, "deployer-adapters.json"]


def test_a_hub_snapshots_links_into_its_blobs_are_followed(runtime, tmp_path):
    repo = tmp_path / "hub" / "models--org--chess"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    blob = adapter(tmp_path / "content")
    for file in blob.iterdir():
        (repo / "blobs" / file.name).write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(Path("../../blobs") / file.name)
    runtime.stage_adapter(str(tmp_path / "staged"), "chess", str(snapshot), BASE, "org/chess@c")
    staged = version(runtime, tmp_path / "staged", "chess") / "adapter_model.safetensors"
    assert not staged.is_symlink() and staged.read_bytes() == b"weights"


@pytest.mark.parametrize(
    "name", ["../chess", "a/b", "..", ".staging-x", "", "deployer-adapters.json", "x" * 129]
)
def test_a_name_that_is_not_a_folder_of_its_own_is_refused(runtime, tmp_path, name):
    with pytest.raises(ValueError, match="cannot be a staged adapter's name"):
        runtime.stage_adapter(
            str(tmp_path / "staged"), name, str(adapter(tmp_path / "a")), BASE, "l"
        )
    assert not (tmp_path / "chess").exists()


def test_sync_stages_what_changed_unstages_what_is_gone_and_is_idempotent(runtime, tmp_path):
    folder = str(tmp_path / "staged")
    chess, sql = adapter(tmp_path / "chess"), adapter(tmp_path / "sql")
    wanted = {"chess": (str(chess), "chess@1"), "sql": (str(sql), "sql@1")}
    assert runtime.sync_adapters(folder, wanted, BASE) == {
        "staged": ["chess", "sql"],
        "unstaged": [],
    }
    before = runtime.read_manifest(folder)
    assert runtime.sync_adapters(folder, wanted, BASE) == {"staged": [], "unstaged": []}
    assert runtime.read_manifest(folder) == before  # not even staged_at moved
    (Path(folder) / ".staging-chess-left").mkdir()  # from a run that stopped half-way
    changed = {"chess": (str(chess), "chess@2")}
    assert runtime.sync_adapters(folder, changed, BASE) == {
        "staged": ["chess"],
        "unstaged": ["sql"],
    }
    assert set(runtime.read_manifest(folder)) == {"chess"}
    chess_v2 = runtime.staged_folder_name("chess", "chess@2")
    assert sorted(p.name for p in Path(folder).iterdir()) == [chess_v2, "deployer-adapters.json"]
    # Another --model value means another base_model_name_or_path: staged again.
    assert runtime.sync_adapters(folder, changed, "/elsewhere")["staged"] == ["chess"]
    assert config(version(runtime, folder, "chess"))["base_model_name_or_path"] == "/elsewhere"


def test_unstaging_takes_the_name_out_of_the_manifest_before_removing_the_folder(
    runtime, tmp_path, monkeypatch
):
    folder = str(tmp_path / "staged")
    runtime.stage_adapter(folder, "chess", str(adapter(tmp_path / "chess")), BASE, "l")
    seen = []
    remove = runtime._remove
    monkeypatch.setattr(
        runtime, "_remove", lambda path: (seen.append(runtime.read_manifest(folder)), remove(path))
    )
    runtime.unstage_adapter(folder, "chess")
    assert seen == [{}]  # the resolver stopped serving it before its files went
    assert [p.name for p in (tmp_path / "staged").iterdir()] == ["deployer-adapters.json"]


def test_labels_change_with_an_adapters_files_or_commit(runtime, tmp_path):
    folder = adapter(tmp_path / "chess")
    first = runtime.adapter_label({"folder": "/root/sources/adapters/chess"}, str(folder))
    assert first.startswith("path:/root/sources/adapters/chess@sha256:")
    (folder / "adapter_model.safetensors").write_bytes(b"retrained")
    assert runtime.adapter_label({"folder": "/root/sources/adapters/chess"}, str(folder)) != first
    snapshot = "/cache/models--org--chess/snapshots/" + "c" * 40
    assert runtime.adapter_label({"repo": "org/chess"}, snapshot) == "org/chess@" + "c" * 40


def test_the_runtime_and_the_resolver_parse_as_python_3_9():
    import ast

    for file in ("deployer_runtime.py", "deployer_lora_resolver.py", "vllm_auth_guard.py"):
        ast.parse((TEMPLATES / file).read_text(), file, feature_version=(3, 9))


# ## Unloading adapters whose staged copy changed


def test_adapters_loaded_at_start_and_since_restaged_or_removed_are_unloaded(
    runtime, tmp_path, monkeypatch
):
    folder = str(tmp_path / "staged")
    runtime.stage_adapter(folder, "chess", str(adapter(tmp_path / "chess")), BASE, "chess@2")
    runtime.stage_adapter(folder, "sql", str(adapter(tmp_path / "sql")), BASE, "sql@1")
    unloaded, reloads = [], []
    monkeypatch.setattr(runtime, "unload_adapter", lambda port, name, token: unloaded.append(name))

    def reload():
        reloads.append(1)
        if len(reloads) == 1:
            raise RuntimeError("there are open files preventing the operation")
        if len(reloads) == 2:
            runtime.unstage_adapter(folder, "sql")

    # vLLM loaded chess@1 at start (the deploy's commit); chess@2 was staged since.
    runtime.watch_staged_adapters(folder, reload, 8000, "t", 0.01, {"chess": "chess@1"})
    deadline = time.monotonic() + 10
    while len(reloads) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert unloaded == ["chess", "sql"]  # at once, then after the reload that saw sql go


# ## The resolver


def stage(resolver_folder: Path, name: str, base: str = BASE, listed: bool = True) -> Path:
    """An adapter staged as the runtime stages it: in `<name>@<hash>`, named by the manifest."""
    folder = adapter(resolver_folder / f"{name}@{'0' * 12}", base=base)
    manifest = resolver_folder / "deployer-adapters.json"
    entries = json.loads(manifest.read_text())["adapters"] if manifest.exists() else {}
    if listed:
        entries[name] = {"source": "x", "base": base, "folder": folder.name, "staged_at": "now"}
    manifest.write_text(json.dumps({"adapters": entries}))
    return folder


def test_the_resolver_serves_a_staged_adapter_for_vllms_base(resolver, tmp_path):
    folder = tmp_path / "adapters"
    staged = stage(folder, "chess")
    assert resolver.staged_adapter(str(folder), BASE, "chess") == str(staged)
    assert resolver.staged_adapter(str(folder), "/other/model", "chess") is None


@pytest.mark.parametrize(
    "entry",
    [
        {"folder": "../outside@000000000000"},
        {"folder": "sql@000000000000"},  # another adapter's version
        {"folder": "chess"},  # not a version folder
        {"folder": ".staging-chess-x"},
        {"folder": None},
        {},
    ],
)
def test_the_resolver_loads_only_the_adapters_own_version_folder(resolver, tmp_path, entry):
    folder = tmp_path / "adapters"
    stage(folder, "chess")
    stage(folder, "sql")
    adapter(tmp_path / "outside@000000000000", base=BASE)
    adapter(folder / "chess", base=BASE)
    manifest = json.loads((folder / "deployer-adapters.json").read_text())
    manifest["adapters"]["chess"] = {"source": "x", "base": BASE, **entry}
    (folder / "deployer-adapters.json").write_text(json.dumps(manifest))
    assert resolver.staged_adapter(str(folder), BASE, "chess") is None


@pytest.mark.parametrize(
    "name",
    ["../chess", "a/b", "/chess", "..", ".", ".hidden", "chess/", "chess/../chess", "", None],
)
def test_the_resolver_serves_no_name_that_is_not_a_plain_folder_name(resolver, tmp_path, name):
    folder = tmp_path / "adapters"
    stage(folder, "chess")
    stage(tmp_path, "outside")  # beside the folder, valid and listed in a manifest of its own
    assert resolver.staged_adapter(str(folder), BASE, name) is None
    assert resolver.staged_adapter(str(folder), BASE, "outside") is None


def test_the_resolver_serves_only_listed_folders_inside_the_folder(resolver, tmp_path):
    folder = tmp_path / "adapters"
    stage(folder, "chess")
    stage(folder, "unlisted", listed=False)  # a folder no staging finished
    adapter(tmp_path / "elsewhere", base=BASE)
    (folder / f"linked@{'0' * 12}").symlink_to(tmp_path / "elsewhere")
    stage(folder, "other-base", base="Qwen/Qwen3-4B")  # not rewritten by the staging
    manifest = json.loads((folder / "deployer-adapters.json").read_text())
    manifest["adapters"]["linked"] = {
        **manifest["adapters"]["chess"],
        "folder": f"linked@{'0' * 12}",
    }
    (folder / "deployer-adapters.json").write_text(json.dumps(manifest))
    for name in ("unlisted", "linked", "other-base", "missing"):
        assert resolver.staged_adapter(str(folder), BASE, name) is None, name
    (folder / "deployer-adapters.json").write_text("not json")
    assert resolver.staged_adapter(str(folder), BASE, "chess") is None


def test_register_puts_the_resolver_in_vllms_registry(resolver, tmp_path, monkeypatch):
    """vLLM's API (vllm.lora.resolver, vllm.lora.request: the same in 0.11 and 0.32), stood in."""
    registry = {}

    class LoRAResolver:
        pass

    class LoRARequest:
        def __init__(self, lora_name, lora_int_id, lora_path):
            self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path

    registry_module = types.ModuleType("vllm.lora.resolver")
    registry_module.LoRAResolver = LoRAResolver
    registry_module.LoRAResolverRegistry = types.SimpleNamespace(
        register_resolver=lambda name, instance: registry.__setitem__(name, instance)
    )
    request_module = types.ModuleType("vllm.lora.request")
    request_module.LoRARequest = LoRARequest
    for name, module in {
        "vllm": types.ModuleType("vllm"),
        "vllm.lora": types.ModuleType("vllm.lora"),
        "vllm.lora.resolver": registry_module,
        "vllm.lora.request": request_module,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    folder = tmp_path / "adapters"
    staged = stage(folder, "chess")
    monkeypatch.setenv("DEPLOYER_ADAPTER_FOLDER", str(folder))
    resolver.register()
    (found,) = registry.values()
    request = asyncio.run(found.resolve_lora(BASE, "chess"))
    assert (request.lora_name, request.lora_path) == ("chess", str(staged))
    assert asyncio.run(found.resolve_lora(BASE, "../chess")) is None
    monkeypatch.setenv("DEPLOYER_ADAPTER_FOLDER", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="names no folder"):
        resolver.register()


def test_the_resolver_and_the_runtime_agree_on_names_and_files(resolver, runtime):
    from deployer.vllm.argv import ADAPTER_FOLDER_FILES, STAGED_ADAPTER_NAME

    assert resolver.NAME.pattern == runtime.STAGED_NAME.pattern == STAGED_ADAPTER_NAME.pattern
    assert resolver.MANIFEST_FILE == runtime.MANIFEST_FILE == ADAPTER_FOLDER_FILES[0]
    assert runtime.ADAPTER_FOLDER_FILES == ADAPTER_FOLDER_FILES


# ## vLLM's environment


def test_vllm_gets_our_resolver_alone_and_a_digest_of_the_unload_token(tmp_path):
    from deployer.render.context import runtime_files

    app_folder = tmp_path / "app"  # the runtime beside a rendered app, as render writes it
    app_folder.mkdir()
    for name, text in runtime_files():
        (app_folder / name).write_text(text)
    spec = importlib.util.spec_from_file_location(
        "runtime_beside", app_folder / "deployer_runtime.py"
    )
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    folder = tmp_path / "imports"
    folder.mkdir()
    environment, token = runtime.with_dynamic_adapters(
        {"PYTHONPATH": f"/elsewhere{os.pathsep}{folder}", "KEPT": "1"}, str(folder), "/adapters"
    )
    assert environment["PYTHONPATH"] == f"{folder}{os.pathsep}/elsewhere"
    assert environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "true"
    assert environment["VLLM_PLUGINS"] == "deployer_lora_resolver"
    assert environment["DEPLOYER_ADAPTER_FOLDER"] == "/adapters"
    assert environment["KEPT"] == "1"
    assert not any(token in value for value in environment.values())
    salt, digest = environment["DEPLOYER_UNLOAD_DIGEST"].split(":")
    assert hashlib.sha256(bytes.fromhex(salt) + token.encode()).hexdigest() == digest
    for name in ("deployer_lora_resolver.py", "deployer_auth_guard.py"):
        template = "vllm_auth_guard.py" if name == "deployer_auth_guard.py" else name
        assert (folder / name).read_bytes() == (TEMPLATES / template).read_bytes()
    # What vLLM's plugin loader reads: the entry points of the distributions on its path.
    (entry,) = [
        e
        for e in importlib.metadata.distributions(path=[str(folder)])
        for e in e.entry_points
        if e.group == "vllm.general_plugins"
    ]
    assert (entry.name, entry.value) == (
        "deployer_lora_resolver",
        "deployer_lora_resolver:register",
    )
    again, other = runtime.with_dynamic_adapters({}, str(folder), "/adapters")
    assert other != token and again["PYTHONPATH"] == str(folder)


# ## The closed adapter routes


@pytest.fixture
def unload_token(monkeypatch):
    token = "u" * 64
    salt = os.urandom(16)
    monkeypatch.setenv(
        "DEPLOYER_UNLOAD_DIGEST",
        salt.hex() + ":" + hashlib.sha256(salt + token.encode()).hexdigest(),
    )
    monkeypatch.delenv("DEPLOYER_AUTH_DIGEST", raising=False)
    return token


def closer():
    """The middleware class, from a module imported with no API key digest (`auth: none`)."""
    return load("deployer_auth_guard_dynamic", "vllm_auth_guard.py").CloseAdapterRoutes


def call(path, method="POST", headers=(), kind="http"):
    scope = {"type": kind, "path": path, "method": method, "headers": list(headers)}
    return run_middleware(closer(), scope)


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/v1/load_lora_adapter"),
        ("POST", "/v1/unload_lora_adapter"),
        ("POST", "/v1/load_lora_adapter/"),
        ("POST", "/V1/LOAD_LORA_ADAPTER"),
        ("POST", "//v1//load_lora_adapter"),
        ("GET", "/v1/load_lora_adapter"),
        ("POST", "/adapters"),
        ("DELETE", "/adapters/chess"),
        ("DELETE", "/Adapters/chess/"),
    ],
)
@pytest.mark.parametrize("authorization", [None, b"Bearer the-api-key"])
def test_the_adapter_routes_answer_403_to_every_caller(unload_token, method, path, authorization):
    headers = [(b"authorization", authorization)] if authorization else []
    reached, sent = call(path, method, headers)
    assert reached == [] and sent[0]["status"] == 403


@pytest.mark.parametrize(
    "path", ["/v1/completions", "/v1/models", "/health", "/v1/load_lora_adapters", "/adapter"]
)
def test_other_routes_pass(unload_token, path):
    assert call(path)[0] == [path]


def test_the_runtime_alone_unloads_with_its_token(unload_token):
    token = (b"x-deployer-unload-token", unload_token.encode())
    assert call("/v1/unload_lora_adapter", headers=[token])[0] == ["/v1/unload_lora_adapter"]
    wrong = (b"x-deployer-unload-token", b"u" * 63)
    assert call("/v1/unload_lora_adapter", headers=[wrong])[1][0]["status"] == 403
    assert call("/v1/load_lora_adapter", headers=[token])[1][0]["status"] == 403
    assert call("/adapters/chess", "DELETE", headers=[token])[1][0]["status"] == 403
    assert call("/v1/unload_lora_adapter", "GET", headers=[token])[1][0]["status"] == 403


def test_without_an_unload_digest_even_a_token_is_refused(monkeypatch):
    monkeypatch.delenv("DEPLOYER_UNLOAD_DIGEST", raising=False)
    monkeypatch.delenv("DEPLOYER_AUTH_DIGEST", raising=False)
    token = (b"x-deployer-unload-token", b"")
    assert call("/v1/unload_lora_adapter", headers=[token])[1][0]["status"] == 403


def test_a_websocket_to_an_adapter_route_is_closed(unload_token):
    reached, sent = call("/adapters", None, kind="websocket")
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]
