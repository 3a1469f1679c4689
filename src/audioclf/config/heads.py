"""Typed params of the classical heads: ``model_params.logreg`` and ``model_params.svm``.

scikit-learn classifiers on one vector per segment (openSMILE functionals, BirdNET
embeddings: :data:`audioclf.config.features.VECTOR_KINDS`), trained by
:mod:`audioclf.training.classical`. Each hyper-parameter that is a list is a grid: every
value (every pair, for the RBF kernel's ``C`` and ``gamma``) is fitted on the training split
and the one with the best validation macro-F1 is kept, as the networks keep their best
epoch; the test split is never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from audioclf.config.schema import check, choice

KERNELS = ("linear", "rbf")
CLASS_WEIGHTS = ("none", "balanced")
C_GRID = (
    1e-4,
    1e-3,
    1e-2,
    1e-1,
    1.0,
    10.0,
)  # decimals in params.yaml: YAML 1.1 reads 1e-05 as a string


def _check_grid(values: tuple, key: str) -> None:
    check(len(values) >= 1, key, "must list at least one value")
    for v in values:
        check(isinstance(v, float) and v > 0, key, f"must hold positive numbers, got {v!r}")


@dataclass(frozen=True)
class LogRegConfig:
    """``model_params.logreg``: multinomial logistic regression (L2) on standardised vectors.

    Attributes:
        C: inverse regularisation strengths to choose from on the validation split.
        class_weight: ``none`` or ``balanced`` (each class weighted by the inverse of its
            training count).
        max_iter: iterations of the L-BFGS solver.
    """

    C: tuple[float, ...] = C_GRID
    class_weight: str = "none"
    max_iter: int = 2000

    def __post_init__(self):
        _check_grid(self.C, "model_params.logreg.C")
        choice(self.class_weight, CLASS_WEIGHTS, "model_params.logreg.class_weight")
        check(
            self.max_iter >= 1,
            "model_params.logreg.max_iter",
            f"must be >= 1, got {self.max_iter}",
        )


@dataclass(frozen=True)
class SVMConfig:
    """``model_params.svm``: a support vector machine (libsvm, one-vs-one) on standardised vectors;
    probabilities by Platt scaling (its internal 5-fold cross-validation, seeded).

    Attributes:
        kernel: ``linear`` or ``rbf``.
        C: penalties to choose from on the validation split.
        gamma: RBF widths to choose from (``scale``: 1 / (n_features * variance), scikit-learn's
            default); ignored by the linear kernel.
        class_weight: ``none`` or ``balanced``.
    """

    kernel: str = "linear"
    C: tuple[float, ...] = C_GRID
    gamma: tuple[float | str, ...] = ("scale",)
    class_weight: str = "none"

    def __post_init__(self):
        choice(self.kernel, KERNELS, "model_params.svm.kernel")
        _check_grid(self.C, "model_params.svm.C")
        check(len(self.gamma) >= 1, "model_params.svm.gamma", "must list at least one value")
        for g in self.gamma:
            check(
                g == "scale" or isinstance(g, float) and g > 0,
                "model_params.svm.gamma",
                f"must hold positive numbers or 'scale', got {g!r}",
            )
        choice(self.class_weight, CLASS_WEIGHTS, "model_params.svm.class_weight")

    def grid(self) -> list[dict]:
        """Every hyper-parameter setting to try, smallest ``C`` (most regularised) first."""
        gammas = self.gamma if self.kernel == "rbf" else ("scale",)
        return [{"C": c, "gamma": g} for c in sorted(self.C) for g in gammas]


# the classical heads: ``model`` -> config (built by audioclf.models.classical, trained by
# audioclf.training.classical)
HEAD_CONFIGS: dict[str, type] = {"logreg": LogRegConfig, "svm": SVMConfig}
