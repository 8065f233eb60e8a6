"""Leidal et al. 2017: Gaussian-posterior image and audio encoders and the training objective.

Both encoders map an input to the mean and log-variance of a diagonal Gaussian over z-dimensional
embeddings (z=128 in the paper; Eq. 2); embeddings are drawn from it by reparameterisation (Eq. 3). The objective is
L = L_sim (Eq. 1) + lambda_IG * L_IG (Eq. 4) + lambda_WD * L_WD (Eq. 5).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vgs.nn.gaussian import GaussianHead, frobenius_norm_sum, kl_to_standard_normal, reparameterize


class ImageEncoder(nn.Module):
    """Section 5: 3x3 conv 64 / 3x3 conv stride 2, 128 / 3x3 conv stride 2, 256 (all `same`
    padding) / FC 512, ReLU after each, then a linear 256-unit output split into mean and log-variance.
    Grey-scale input: `image_size` (H, W) is the image store's item shape (MNIST: 28 x 28)."""

    def __init__(self, *, z_dim: int, image_size: tuple[int, int]):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.ReLU(),
        )
        # oneDNN's native layout: in NCHW every convolution and its backward reorders its
        # tensors; channels-last made a bf16 training step 14% faster (README, "Time").
        self.conv.to(memory_format=torch.channels_last)
        h, w = image_size
        for _ in range(2):  # two stride-2 `same` convolutions: ceil(n / 2) each
            h, w = (h + 1) // 2, (w + 1) // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(256 * h * w, 512), nn.ReLU())
        self.head = GaussianHead(512, z_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, H, W) in [0, 1] -> mean, logvar (B, z)."""
        return self.head(self.fc(self.conv(images.unsqueeze(1).contiguous(memory_format=torch.channels_last))))


class AudioEncoder(nn.Module):
    """Hsu et al. 2017's speech-VAE encoder on (T, F) fbank input (the paper: T=100 frames, F=80 bins;
    F is the audio store's feature dimension).

    conv 64 filters 1xF (valid: spans all bins) / conv 128 3x1 stride (2,1) / conv 256 3x1
    stride (2,1) (`same` padding in time) / FC 512, each followed by batch norm and ReLU, then
    linear heads for the mean and log-variance.
    """

    def __init__(self, *, z_dim: int, num_frames: int, num_bins: int):
        super().__init__()
        # The 1xF kernel spans every bin, so the net is a 1-D convolution over time with F input
        # channels; Conv1d computes exactly the same thing faster than Conv2d on (1, T, F).
        self.conv = nn.Sequential(
            nn.Conv1d(num_bins, 64, 1), nn.BatchNorm1d(64), nn.ReLU(),
            nn.Conv1d(64, 128, 3, stride=2, padding=1), nn.BatchNorm1d(128), nn.ReLU(),
            nn.Conv1d(128, 256, 3, stride=2, padding=1), nn.BatchNorm1d(256), nn.ReLU(),
        )
        t = num_frames
        for _ in range(2):
            t = (t + 1) // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(256 * t, 512), nn.BatchNorm1d(512), nn.ReLU())
        self.head = GaussianHead(512, z_dim)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F) -> mean, logvar (B, z)."""
        return self.head(self.fc(self.conv(feats.transpose(1, 2))))


class LeidalModel(nn.Module):
    def __init__(self, *, z_dim: int, image_size: tuple[int, int], num_frames: int, num_bins: int):
        super().__init__()
        self.image = ImageEncoder(z_dim=z_dim, image_size=image_size)
        self.audio = AudioEncoder(z_dim=z_dim, num_frames=num_frames, num_bins=num_bins)


def similarity_loss(image_samples: torch.Tensor, audio_samples: torch.Tensor, negatives: torch.Tensor,
                    margin: float) -> torch.Tensor:
    """Eq. 1 over M sampled pairs, averaged over the pairs (see README: mean, not sum).

    image_samples, audio_samples: (M, z); row i of each is the i-th positive pair.
    negatives: (M,) index j != i of the pair whose image and audio serve as the negatives of pair
    i in the audio->image and image->audio terms respectively (one j per i, as in Eq. 1).
    """
    positive = (image_samples * audio_samples).sum(-1)
    audio_to_wrong_image = (audio_samples * image_samples[negatives]).sum(-1)
    image_to_wrong_audio = (image_samples * audio_samples[negatives]).sum(-1)
    hinge = F.relu(margin - positive + audio_to_wrong_image) + F.relu(margin - positive + image_to_wrong_audio)
    return hinge.mean()


def information_gain_loss(image_mean, image_logvar, audio_mean, audio_logvar) -> torch.Tensor:
    """Eq. 4: (1/N) sum_i KL(q_v^i || N(0,I)) + KL(q_a^i || N(0,I)) over the N input pairs."""
    return (kl_to_standard_normal(image_mean, image_logvar) + kl_to_standard_normal(audio_mean, audio_logvar)).mean()


def draw_negatives(num_pairs: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each i, one j drawn uniformly from {0..M-1} \\ {i} (same-class pairs not excluded)."""
    offset = torch.randint(1, num_pairs, (num_pairs,), generator=generator)
    return (torch.arange(num_pairs) + offset) % num_pairs


def leidal_loss(model: LeidalModel, images: torch.Tensor, audio: torch.Tensor, lambda_ig: float,
                lambda_wd: float, *, num_samples: int, margin: float,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The total loss of Eq. 5 for one batch of B image-audio pairs (B * num_samples sampled pairs).

    Sample s of image b is paired with sample s of audio b (the paper's footnote 2).
    """
    # float(): under bf16 autocast only the encoders run in bf16; sampling and the loss stay fp32.
    image_mean, image_logvar = (t.float() for t in model.image(images))
    audio_mean, audio_logvar = (t.float() for t in model.audio(audio))
    z_dim = image_mean.shape[-1]
    image_samples = reparameterize(image_mean, image_logvar, num_samples).reshape(-1, z_dim)
    audio_samples = reparameterize(audio_mean, audio_logvar, num_samples).reshape(-1, z_dim)
    # Drawn from the CPU generator on every device (the CPU stream stays as it was); the index
    # then follows the samples to their device.
    negatives = draw_negatives(len(image_samples), generator).to(image_samples.device)
    sim = similarity_loss(image_samples, audio_samples, negatives, margin)
    ig = information_gain_loss(image_mean, image_logvar, audio_mean, audio_logvar)
    wd = frobenius_norm_sum(model)
    total = sim + lambda_ig * ig + lambda_wd * wd
    return {"loss": total, "sim": sim, "ig": ig, "wd": wd}
