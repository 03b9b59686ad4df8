"""The model-store specs of the served models, one module per source of weights.

:mod:`services.models.specs.lite0` builds the EfficientNet-Lite0 specs (the ImageNet-1k export and the
Tiny-ImageNet fine-tune, from ``artifacts/``); :mod:`services.models.specs.yolox` the YOLOX-Nano detector's
(from the mirror file). ``bentos/<model>/import_model.py`` writes them into the model store, and the offline
tools (``training/serving.py``) evaluate through the same preprocessing. The functions take the folders they
read, not a settings object, so the serving and the training sides call them alike.
"""
