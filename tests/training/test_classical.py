"""The scikit-learn heads: they learn on the synthetic data (its ComParE functionals), choose C on
the validation split without ever reading the test split (on the log-mel's band summaries, no
extra needed), and their checkpoint evaluates like a network's."""

import dataclasses
import json

import numpy as np
import pytest

from audioclf.config.heads import LogRegConfig, SVMConfig
from audioclf.config.schema import ParamsError
from audioclf.evaluation.evaluate import evaluate
from audioclf.features.opensmile import LICENCE as OPENSMILE_LICENCE
from audioclf.features.table import FeatureTable, write_index
from audioclf.models.checkpoint import load_checkpoint
from audioclf.models.classical import SklearnHead
from audioclf.tracking import Store
from audioclf.training.classical import TooFewError, train_classical
from audioclf.training.stage import training_runs

# grids of two values (two by two for the RBF kernel's pairs): a choice to make on validation.
# L-BFGS takes the longer the larger C on the 6,373 functionals: logreg's grid stays small.
HEADS = {
    "logreg": LogRegConfig(C=(0.001, 0.01)),
    "svm": SVMConfig(C=(0.001, 1.0)),
    "svm_rbf": SVMConfig(kernel="rbf", C=(1.0, 10.0), gamma=("scale", 0.01)),
}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vectors(tiny_cache, tmp_path_factory):
    """The tiny dataset's log-mel as one vector per segment (each band's mean and std over time),
    in a table of a vector front-end: (folder, {split: paths})."""
    cache, split = tiny_cache
    table = FeatureTable(cache)
    x = np.asarray(table.data)  # (S, 1, F, T)
    v = np.concatenate([x.mean(axis=3), x.std(axis=3)], axis=2)[..., None]  # (S, 1, 2F, 1)
    folder = tmp_path_factory.mktemp("vectors") / "features"
    write_vectors(folder, v, table)
    return folder, {k: [e.path for e in entries] for k, entries in split.items()}


def write_vectors(folder, v: np.ndarray, table: FeatureTable) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    v.astype(np.float32).tofile(folder / "features.f32")
    write_index(table.rows, folder / "index.csv")
    meta = {**table.meta, "shape": list(v.shape), "frontend": {"kind": "egemaps"}}
    (folder / "meta.json").write_text(json.dumps({**meta, "frontend_key": "egemaps-test"}))


def spec_for(tiny_params, name: str):
    model = "svm" if name.startswith("svm") else name
    spec = tiny_params.train_spec()
    return dataclasses.replace(spec, model=model, model_config=HEADS[name])


@pytest.mark.parametrize("name", sorted(HEADS))
def test_heads_learn_and_their_checkpoint_evaluates(functionals, tiny_params, tmp_path, name):
    folder, paths = functionals
    table, spec = FeatureTable(folder), spec_for(tiny_params, name)
    logged = []
    result = train_classical(
        spec,
        table,
        paths["train"],
        paths["val"],
        tmp_path / "best.pt",
        lambda m, s: logged.append(s),
    )
    assert len(result["history"]) == len(logged) > 1
    out = evaluate(tmp_path / "best.pt", table, paths["test"], 64)
    chance = 1 / len(table.labels)
    assert out["metrics"]["macro_f1"] > 3 * chance  # 6 classes: chance is 0.17
    model, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert isinstance(model, SklearnHead) and ckpt["selected"] == result["selected"]
    assert (tmp_path / "sklearn" / "MLmodel").is_file()  # MLflow's scikit-learn flavour


def test_c_is_chosen_on_validation_and_the_test_split_is_never_read(vectors, tiny_params, tmp_path):
    folder, paths = vectors
    table = FeatureTable(folder)
    # poison the test files' features: reading any of them into the fit or the choice raises
    v = np.array(table.data)
    v[table.indices(paths["test"])] = np.nan
    poisoned = tmp_path / "poisoned"
    write_vectors(poisoned, v, table)
    table, spec = FeatureTable(poisoned), spec_for(tiny_params, "logreg")
    result = train_classical(
        spec, table, paths["train"], paths["val"], tmp_path / "best.pt", lambda m, s: None
    )
    val = [row["val_macro_f1"] for row in result["history"]]
    assert result["best_val_macro_f1"] == max(val)
    assert result["selected"]["C"] == result["history"][int(np.argmax(val))]["C"]
    # the control: the same training with the test files among the validation files does fail
    with pytest.raises(ValueError):
        train_classical(
            spec,
            table,
            paths["train"],
            paths["val"] + paths["test"],
            tmp_path / "leaky.pt",
            lambda m, s: None,
        )


def test_the_svm_calibrates_rare_classes_on_fewer_folds_and_refuses_singletons(
    vectors, tiny_params, tmp_path
):
    folder, paths = vectors
    table = FeatureTable(folder)
    rare = table.rows[table.indices(paths["train"])[0]].label
    keep = [p for p in paths["train"] if table.rows[table.indices([p])[0]].label != rare]
    two = keep + [p for p in paths["train"] if p not in keep][:2]  # 2 calibration folds
    result = train_classical(
        spec_for(tiny_params, "svm"), table, two, paths["val"], tmp_path / "b.pt", print
    )
    assert result["best_val_macro_f1"] > 0
    one = keep + [p for p in paths["train"] if p not in keep][:1]
    with pytest.raises(TooFewError, match="a class has a single training segment"):
        train_classical(
            spec_for(tiny_params, "svm"), table, one, paths["val"], tmp_path / "c.pt", print
        )


def test_bad_grids_are_named():
    with pytest.raises(ParamsError, match="model_params.svm.gamma"):
        SVMConfig(gamma=(-1.0,))
    with pytest.raises(ParamsError, match="model_params.logreg.C"):
        LogRegConfig(C=())


@pytest.mark.parametrize("kind, norm", [("compare", "group"), ("egemaps", "global")])
def test_runs_name_the_licence_and_the_normalisation(tiny_params, kind, norm):
    class Table:  # what training_runs reads of a feature table
        meta = {"frontend": {"kind": kind}}

    Table.kind = kind
    spec = tiny_params.train_spec()
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, norm=norm))
    tags = training_runs(
        Store("sqlite:///unused.db"), "emodb", spec, Table(), tiny_params.split, {}
    ).tags
    assert tags["features_licence"] == OPENSMILE_LICENCE and tags["features_kind"] == kind
    assert tags["train_norm"] == norm
    assert tags.get("transductive") == ("true" if norm == "group" else None)
