"""The PVAE training objective (Eq. 9) and the baselines' objectives.

  L = ELBO (Eq. 15 of appendix A)  -  alpha * coherence (Eq. 7)  -  beta * contrastive hinge (Eq. 8)

is maximised; `objective()` returns its negative, averaged over the batch, to minimise.

ELBO (multimodal posterior q(z_s, z_a, z_i | x_a, x_i), one reparameterised sample):
  E_q[log p(x_a | z_s, z_a)] + E_q[log p(x_i | z_s, z_i)] - sum_k KL(q(z_k | x_a, x_i) || N(0, I))
  with unit-variance Gaussian likelihoods on normalised features (README: choices).
Coherence: sum over modalities m of KL(q(z_s, z_style_m | x_a, x_i) || q(z_s, z_style_m | x_m)),
  the multimodal posterior against the unimodal one over the latents the unimodal net infers.
Contrastive: for paired sample n and a negative n' drawn from the batch (itself a random draw from
  the training set), for each ordered pair of modalities (m, m'):
    max(0, margin - k(mu_m(x^n), mu_m'(x^n)) + k(mu_m(x^n), mu_m'(x^n')))
  with mu_m the unimodal posterior mean of z_s and k(u, v) = exp(-gamma * ||u - v||^2).
JMVAE-kl uses the same ELBO and coherence over its single latent (its "KL" regulariser); VAE-sp and
VAE-im use the single-modality ELBO of their unimodal network.

Not in the paper, off unless `zi_independence` > 0 (model pvae-independence, README: "Results and
where they fall short"): zi_independence * nHSIC(mu_s, mu_i) per batch, for the multimodal and
the image network, with mu_s detached. Eq. 9 leaves the image decoder free to read the digit from
z_i; this term asks z_i to carry nothing that z_s predicts, without labels.
"""
from __future__ import annotations

import torch

from vgs.nn.gaussian import gaussian_log_likelihood, kl_diagonal, kl_to_standard_normal, reparameterize
from vgs.nn.recurrent import length_mask
from vgs.methods.pvae2018.config import Weights
from vgs.methods.pvae2018.model import AUDIO, IMAGE, MultimodalVAE
from vgs.train.device import current


def audio_log_likelihood(x: torch.Tensor, mean: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) sum over real frames and bins of log N(x; mean, 1); padded frames count for nothing."""
    ll = gaussian_log_likelihood(x, mean, 0.0).sum(dim=-1)
    return (ll * length_mask(lengths, x.shape[1])).sum(dim=1)


def image_log_likelihood(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(B,) sum over pixels of log N(x; mean, 1)."""
    return gaussian_log_likelihood(x, mean, 0.0).flatten(1).sum(dim=1)


def reconstruction(model: MultimodalVAE, batch: dict, z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for m in model.spec.modalities:
        if m == AUDIO:
            mean = model.decode(AUDIO, z, batch["audio_lengths"])
            out[m] = audio_log_likelihood(batch["audio"], mean, batch["audio_lengths"])
        else:
            out[m] = image_log_likelihood(batch["image"], model.decode(IMAGE, z))
    return out


def elbo_terms(model: MultimodalVAE, batch: dict, posterior: dict) -> dict[str, torch.Tensor]:
    """Per-sample reconstruction log-likelihoods (`rec_<modality>`) and prior KLs (`kl_<latent>`)."""
    z = {name: reparameterize(mean, logvar) for name, (mean, logvar) in posterior.items()}
    terms = {f"rec_{m}": v for m, v in reconstruction(model, batch, z).items()}
    for name, (mean, logvar) in posterior.items():
        terms[f"kl_{name}"] = kl_to_standard_normal(mean, logvar)
    return terms


def elbo(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(v for k, v in terms.items() if k.startswith("rec_")) - sum(
        v for k, v in terms.items() if k.startswith("kl_"))


def coherence_kl(multimodal: dict, unimodal: dict) -> torch.Tensor:
    """(B,) KL(q(latents | x_a, x_i) || q(latents | x_m)) over the latents the unimodal net infers."""
    return sum(kl_diagonal(*multimodal[name], *unimodal[name]) for name in unimodal)


def rbf_kernel(u: torch.Tensor, v: torch.Tensor, gamma: float) -> torch.Tensor:
    return torch.exp(-gamma * (u - v).pow(2).sum(dim=-1))


def normalised_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)) (Song et al. 2012) with RBF kernels at the
    median squared distance. Near 0 for independent rows, 1 for y = x. The unbiased estimator
    matters at batch 32: the biased one sits near 0.75 for independent 32-dimensional noise."""
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 samples, got {n}")

    def gram(v):
        d2 = torch.cdist(v, v).pow(2)
        return torch.exp(-d2 / d2.detach().median().clamp_min(1e-8)) * (1 - torch.eye(n, dtype=v.dtype, device=v.device))

    def hsic(k, l):
        return ((k * l).sum() + k.sum() * l.sum() / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (k.sum(0) * l.sum(0)).sum()) / (n * (n - 3))
    kx, ky = gram(x), gram(y)
    return hsic(kx, ky) / (hsic(kx, kx) * hsic(ky, ky)).clamp_min(1e-12).sqrt()


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation with no fixed point (each sample gets another sample as negative)."""
    if n < 2:
        raise ValueError("negative sampling needs a batch of at least two samples")
    shift = torch.randint(1, n, (1,), generator=generator).item()
    perm = torch.randperm(n, generator=generator)
    # perm -> perm rolled by a non-zero shift: inverse composition has no fixed point.
    out = torch.empty(n, dtype=torch.long)
    out[perm] = perm.roll(shift)
    return out


