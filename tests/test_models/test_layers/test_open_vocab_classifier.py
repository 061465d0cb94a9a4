"""The classifier's product equals its definition: the best cosine over a
class's synonyms, the background at 0."""
import torch
import torch.nn.functional as F

from rap_sam.models.layers import OpenVocabClassifier


def test_scores_are_the_best_synonym_cosine_scaled():
    g = torch.Generator().manual_seed(0)
    classifier = OpenVocabClassifier(5, embed_dims=16, logit_scale=2.0)
    embeddings = F.normalize(torch.randn(5, 3, 16, generator=g), dim=-1)
    classifier.set_embeddings(embeddings)
    queries = torch.randn(2, 4, 16, generator=g)
    scores = classifier(queries)
    assert scores.shape == (2, 4, 6)
    cosines = torch.einsum('bnd,kpd->bnkp', F.normalize(queries, dim=-1),
                           embeddings)
    want = cosines.max(-1).values * torch.tensor(2.0).exp()
    torch.testing.assert_close(scores[..., :5], want, rtol=1e-5, atol=1e-6)
    assert torch.equal(scores[..., 5], torch.zeros(2, 4))
