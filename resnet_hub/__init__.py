"""resnet_hub: mmpretrain's ResNet model zoo as timm models, on the Hugging Face Hub.

``import resnet_hub`` registers the 22 configs of ``hub_configs/`` with timm and teaches
``timm.create_model`` the ``hub:`` prefix::

    import timm, resnet_hub
    model = timm.create_model("hub:resnet50_8xb32_in1k", pretrained=True)
"""
__version__ = "0.1.0"

from .embed import embed_images  # noqa: E402
from .inference import get_model, inference_model  # noqa: E402
from .zoo import models  # noqa: E402,F401  (registers the zoo with timm)
from .zoo.configs import (  # noqa: E402
    DEFAULT_NAMESPACE,
    HubConfig,
    HubConfigError,
    hub_namespace,
    hub_repo_id,
    list_configs,
    load_config,
)
from .zoo.hub_prefix import install as _install_hub_prefix  # noqa: E402
from .zoo.names import ModelName, parse_model_name  # noqa: E402

_install_hub_prefix()

__all__ = [
    "__version__", "DEFAULT_NAMESPACE", "HubConfig", "HubConfigError", "hub_namespace", "hub_repo_id",
    "list_configs", "load_config", "parse_model_name", "ModelName", "get_model", "inference_model",
    "embed_images",
]
