"""The frozen OpenCLIP ConvNeXt image tower as a 4-level backbone."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

from rap_sam.utils import openclip_loader
from rap_sam.utils.openclip_loader import (DEFAULT_CLIP_MODEL,
                                           build_clip_model, clip_model_config,
                                           resolve_clip_checkpoint)

# Checkpoint prefix -> module here; the names (stem, layer1-4, norm_pre,
# head.0/1) are those of the reference's RAP-SAM checkpoints.
_KEY_MAP = (('visual.trunk.stem.', 'stem.'),
            *((f'visual.trunk.stages.{i}.', f'layer{i + 1}.')
              for i in range(4)), ('visual.trunk.norm_pre.', 'norm_pre.'),
            ('visual.trunk.head.', 'head.0.'), ('visual.head.', 'head.1.'))


@MODELS.register_module()
class OpenCLIPBackbone(BaseModule):
    """An OpenCLIP ConvNeXt visual tower giving features at strides 4-32.

    Args:
        model_name: OpenCLIP architecture, e.g. ``convnext_large_d_320``
            (channels 192/384/768/1536).
        pretrained: OpenCLIP pretrained tag (or a checkpoint path) whose
            weights :meth:`init_weights` loads from a local file; None (the
            default, as mmdet's backbones without an ``init_cfg``) keeps
            random weights: a config names the tag, and whatever drops the
            config's ``init_cfg`` (weights loaded from a RAP-SAM
            checkpoint, a resumed training) needs no CLIP file.
        checkpoint: a local OpenCLIP checkpoint file, overriding the tag.
        model_cfg: an OpenCLIP architecture dict used instead of the named
            one (small towers for tests).
        fix: frozen: eval mode, no gradients (else only ``norm_pre`` and
            ``head``, outside the feature path, stay frozen).
        out_indices: which of the 4 stages to return.
        init_cfg: the reference's ``dict(type='clip_pretrain',
            checkpoint=TAG)`` is read as ``pretrained=TAG``.
    """

    def __init__(self,
                 model_name: str = DEFAULT_CLIP_MODEL,
                 pretrained: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 model_cfg: Optional[dict] = None,
                 fix: bool = True,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 init_cfg: Optional[dict] = None):
        if init_cfg is not None and init_cfg.get('type') == 'clip_pretrain':
            pretrained, init_cfg = init_cfg.get('checkpoint'), None
        super().__init__(init_cfg=init_cfg)
        clip_cfg = clip_model_config(model_name, model_cfg)
        visual = build_clip_model(model_name, clip_cfg).visual
        trunk = getattr(visual, 'trunk', None)
        if trunk is None or not hasattr(trunk, 'stages') or len(
                trunk.stages) != 4:
            raise ValueError(
                f'OpenCLIPBackbone needs a timm ConvNeXt image tower with 4 '
                f'stages; {model_name!r} has {type(visual).__name__}.')
        bad = [i for i in out_indices if not 0 <= i < 4]
        if bad:
            raise ValueError(f'out_indices {tuple(out_indices)} must lie in '
                             f'0..3 (4 stages); got {bad}.')
        info = trunk.feature_info[-4:]
        self.channels = [f['num_chs'] for f in info]
        self.strides = [f['reduction'] for f in info]
        if self.strides != [4, 8, 16, 32]:
            raise ValueError(f'{model_name!r} gives strides {self.strides}, '
                             f'the neck needs [4, 8, 16, 32].')
        self.model_name = model_name
        self.pretrained = pretrained
        self.checkpoint = checkpoint
        self.fix = fix
        self.out_indices = tuple(out_indices)
        self.out_channels = [self.channels[i] for i in self.out_indices]
        self.embed_dim = clip_cfg['embed_dim']  # of the class embeddings
        self.stem = trunk.stem
        for i, stage in enumerate(trunk.stages):
            self.add_module(f'layer{i + 1}', stage)
        self.norm_pre = trunk.norm_pre
        # Pooled features -> CLIP space, for open-vocabulary mask pooling.
        self.head = nn.Sequential(trunk.head, visual.head)
        # Unfixed, the feature path trains; the CLIP head stays as trained.
        self.requires_grad_(not fix)
        self.norm_pre.requires_grad_(False)
        self.head.requires_grad_(False)
        self.train(False)

    def init_weights(self) -> None:
        """Load the CLIP image-tower weights from a local file.

        Raises ``ClipWeightsNotFoundError`` (which file to fetch, where to
        put it) when neither ``checkpoint`` nor the tag's file is here.
        """
        path = resolve_clip_checkpoint(self.model_name, self.pretrained,
                                       self.checkpoint)
        if path is None:
            return super().init_weights()
        # A truncated, damaged or foreign file is one line naming the file
        # to fetch (ClipCheckpointError), not torch's traceback.
        state = openclip_loader.read_clip_state_dict(path, self.model_name,
                                                     self.pretrained)
        own = self.state_dict()
        mapped = {}
        for key, value in state.items():
            for src, dst in _KEY_MAP:
                if key.startswith(src):
                    mapped[dst + key[len(src):]] = value
        for key, value in mapped.items():
            if key in own and own[key].shape != value.shape:
                raise openclip_loader.ClipCheckpointError(
                    f'{path} does not fit OpenCLIP {self.model_name!r}: '
                    f'{key} is {tuple(value.shape)} there and '
                    f'{tuple(own[key].shape)} here; pass '
                    f'{self._expected_file()}.')
        missing = sorted(set(own) - set(mapped))
        if missing:
            raise openclip_loader.ClipCheckpointError(
                f'{path} lacks {len(missing)} image-tower weights of '
                f'{self.model_name!r}, e.g. {missing[:3]}: not a checkpoint '
                f'of it; pass '
                f'{self._expected_file()}.')
        self.load_state_dict(mapped, strict=True)
        self._is_init = True
        MMLogger.get_current_instance().info(
            f'OpenCLIPBackbone: loaded {self.model_name} weights from {path}')

    def _expected_file(self) -> str:
        return openclip_loader.expected_clip_file(self.model_name,
                                                  self.pretrained)

    def train(self, mode: bool = True):
        return super().train(mode and not self.fix)

    def forward(self, x: torch.Tensor):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.fix):
            x = self.stem(x)
            outs = []
            for i in range(4):
                x = getattr(self, f'layer{i + 1}')(x).contiguous()
                if i in self.out_indices:
                    outs.append(x)
        return tuple(outs)

    def get_clip_feature(self, backbone_feat: torch.Tensor) -> torch.Tensor:
        """The last stage's features as the CLIP head expects them."""
        return self.norm_pre(backbone_feat)

    def forward_feat(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, Q, C]`` -> CLIP embeddings ``[B, Q, D]``."""
        batch, num_query, channels = features.shape
        out = self.head(features.reshape(batch * num_query, channels, 1, 1))
        return out.view(batch, num_query, out.shape[-1])
