"""Pretrained weights from a Hub at a pinned revision: the real ``huggingface_hub`` download code
against a stand-in Hub on 127.0.0.1 (:mod:`tests.hub`), then offline from the cache."""

import hashlib
import os

import pytest
import torch
from tests.hub import HubStandIn
from tests.hub import save_tiny_ast as tiny_ast_checkpoint

from audioclf.config.models import ASTConfig
from audioclf.hub import PretrainedWeightsError, fetch
from audioclf.models import build_model

SHAPE = (128, 40)
KEY = "model_params.ast.pretrained"
CARD = "---\nlicense: bsd-3-clause\ntags: [audio]\n---\n# tiny AST\n"


def save_tiny_ast(folder, *, card=True, seed=0):
    tiny_ast_checkpoint(folder, max_length=100, seed=seed)
    if card:
        (folder / "README.md").write_text(CARD)
    return folder


@pytest.fixture(scope="module")
def tiny_ast(tmp_path_factory):
    return save_tiny_ast(tmp_path_factory.mktemp("tiny-ast"))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in Hub, named by HF_ENDPOINT, and an empty cache of this test's own."""
    with HubStandIn() as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        yield stand_in


def ast_from(name, revision):
    return build_model(
        "ast", ASTConfig(pretrained=name, revision=revision), n_classes=3, input_shape=SHAPE
    )


def test_pinned_revision_downloads_once_then_loads_offline(hub, tiny_ast, monkeypatch):
    commit = hub.add("org/tiny-ast", tiny_ast)
    newer = save_tiny_ast(tiny_ast.parent / "newer", card=False, seed=1)
    hub.add("org/tiny-ast", newer)  # main moves on; the pinned commit stays what it was
    model = ast_from("org/tiny-ast", commit)
    assert any("/resolve/" in r and r.endswith("model.safetensors") for r in hub.requests)
    assert not any(r.endswith(".bin") for r in hub.requests)  # never the pickled copy
    from safetensors.torch import load_file

    saved = load_file(tiny_ast / "model.safetensors")  # the pinned commit's, not main's
    got = model.net.state_dict()
    name = "audio_spectrogram_transformer.embeddings.patch_embeddings.projection.weight"
    torch.testing.assert_close(got[name], saved[name])

    record = model.net.pretrained_snapshot.record()
    sha = hashlib.sha256((tiny_ast / "model.safetensors").read_bytes()).hexdigest()
    assert record == {
        "pretrained_id": "org/tiny-ast",
        "pretrained_revision": commit,
        "pretrained_commit": commit,
        "pretrained_weights": "model.safetensors",
        "pretrained_sha256": sha,
        "pretrained_licence": "bsd-3-clause",
    }

    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = ast_from("org/tiny-ast", commit)
    assert hub.requests == []  # the cache alone
    torch.testing.assert_close(again.net.state_dict()[name], saved[name])


def test_a_branch_resolves_to_its_commit_and_is_recorded(hub, tiny_ast):
    commit = hub.add("org/tiny-ast", tiny_ast)
    snapshot = fetch("org/tiny-ast", "main", KEY)
    assert snapshot.revision == "main" and snapshot.commit == commit
    assert any(r.startswith("GET /api/models/org/tiny-ast/revision/main") for r in hub.requests)


def test_unknown_revision_says_so(hub, tiny_ast):
    hub.add("org/tiny-ast", tiny_ast)
    with pytest.raises(PretrainedWeightsError) as err:
        ast_from("org/tiny-ast", "0" * 40)
    assert str(err.value).startswith(
        f"model_params.ast.revision: 'org/tiny-ast' has no revision '{'0' * 40}' on {hub.url}"
    )
    with pytest.raises(PretrainedWeightsError, match="has no revision 'v9'"):
        fetch("org/tiny-ast", "v9", KEY)


def test_unknown_repository_says_so(hub):
    with pytest.raises(PretrainedWeightsError, match="no model 'org/nothing' on http://127"):
        fetch("org/nothing", "main", KEY)


def test_truncated_download_says_so_and_a_rerun_completes_it(hub, tiny_ast):
    commit = hub.add("org/tiny-ast", tiny_ast)
    hub.damage[("org/tiny-ast", "model.safetensors")] = "truncated"
    with pytest.raises(PretrainedWeightsError) as err:
        fetch("org/tiny-ast", commit, KEY)
    message = str(err.value)
    assert f"{KEY}: the download of 'org/tiny-ast' at revision '{commit}' failed" in message
    assert "Run again to resume it" in message and "--force-download" in message
    del hub.damage[("org/tiny-ast", "model.safetensors")]
    assert fetch("org/tiny-ast", commit, KEY).weights == ("model.safetensors",)