def contrastive_hinge(mu: dict[str, torch.Tensor], negatives: dict[str, torch.Tensor], gamma: float,
                      margin: float) -> torch.Tensor:
    """(B,) Eq. 8 summed over ordered modality pairs; negatives[m'] indexes the negative of each row."""
    total = 0.0
    for m in mu:
        for other in mu:
            if other == m:
                continue
            positive = rbf_kernel(mu[m], mu[other], gamma)
            negative = rbf_kernel(mu[m], mu[other][negatives[other]], gamma)
            total = total + torch.clamp(margin - positive + negative, min=0.0)
    return total


def objective(model: MultimodalVAE, batch: dict, weights: Weights,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Batch-mean loss to minimise and a dict of logged terms (per-sample means)."""
    spec = model.spec
    logs: dict[str, float] = {}
    if not spec.multimodal:
        (m,) = spec.modalities
        terms = elbo_terms(model, batch, model.infer_unimodal(m, batch))
        loss = -elbo(terms).mean()
        logs.update({k: v.mean().item() for k, v in terms.items()})
        logs["loss"] = loss.item()
        return loss, logs
    posterior = model.infer_multimodal(batch)
    terms = elbo_terms(model, batch, posterior)
    per_sample = -elbo(terms)
    logs.update({k: v.mean().item() for k, v in terms.items()})
    unimodal = {m: model.infer_unimodal(m, batch) for m in spec.modalities}
    if weights.coherence:
        coherence = {m: coherence_kl(posterior, unimodal[m]) for m in spec.modalities}
        per_sample = per_sample + weights.coherence * sum(coherence.values())
        logs.update({f"coh_{m}": v.mean().item() for m, v in coherence.items()})
    if weights.contrastive:
        if "s" not in spec.latents:
            raise ValueError(f"the contrastive term needs a shared latent z_s; a {spec.kind} model has none")
        generator = generator or torch.Generator().manual_seed(0)
        n = batch["image"].shape[0]
        # Drawn on the CPU generator, so every device pairs the same negatives.
        negatives = {m: current().to(derangement(n, generator)) for m in spec.modalities}
        mu = {m: unimodal[m]["s"][0] for m in spec.modalities}
        hinge = contrastive_hinge(mu, negatives, weights.kernel_gamma, weights.margin)
        per_sample = per_sample + weights.contrastive * hinge
        logs["contrastive"] = hinge.mean().item()
    loss = per_sample.mean()
    if weights.zi_independence:
        if "i" not in spec.latents:
            raise ValueError(f"the independence term needs z_s and z_i; a {spec.kind} model lacks them")
        # mu_s is detached: the term may only move z_i, never pull the digit out of z_s.
        dependence = sum(normalised_hsic(post["s"][0].detach(), post["i"][0])
                         for post in (posterior, unimodal[IMAGE]))
        loss = loss + weights.zi_independence * dependence
        logs["nhsic_s_i"] = dependence.item()
    logs["loss"] = loss.item()
    return loss, logs
