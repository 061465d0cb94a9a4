from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rap_sam.utils.class_embeddings import load_class_embeddings


class OpenVocabClassifier(nn.Module):
    """Cosine classifier over CLIP text embeddings of class names.

    A class may carry several synonyms; its score is the best-matching one.
    The last class is the background, whose embedding is zero, so its cosine
    score is always 0 and the foreground classes compete against that.

    The embeddings are buffers, not parameters: evaluation swaps in the
    target dataset's vocabulary, and released checkpoints do not hold them.

    Args:
        num_classes (int): Foreground classes.
        ov_classifier_name (str, optional): Name of the class-embedding file
            (``{dir}/{name}.pth``). When None, random orthonormal embeddings
            of ``embed_dims`` are used (tests, demos without weights).
        ov_classifier_dir (str, optional): Directory of the file; see
            :mod:`rap_sam.utils.class_embeddings`.
        embed_dims (int): Expected embedding dimension.
        logit_scale (float): log of the multiplier of the cosine scores;
            the released model used 4.6052 (about log 100).
    """

    def __init__(self,
                 num_classes: int,
                 ov_classifier_name: Optional[str] = None,
                 ov_classifier_dir: Optional[str] = None,
                 embed_dims: int = 768,
                 logit_scale: float = 4.6052):
        super().__init__()
        if ov_classifier_name is None:
            embeddings = torch.empty(num_classes, embed_dims)
            nn.init.orthogonal_(embeddings)
            embeddings = embeddings[:, None]
        else:
            embeddings = load_class_embeddings(
                ov_classifier_name,
                ov_classifier_dir,
                num_classes=num_classes,
                embed_dims=embed_dims)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.register_buffer(
            'fc_cls', self._with_background(embeddings), persistent=False)
        self.register_buffer(
            'logit_scale', torch.tensor(logit_scale), persistent=False)

    @staticmethod
    def _with_background(embeddings: Tensor) -> Tensor:
        """[K, P, D] -> [D, K + 1, P] with a zero background class."""
        background = embeddings.new_zeros(1, *embeddings.shape[1:])
        return torch.cat([embeddings, background]).permute(2, 0,
                                                           1).contiguous()

    def set_embeddings(self, embeddings: Tensor) -> None:
        """Swap in another vocabulary: ``[K, P, D]`` unit-norm embeddings."""
        if embeddings.dim() != 3 or embeddings.size(-1) != self.embed_dims:
            raise ValueError(
                f'class embeddings must be [classes, synonyms, '
                f'{self.embed_dims}], got {tuple(embeddings.shape)}')
        self.num_classes = embeddings.size(0)
        self.fc_cls = self._with_background(
            embeddings.to(self.fc_cls.device, torch.float32))

    def forward(self, cls_embed: Tensor) -> Tensor:
        """[..., D] query embeddings -> [..., K + 1] scaled cosine scores."""
        # One product with every synonym of every class ([D, (K + 1) * P]
        # columns): a MatMul node in a graph, not an Einsum.
        d, k, p = self.fc_cls.shape
        scores = F.normalize(cls_embed, dim=-1) @ self.fc_cls.view(d, k * p)
        scores = scores.unflatten(-1, (k, p)).max(-1).values
        return scores * self.logit_scale.exp()
