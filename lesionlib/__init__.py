"""lesionlib: train, evaluate, explain and serve dermoscopic skin-lesion classifiers.

The library never imports Streamlit; the dashboard (``dashboard.py``, ``pages/``) is a thin layer
on top of it.
"""

import os

# Keras 3 on the TensorFlow backend; tf-keras-vis breaks under the legacy tf-keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
