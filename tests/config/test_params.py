import pytest

from audioclf.config import ParamsError, flatten, load_params, parse_params
from audioclf.config.frontends import resolve_auto


def test_repo_params_are_valid():
    params = load_params("params.yaml")
    assert params.model in params.model_params
    profile = {"files": 1, "sample_rate": {"median": 22050}, "duration_s": {"p90": 4.0}}
    features, _ = resolve_auto(params.features, profile)
    assert features.n_frames == 1 + features.segment_samples // features.hop_length


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "model",
            "cnnn",
            "'model' is 'cnnn'; allowed values: ast, birdnet, cnn, cnn_cbam, cnn_se, cnn_v2, efficientnet_b2, embedding, hf, logreg, "
            "resnet50, svm, vit",
        ),
        ("dataset", "birds", "'dataset' is 'birds'; allowed values:"),
        ("loss", "hinge", "'loss' is 'hinge'; allowed values: ce, focal, weighted_ce"),
        ("seed", "42", "'seed' must be an integer, got '42'"),
    ],
)
def test_bad_top_level_value_names_key_and_choices(raw_params, key, value, message):
    raw_params[key] = value
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params(raw_params)


def test_bad_fraction_names_key(raw_params):
    raw_params["split"]["val"] = 1.5
    with pytest.raises(ParamsError, match=r"'split.val' must be a fraction in \(0, 1\), got 1.5"):
        parse_params(raw_params)


def test_fractions_must_sum_to_one(raw_params):
    raw_params["split"].update(train=0.6, val=0.15, test=0.15)
    with pytest.raises(ParamsError, match="must sum to 1, got 0.9"):
        parse_params(raw_params)


def test_typo_key_lists_allowed_keys(raw_params):
    raw_params["train"]["learning_rate"] = 0.1
    with pytest.raises(
        ParamsError,
        match=r"'train.learning_rate' is not a known key; allowed keys under 'train': epochs",
    ):
        parse_params(raw_params)


def test_unknown_top_level_key(raw_params):
    raw_params["modle"] = "cnn"
    with pytest.raises(ParamsError, match="'modle' is not a known key; allowed top-level keys"):
        parse_params(raw_params)


def test_nested_model_param_checked(raw_params):
    raw_params["model_params"]["cnn"]["dropout"] = 1.5
    with pytest.raises(ParamsError, match=r"dropout' must be in \[0, 1\), got 1.5"):
        parse_params(raw_params)
    raw_params["model_params"]["cnn"]["dropout"] = 0.1
    raw_params["model_params"]["resnet"] = {}
    with pytest.raises(ParamsError, match="'model_params.resnet' is 'resnet'"):
        parse_params(raw_params)


def test_bool_is_not_a_number(raw_params):
    raw_params["train"]["lr"] = True
    with pytest.raises(ParamsError, match="'train.lr' must be a number, got True"):
        parse_params(raw_params)


def test_f_max_above_nyquist(raw_params):
    raw_params["features"].update(
        f_max=20000.0,
        sample_rate=22050,
        n_fft=2048,
        hop_length=512,
        n_mels=128,
        segment_seconds=4.0,
    )
    with pytest.raises(ParamsError, match=r"'features.f_max' must be <= sample_rate/2 \(11025\)"):
        parse_params(raw_params)


def test_missing_params_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flatten():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": [3]}}}) == {"a": 1, "b.c": 2, "b.d.e": [3]}


@pytest.mark.parametrize("model", ["logreg", "svm"])
def test_a_scikit_learn_head_refuses_more_than_one_process(model):
    raw = load_params("params.yaml").raw
    raw = {**raw, "model": model, "features": {**raw["features"], "kind": "compare"}}
    parse_params(raw)  # one process: fine
    raw["train"] = {**raw["train"], "devices": 2}
    with pytest.raises(ParamsError, match=f"train.devices.*model={model} is a scikit-learn head"):
        parse_params(raw)
