"""Loss functions of CANU-ReID, MMT and ACAN: pure functions of tensors (no module state).

Meta-architectures put their results in fast-reid's loss dict under ``loss_*`` names.
"""
import torch
import torch.nn.functional as F


def camera_cross_entropy(logits, camids):
    """Discriminator loss: cross-entropy of the camera prediction.

    Args:
        logits: (B, C) discriminator outputs; camids: (B,) int64 in [0, C).
    Returns:
        scalar tensor.
    """
    return F.cross_entropy(logits, camids)


def other_camera_equiprobability(logits, camids):
    """ACAN's OCE loss (Eq. 9): push the probability mass uniformly onto the *other* cameras,
    ``-1/(C-1) * sum_{i != k} log D(F(x), i)`` averaged over the batch.

    Args:
        logits: (B, C), C >= 2; camids: (B,) true camera k of each sample.
    Returns:
        scalar tensor.
    """
    num_cams = logits.size(1)
    if num_cams < 2:
        raise ValueError("OCE needs at least two cameras")
    logp = F.log_softmax(logits, dim=1)
    others = 1.0 - F.one_hot(camids, num_cams).to(logp.dtype)
    return -(logp * others).sum(1).div(num_cams - 1).mean()


def all_camera_equiprobability(logits):
    """ACAN's ACE ablation: cross-entropy to the uniform distribution over all C cameras.

    Args:
        logits: (B, C).
    Returns:
        scalar tensor.
    """
    return -F.log_softmax(logits, dim=1).mean(1).mean()


def per_camera_triplet(features, pids, camids, margin=0.3):
    """ACAN's intra-camera discrimination: batch-hard triplet loss where an anchor's positives and
    negatives come from its own camera only (labels are only meaningful within a camera).

    Args:
        features: (B, D); pids: (B,) per-camera identity labels; camids: (B,) cameras.
        margin: triplet margin (0.3 in ACAN).
    Returns:
        scalar tensor: mean over anchors that have a positive and a negative in their camera
        (0 when no anchor has both).
    """
    dist = torch.cdist(features, features)
    same_cam = camids[:, None] == camids[None, :]
    same_id = pids[:, None] == pids[None, :]
    eye = torch.eye(len(pids), dtype=torch.bool, device=features.device)
    pos_mask, neg_mask = same_cam & same_id & ~eye, same_cam & ~same_id
    ok = pos_mask.any(1) & neg_mask.any(1)
    if not ok.any():
        return features.sum() * 0.0
    inf = torch.finfo(dist.dtype).max
    hardest_pos = torch.where(pos_mask, dist, torch.full_like(dist, -inf)).max(1).values
    hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, inf)).min(1).values
    return F.relu(hardest_pos[ok] - hardest_neg[ok] + margin).mean()


def all_positive_triplet(features, labels, margin=0.5, groups=None):
    """SSG's triplet ("semi OHEM" in its code): every positive pair (a, p), a before p in the batch,
    against the hardest negative of a: mean of relu(d(a, p) - min_n d(a, n) + margin).

    The negatives of a are the samples with another ``labels`` value; the positives, the samples
    with the same ``groups`` value (default: ``labels``). SSG's part triplets pass the full-body
    labels as ``groups``: its positives are the pairs of a P x K block (the full-body cluster the
    sampler drew them from), only its negatives follow the part's labels.

    Args:
        features: (B, D); labels: (B,) identity labels (every sample labelled); margin: SSG 0.5.
        groups: (B,) labels that make the positive pairs, or None (= ``labels``).
    Returns:
        scalar tensor (0, still attached to ``features``, without a positive pair whose anchor has a negative).
    """
    dist = torch.cdist(features, features)
    same = labels[:, None] == labels[None, :]
    positive = same if groups is None else groups[:, None] == groups[None, :]
    pairs = positive.triu(1).nonzero()
    ok = ~same[pairs[:, 0]].all(1)  # anchors with a negative
    if not ok.any():
        return features.sum() * 0.0
    hardest_neg = torch.where(same, torch.full_like(dist, torch.finfo(dist.dtype).max), dist).min(1).values
    anchors = pairs[ok, 0]
    d_ap, d_an = dist[anchors, pairs[ok, 1]], hardest_neg[anchors]
    return F.relu(d_ap - d_an + margin).mean()


def soft_cross_entropy(logits, target_logits):
    """MMT's soft classification loss: cross-entropy to the (detached) teacher's softmax.

    Args:
        logits: (B, K) student logits; target_logits: (B, K) teacher logits.
    Returns:
        scalar tensor.
    """
    return -(F.softmax(target_logits.detach(), 1) * F.log_softmax(logits, 1)).sum(1).mean()


def soft_triplet(features, target_features, pids):
    """MMT's soft triplet loss: the student's softmax over (hardest positive, hardest negative)
    distances follows the teacher's, with the hardest pair chosen by the student.

    Args:
        features: (B, D) student; target_features: (B, D) teacher; pids: (B,) pseudo-labels.
    Returns:
        scalar tensor.
    """
    same = pids[:, None] == pids[None, :]
    dist = torch.cdist(features, features)
    inf = torch.finfo(dist.dtype).max
    pos_idx = torch.where(same, dist, torch.full_like(dist, -inf)).argmax(1)
    neg_idx = torch.where(~same, dist, torch.full_like(dist, inf)).argmin(1)
    rows = torch.arange(len(pids), device=features.device)
    student = torch.stack([dist[rows, pos_idx], dist[rows, neg_idx]], 1)
    with torch.no_grad():
        tdist = torch.cdist(target_features, target_features)
        teacher = torch.stack([tdist[rows, pos_idx], tdist[rows, neg_idx]], 1)
    return -(F.softmax(teacher, 1) * F.log_softmax(student, 1)).sum(1).mean()
