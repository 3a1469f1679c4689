"""The code of audioclf's MLflow Model ("models from code"): MLflow runs this file to load it.

It names the model class; the weights, labels and front-end come from the checkpoint artifact
(:class:`audioclf.deploy.pyfunc.AudioclfModel`). Nothing is unpickled.
"""

from mlflow.models import set_model

from audioclf.deploy.pyfunc import AudioclfModel

set_model(AudioclfModel())