def test_altered_file_is_refused(hub, tiny_ast):
    commit = hub.add("org/tiny-ast", tiny_ast)
    hub.damage[("org/tiny-ast", "model.safetensors")] = "altered"  # same size, other bytes
    with pytest.raises(PretrainedWeightsError) as err:
        ast_from("org/tiny-ast", commit)
    message = str(err.value)
    expected = hashlib.sha256((tiny_ast / "model.safetensors").read_bytes()).hexdigest()
    assert message.startswith(f"{KEY}: org/tiny-ast@{commit}: model.safetensors does not match")
    assert f"(expected {expected}, the file has " in message
    assert f"hf download org/tiny-ast --revision {commit}" in message


def test_offline_and_not_cached_names_the_command(hub, tiny_ast, monkeypatch):
    commit = hub.add("org/tiny-ast", tiny_ast)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError) as err:
        ast_from("org/tiny-ast", commit)
    message = str(err.value)
    assert "is not in the Hugging Face cache" in message and "downloads are off" in message
    assert (
        f"`hf download org/tiny-ast --revision {commit} --include config.json "
        "--include preprocessor_config.json --include README.md --include '*.safetensors' "
        "--include '*.safetensors.index.json'`" in message
    )
    assert f"or set {KEY}=null to train from scratch" in message
    assert hub.requests == []


def test_unreachable_hub_names_the_command(monkeypatch, tmp_path):
    with HubStandIn() as closed:
        url = closed.url
    monkeypatch.setenv("HF_ENDPOINT", url)  # nothing listens there any more
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(PretrainedWeightsError) as err:
        fetch("org/tiny-ast", "main", KEY)
    message = str(err.value)
    assert "the Hub cannot be reached" in message
    assert "`hf download org/tiny-ast --revision main --include config.json" in message


class Payload:
    """Unpickling it would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickle_only_repository_runs_no_payload(hub, tiny_ast, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((tiny_ast / name).read_bytes())
    marker = tmp_path / "payload-ran"
    torch.save({"weights": Payload(marker)}, folder / "pytorch_model.bin")
    commit = hub.add("org/pickled", folder)
    with pytest.raises(PretrainedWeightsError) as err:
        ast_from("org/pickled", commit)
    assert not marker.exists()
    message = str(err.value)
    assert f"{KEY}: 'org/pickled' (pytorch_model.bin in " in message
    assert "holds objects other than tensors: a pickle that would run code when loaded" in message
    assert "refused (loaded with weights_only=True; nothing in it ran)" in message
    assert any(r.endswith("pytorch_model.bin") for r in hub.requests)


def test_pickle_only_repository_of_tensors_loads_weights_only(hub, tiny_ast, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((tiny_ast / name).read_bytes())
    saved = load_file(tiny_ast / "model.safetensors")
    torch.save(saved, folder / "pytorch_model.bin")
    commit = hub.add("org/pickled", folder)
    model = ast_from("org/pickled", commit)
    assert model.net.pretrained_snapshot.weights == ("pytorch_model.bin",)
    name = "audio_spectrogram_transformer.embeddings.patch_embeddings.projection.weight"
    torch.testing.assert_close(model.net.state_dict()[name], saved[name])


def test_training_runs_record_id_commit_hash_and_licence(hub, tiny_ast, tiny_params):
    import dataclasses

    from audioclf.tracking import Store
    from audioclf.training.stage import training_runs

    commit = hub.add("org/tiny-ast", tiny_ast)

    class Table:  # what training_runs reads of a feature table
        kind = "fbank"
        meta = {"frontend": {"kind": "fbank"}}

    spec = dataclasses.replace(
        tiny_params.train_spec(),
        model="ast",
        model_config=ASTConfig(pretrained="org/tiny-ast", revision=commit),
    )
    split = tiny_params.split
    runs = training_runs(Store("sqlite:///unused.db"), "synthetic", spec, Table(), split, {})
    sha = hashlib.sha256((tiny_ast / "model.safetensors").read_bytes()).hexdigest()
    for recorded in (runs.tags, runs.params):
        assert recorded["pretrained_id"] == "org/tiny-ast"
        assert recorded["pretrained_commit"] == commit
        assert recorded["pretrained_sha256"] == sha
        assert recorded["pretrained_licence"] == "bsd-3-clause"
