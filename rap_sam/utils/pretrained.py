"""The ImageNet weights a recipe's backbone starts from, fetched before
training starts.

The R50 recipe names them as mmengine does, ``init_cfg=dict(type=
'Pretrained', checkpoint='torchvision://resnet50')``: mmengine downloads
the file into torch's hub cache the first time, from inside the runner's
``init_weights``, where a machine without internet ends in a ``URLError``
traceback. :func:`fetch_pretrained` does the same download first, so a
failure is one line naming the file and the folder to put it in.
"""
import os
import os.path as osp
from typing import Optional
from urllib.parse import urlparse

from .user_errors import UserError

TORCHVISION = 'torchvision://'


class PretrainedWeightsError(UserError):
    """The backbone's pretrained weights cannot be had."""


def fetch_pretrained(cfg) -> Optional[str]:
    """The cached file of the backbone's ``torchvision://NAME`` weights,
    downloaded into torch's hub cache (``TORCH_HOME``) where mmengine will
    read it, when it is not there yet; None for any other ``init_cfg``
    (none, a local file, OpenCLIP's, which its own loader checks).

    On a distributed run only each node's first process downloads (the
    others are left to mmengine, which loads on rank 0 and then waits).

    Raises:
        PretrainedWeightsError: the name is not torchvision's, or the
            download failed (what to fetch, where to put it, and the option
            that trains from scratch instead).
    """
    init = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
    source = str(init.get('checkpoint', '')) \
        if init.get('type') == 'Pretrained' else ''
    if not source.startswith(TORCHVISION) or \
            int(os.environ.get('LOCAL_RANK', 0)) != 0:
        return None
    import torch
    from mmengine.runner import checkpoint as mmengine_checkpoint
    name = source[len(TORCHVISION):]
    url = mmengine_checkpoint.get_torchvision_models().get(name)
    scratch = 'or train from scratch with --cfg-options ' \
        'model.backbone.init_cfg=None'
    if url is None:
        raise PretrainedWeightsError(
            f"The backbone's init_cfg names {source}, which torchvision has "
            f'no weights for: name one it has (e.g. {TORCHVISION}resnet50), '
            f'{scratch}.')
    folder = osp.join(torch.hub.get_dir(), 'checkpoints')
    path = osp.join(folder, osp.basename(urlparse(url).path))
    if osp.isfile(path):
        return path
    try:
        os.makedirs(folder, exist_ok=True)
        # Written to a temporary file and moved into place when complete:
        # a broken download leaves no file that a later run would take.
        torch.hub.download_url_to_file(url, path, progress=False)
    except OSError as err:  # urllib's URLError and HTTPError among them
        reason = getattr(err, 'reason', None) or err.strerror or err
        raise PretrainedWeightsError(
            f"Cannot download the backbone's ImageNet weights {source} "
            f'({url}: {reason}): put {osp.basename(path)} in {folder} (the '
            f'file at that address), {scratch}.') from None
    return path
