"""The code of audioclf's MLflow Model ("models from code"): MLflow runs this file to load the model.

:func:`audioclf.deploy.pyfunc.log_model` logs this file as the model; it names the model class,
and the weights, labels and front-end come from the checkpoint artifact
(:class:`audioclf.deploy.pyfunc.AudioclfModel`). Nothing is unpickled, but loading a model folder
runs the code file it holds (this one, in a folder we logged): load only folders you trust.
Running it sets MLflow's model, so nothing imports it.
"""

from mlflow.models import set_model

from audioclf.deploy.pyfunc import AudioclfModel

set_model(AudioclfModel())
