"""RAP-SAM on MMDetection 3.x.

Importing the package registers its modules in mmdet's registries and the
checkpoint loader that reads mmengine checkpoints under torch >= 2.6.

Where torch is not installed (a deployment that runs exported graphs with
ONNX Runtime or OpenVINO), nothing is registered and only the torch-free
modules (:mod:`rap_sam.deploy.backends`, :mod:`rap_sam.deploy.deploy_spec`,
:mod:`rap_sam.utils.user_errors`) can be imported. The entry points run
:mod:`rap_sam.utils.arg_types` by its path before importing anything of
the package: it installs the Ctrl+C / SIGTERM guard
(:mod:`rap_sam.utils.interrupt_guard`, whose docstring says why) and holds
the argparse pieces they share, all without torch.
"""
try:
    import torch  # noqa: F401
except ImportError:
    torch = None

if torch is not None:
    # First: PyPI's torchvision (needed by OpenCLIP) is a CUDA build whose
    # import fails beside a CPU torch unless its missing ops are declared;
    # mmengine's environment report imports torchvision too.
    from .utils.openclip_loader import declare_missing_torchvision_ops

    declare_missing_torchvision_ops()

    from . import datasets  # noqa: E402,F401
    from . import evaluation  # noqa: E402,F401
    from . import models  # noqa: E402,F401
    from . import utils  # noqa: E402,F401
    from . import visualization  # noqa: E402,F401

__version__ = '0.1.0'
