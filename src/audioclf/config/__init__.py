"""Configuration: the typed, validated view of ``params.yaml``.

One config dataclass per params section, in one module per concern: ``data``
(``data.*``, ``split``, ``audit``), ``features``, ``models`` (``model_params.<model>``),
``losses`` (``loss_params.<loss>``), ``training`` (``train``, ``augment``) and
``evaluation``; :mod:`~audioclf.config.params` assembles them into :class:`Params`,
and :mod:`~audioclf.config.schema` builds and checks them. Every config is a frozen
dataclass named ``*Config`` whose ``__post_init__`` checks its ranges, naming the key.
The bottom layer of the package: imports only the standard library, yaml and
:mod:`audioclf.errors`.
"""

from audioclf.config.params import Params, load_params, parse_params
from audioclf.config.schema import ParamsError, flatten

__all__ = ["Params", "ParamsError", "flatten", "load_params", "parse_params"]
