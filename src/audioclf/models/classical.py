"""The scikit-learn heads, ``logreg`` and ``svm``, as models: built, saved, loaded, run.

A head is a :class:`~sklearn.pipeline.Pipeline` of a :class:`~sklearn.preprocessing.StandardScaler`
(fitted on the training split, after ``train.norm``) and the classifier, on the flattened
features of one segment (a vector front-end: (1, D, 1) -> D values). It is saved in MLflow's
scikit-learn flavour, in the ``skops`` format (loading runs no pickled code), in a folder
beside the fold's ``best.pt``, which holds the rest of a checkpoint (labels, input
normalisation, front-end, params) as the networks' do. :class:`SklearnHead` wraps a fitted
pipeline as an ``nn.Module`` returning log-probabilities, so validation, evaluation and
every report run it as they run a network.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from audioclf.config.heads import HEAD_CONFIGS
from audioclf.errors import CheckpointError
from audioclf.io import atomic_path

MODEL_FOLDER = "sklearn"  # beside best.pt: the MLflow model (MLmodel, model.skops, requirements)
SERIALIZATION = "skops"  # mlflow.sklearn's safe format (no arbitrary code when loaded)
MODEL_FILE = "model.skops"  # inside MODEL_FOLDER, as mlflow.sklearn names it
# beyond skops' default trust (scikit-learn's estimators, numpy): the SVM's calibration parts
TRUSTED = ["sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"]
FLOOR = 1e-12  # probability floor before the logarithm
PLATT_FOLDS = 5  # stratified folds of the SVM's calibration (fewer where a class is rarer)


def build_estimator(
    name: str, cfg: Any, setting: dict, seed: int, platt_folds: int = PLATT_FOLDS
) -> Pipeline:
    """The unfitted pipeline of head ``name`` with one grid ``setting`` (``{"C", "gamma"}``).

    Args:
        name: ``logreg`` or ``svm``.
        cfg: its config (:mod:`audioclf.config.heads`).
        setting: the hyper-parameters chosen from the config's grid.
        seed: seeds the solver.
        platt_folds: stratified folds of the SVM's probability calibration (at most the
            smallest class's training segments, at least 2).
    """
    if name not in HEAD_CONFIGS:
        raise ValueError(f"unknown head {name!r}; allowed: {', '.join(HEAD_CONFIGS)}")
    weight = None if cfg.class_weight == "none" else cfg.class_weight
    if name == "logreg":
        clf = LogisticRegression(
            C=setting["C"], max_iter=cfg.max_iter, class_weight=weight, random_state=seed
        )
    else:
        svm = SVC(
            kernel=cfg.kernel,
            C=setting["C"],
            gamma=setting["gamma"],
            class_weight=weight,
            random_state=seed,
        )
        # Platt scaling on 5-fold out-of-fold decisions, then one SVM on the whole split (what
        # SVC(probability=True), deprecated in scikit-learn 1.9, did): probabilities for mAP,
        # calibration and averaging a file's segments
        clf = CalibratedClassifierCV(svm, method="sigmoid", cv=platt_folds, ensemble=False)
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def flat(x: torch.Tensor) -> np.ndarray:
    """Features (B, C, F, T) as the (B, C * F * T) float64 matrix a head reads."""
    return x.flatten(1).detach().cpu().numpy().astype(np.float64)


class SklearnHead(nn.Module):
    """A fitted pipeline as a model: features (B, C, F, T) -> (B, n_classes) log-probabilities.

    Classes the training split lacked (absent from the estimator's ``classes_``) get
    probability 0 (the floor). No torch parameters: nothing for an optimiser to train.
    """

    head_prefix = "estimator"

    def __init__(self, estimator: Pipeline, n_classes: int):
        super().__init__()
        self.estimator, self.n_classes = estimator, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = np.zeros((len(x), self.n_classes))
        probs[:, self.estimator.classes_] = self.estimator.predict_proba(flat(x))
        return torch.from_numpy(np.log(np.maximum(probs, FLOOR))).float().to(x.device)


def n_parameters(estimator: Pipeline) -> int:
    """Fitted numbers the head holds: scaler means and scales, then weights and biases (logreg)
    or support vectors, dual coefficients and biases (SVM)."""
    scale, clf = estimator.named_steps["scale"], estimator.named_steps["clf"]
    n = scale.mean_.size + scale.scale_.size
    if isinstance(clf, CalibratedClassifierCV):
        (calibrated,) = clf.calibrated_classifiers_
        svm = calibrated.estimator
        n += 2 * len(calibrated.calibrators)  # each class's sigmoid: slope and offset
        return int(n + svm.support_vectors_.size + svm.dual_coef_.size + svm.intercept_.size)
    return int(n + clf.coef_.size + clf.intercept_.size)


def save_head(estimator: Pipeline, folder: Path) -> None:
    """Save a fitted pipeline in MLflow's scikit-learn flavour at ``folder``, atomically."""
    import mlflow.sklearn

    with atomic_path(folder) as tmp:
        mlflow.sklearn.save_model(
            estimator,
            str(tmp),
            serialization_format=SERIALIZATION,
            skops_trusted_types=TRUSTED,
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],  # no environment scan
        )


def log_head(estimator: Pipeline, name: str = "model") -> None:
    """Log a fitted pipeline to the active MLflow run, in the scikit-learn flavour."""
    import mlflow.sklearn

    mlflow.sklearn.log_model(
        estimator,
        name=name,
        serialization_format=SERIALIZATION,
        skops_trusted_types=TRUSTED,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
    )


def load_head(checkpoint: Path, ckpt: dict) -> SklearnHead:
    """The head a classical checkpoint (``ckpt``, read from ``checkpoint``) names, in eval mode.

    The pipeline is read by skops with this module's list of trusted types (:data:`TRUSTED`),
    not the one the MLmodel file states: a file holding other objects is refused, never run.
    The folder must lie beside the checkpoint (a name that is absolute or climbs out is refused).

    Raises:
        CheckpointError: the folder lies elsewhere, or its model holds untrusted types.
    """
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    base = Path(os.path.abspath(Path(checkpoint).parent))
    folder = Path(os.path.abspath(base / str(ckpt["sklearn_model"])))
    if folder == base or not folder.is_relative_to(base):
        raise CheckpointError(
            f"{checkpoint} names the scikit-learn model {ckpt['sklearn_model']!r}, which lies "
            f"outside its folder {base}: refusing to load it; retrain (dvc repro train)"
        )
    path = folder / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{checkpoint} names the scikit-learn model {path.parent}, which holds no "
            f"{MODEL_FILE}; retrain (dvc repro train)"
        )
    try:
        estimator = skops.io.load(path, trusted=TRUSTED)
    except UntrustedTypesFoundException as exc:
        raise CheckpointError(
            f"{path} holds objects of types audioclf does not trust ({exc}): refusing to load "
            f"it. Retrain (dvc repro train), or load only models you trust"
        ) from None
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable skops file ({exc}); retrain") from None
    return SklearnHead(estimator, n_classes=len(ckpt["labels"])).eval()
