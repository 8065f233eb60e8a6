"""Crabtree (2021) encoders: ResDAVEnet (padding invariance, length bookkeeping, presets, language
conditioning), masked BatchNorm, attention poolers and the ResNet image encoder. Tiny tensors only."""
import math

import pytest
import torch
from torch import nn

from vgs.nn.attention_pooling import (InternalMHSA, MHSAPooling, PositionalEncoding, TransformerPooling,
                                      make_pooling, sinusoidal_encoding)
from vgs.nn.pooling import MeanPooling, lengths_to_mask, masked_mean
from vgs.nn.recurrent import pad_batch
from vgs.nn.resdavenet import (MaskedBatchNorm1d, ResDAVEnet, resdavenet, thesis_avg_pool_len)
from vgs.nn.resnet import ResNetConfig, ResNetEncoder, resnet_encoder
from vgs.nn.speech_rnn import count_parameters

TINY = (8, 8, 16, 16, 16)  # stem + 4 layers; every width divisible by 8 heads
LENGTHS = [1, 5, 16, 17, 33, 70]  # one frame, < one output cell, exactly one cell, a cell + 1, ...


def _utterances(lengths, dim=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=g) for n in lengths]


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN (bias != 0 makes padded frames non-zero after BN): leaks would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _loud_batch(utts, extra=11, value=1e4):
    """Padded batch whose padding is loud, and a copy with even more (different) padding."""
    x, lens = pad_batch(utts)
    x[~lengths_to_mask(lens, x.shape[1])] = value
    wider = torch.cat([x, torch.full((len(utts), extra, x.shape[-1]), -value)], dim=1)
    return x, wider, lens


def _assert_padding_invariant(model, lengths=LENGTHS, language=None, atol=1e-5):
    utts = _utterances(lengths)
    x, wider, lens = _loud_batch(utts)
    batched = model(x, lens, language)
    assert torch.isfinite(batched).all()
    assert torch.allclose(model(wider, lens, language), batched, atol=atol)
    for i, u in enumerate(utts):
        lang = None if language is None else language[i:i + 1]
        alone = model(u[None], torch.tensor([len(u)]), lang)
        assert torch.allclose(alone[0], batched[i], atol=atol), (lengths[i], (alone[0] - batched[i]).abs().max())


LOG_MEL = dict(in_bins=40)          # the encoders take their input size from the caller (a feature store)


def _tiny(**kw):
    torch.manual_seed(0)
    model = ResDAVEnet(TINY, **{**LOG_MEL, "pooling": "avg", **kw})
    _randomise_batchnorm(model)
    return model.eval()


# -- ResDAVEnet: padding invariance -------------------------------------------------------------------
@pytest.mark.parametrize("pool_frames", ["real", "all"])
def test_resdavenet_avg_pooling_is_padding_invariant_in_eval_mode(pool_frames):
    _assert_padding_invariant(_tiny(pool_frames=pool_frames))


@pytest.mark.parametrize("variant", [dict(pooling="mhsa"), dict(pooling="mhsa_nocls"),
                                     dict(pooling="transformer", pooling_options=dict(dim_feedforward=32)),
                                     dict(pooling="avg", internal_attention=True)],
                         ids=["mhsa", "mhsa_nocls", "transformer", "avg_internal_mhsa"])
def test_resdavenet_attention_variants_are_padding_invariant_in_eval_mode(variant):
    _assert_padding_invariant(_tiny(**variant))


def test_resdavenet_frames_are_zero_past_each_length_and_match_the_utterance_alone():
    model = _tiny()
    utts = _utterances([9, 40])
    x, _, lens = _loud_batch(utts)
    feats, out_lens = model.frames(x, lens)
    assert out_lens.tolist() == [1, 3] and feats.shape == (2, 16, 3)
    assert (feats[0, :, 1:] == 0).all()
    alone, _ = model.frames(utts[0][None], torch.tensor([9]))
    assert torch.allclose(alone[0, :, :1], feats[0, :, :1], atol=1e-5)


def test_resdavenet_train_mode_ignores_padding_with_masked_batchnorm():
    torch.manual_seed(0)
    a, b = ResDAVEnet(TINY, **LOG_MEL, pooling="avg").train(), ResDAVEnet(TINY, **LOG_MEL, pooling="avg").train()
    b.load_state_dict(a.state_dict())
    x, wider, lens = _loud_batch(_utterances([20, 33, 70, 7]))
    za, zb = a(x, lens), b(wider, lens)
    assert torch.allclose(za, zb, atol=1e-5)
    for (name, ba), bb in zip(a.named_buffers(), b.buffers()):
        assert torch.allclose(ba.float(), bb.float(), atol=1e-5), name


def test_masked_batchnorm_matches_batchnorm_on_real_frames_only():
    torch.manual_seed(0)
    ours, ref = MaskedBatchNorm1d(3), nn.BatchNorm1d(3)
    x = torch.randn(2, 3, 6)
    # all frames real: exactly nn.BatchNorm1d (outputs and running statistics)
    full = torch.ones(2, 6, dtype=torch.bool)
    assert torch.allclose(ours(x, full), ref(x), atol=1e-6)
    assert torch.allclose(ours.running_mean, ref.running_mean) and torch.allclose(ours.running_var, ref.running_var)
    # some padding: statistics of the real frames only (as BN over the concatenated real frames)
    ours, ref = MaskedBatchNorm1d(3), nn.BatchNorm1d(3)
    mask = lengths_to_mask(torch.tensor([6, 2]), 6)
    poisoned = x.clone()
    poisoned[1, :, 2:] = 1e6
    real = torch.cat([x[0], x[1, :, :2]], dim=1)[None]  # (1, 3, 8)
    out = ours(poisoned, mask)
    expected = ref(real)[0]
    assert torch.allclose(torch.cat([out[0], out[1, :, :2]], dim=1), expected, atol=1e-5)
    assert torch.allclose(ours.running_mean, ref.running_mean) and torch.allclose(ours.running_var, ref.running_var)
    ours.eval()
    assert torch.equal(ours(x, mask), nn.functional.batch_norm(x, ours.running_mean, ours.running_var, ours.weight,
                                                               ours.bias, False, 0.0, ours.eps))


# -- ResDAVEnet: lengths --------------------------------------------------------------------------------
def test_length_bookkeeping_matches_the_conv_arithmetic():
    model = _tiny()
    lengths = torch.arange(1, 100)
    ceil16 = lambda n: math.ceil(math.ceil(math.ceil(math.ceil(n / 2) / 2) / 2) / 2)  # noqa: E731
    assert model.output_lengths(lengths).tolist() == [ceil16(n) for n in range(1, 100)]
    assert model.output_lengths(lengths).tolist() == [(n - 1) // 16 + 1 for n in range(1, 100)]
    # the real frames pooled are the first floor(L / 16) (at least one): Sec. 3.1.6.1 with ratio 16
    pm = model.pool_mask(lengths)
    assert pm.sum(1).tolist() == [max(1, n // 16) for n in range(1, 100)]
    assert torch.equal(pm, lengths_to_mask(pm.sum(1), pm.shape[1]))
    # and each length is what the network really outputs for that utterance alone
    for n in [1, 2, 3, 15, 16, 17, 31, 32, 33, 48, 49]:
        feats, out = model.frames(torch.randn(1, n, 40), torch.tensor([n]))
        assert feats.shape[-1] == out.item() == ceil16(n), n


def test_seq_conditioning_length_bookkeeping():
    model = _tiny(language_conditioning="seq", num_languages=3)
    lengths = torch.tensor([1, 5, 16, 40])

    def plan(n):
        for i in range(4):
            if i > 0:
                n += 8  # 8 language frames appended after the real frames, between residual layers
            n = math.ceil(n / 2)
        return n
    assert model.output_lengths(lengths).tolist() == [plan(n) for n in lengths.tolist()]
    feats, out = model.frames(torch.randn(4, 40, 40), lengths, torch.tensor([0, 1, 2, 0]))
    assert out.tolist() == [plan(n) for n in lengths.tolist()] and feats.shape[-1] == max(out.tolist())


def test_thesis_avg_pool_len_formula_depends_on_the_batch():
    # literal Sec. 3.1.6.1 rule: floor(len / round(max_sl / max_sl_out))
    lengths = torch.tensor([150, 140])
    assert thesis_avg_pool_len(lengths, 150, 10).tolist() == [10, 9]  # batched: ratio round(15.0) = 15
    assert thesis_avg_pool_len(torch.tensor([140]), 140, 9).tolist() == [8]  # alone: round(15.56) = 16
    # ours: floor(L / 16) whatever the batch
    assert _tiny().pool_mask(lengths).sum(1).tolist() == [9, 8]


# -- ResDAVEnet: shapes, presets, parameter counts ------------------------------------------------------
def _resdavenet_count(widths, bins=40, k=9, blocks=2, cond=None, nl=0, ld=8, embed_dim=None):
    """Closed form: stem Conv(bins -> w0, 1) + BN; per layer a stride-2 block with Conv1x1+BN shortcut
    and (blocks - 1) identity blocks; every conv bias-free, BN 2 parameters per channel."""
    w = widths
    total = bins * w[0] + 2 * w[0]
    if cond in ("input", "seq", "chan"):
        total += ld * w[0] + nl * ld
    if cond in ("seq", "chan"):
        total += (len(w) - 2) * nl * ld
    for i in range(len(w) - 1):
        cin, c = w[i] + (ld if cond == "chan" and i > 0 else 0), w[i + 1]
        total += cin * c * k + 2 * c + c * c * k + 2 * c + cin * c + 2 * c
        total += (blocks - 1) * (2 * c * c * k + 4 * c)
    if embed_dim is not None and embed_dim != w[-1]:
        total += w[-1] * embed_dim + embed_dim
    return total


PRESET_COUNTS = {"paper": 46_490_880, "paper_128": 44_670_976, "cpu": 2_910_528}


@pytest.mark.parametrize("preset,widths", [
    pytest.param("paper", (128, 256, 256, 512, 1024), id="paper-46490880"),
    pytest.param("paper_128", (128, 128, 256, 512, 1024), id="paper_128-44670976"),
    pytest.param("cpu", (32, 64, 64, 128, 256), id="cpu-2910528"),
])
def test_resdavenet_preset_parameter_counts(preset, widths):
    with torch.device("meta"):  # counting needs no real weights
        model = resdavenet(preset, **LOG_MEL, variant="avg")
    assert model.widths == widths and model.embed_dim == widths[-1] and model.project is None
    assert count_parameters(model) == _resdavenet_count(widths) == PRESET_COUNTS[preset]


@pytest.mark.parametrize("cond", ["basic", "input", "seq", "chan"])
def test_language_conditioning_parameter_counts(cond):
    with torch.device("meta"):
        model = resdavenet("paper", **LOG_MEL, variant="avg", language_conditioning=cond, num_languages=3)
    assert count_parameters(model) == _resdavenet_count(model.widths, cond=cond, nl=3)
    print(cond, count_parameters(model))


def test_language_conditioning_changes_embeddings_except_basic():
    x = torch.randn(1, 45, 40).expand(3, -1, -1)
    lens = torch.tensor([45, 45, 45])
    langs = torch.tensor([0, 1, 2])
    for cond in ["input", "seq", "chan"]:
        z = _tiny(language_conditioning=cond, num_languages=3)(x, lens, langs)
        assert not torch.allclose(z[0], z[1], atol=1e-4) and not torch.allclose(z[1], z[2], atol=1e-4), cond
    basic = _tiny(language_conditioning="basic")
    z = basic(x, lens, langs)
    # Rows of one batch may differ in the last bits with several BLAS threads: compare, not equal.
    assert torch.allclose(z[0], z[1], atol=1e-6) and torch.allclose(z[1], z[2], atol=1e-6)
    assert torch.allclose(basic(x, lens), z, atol=1e-6)


@pytest.mark.parametrize("cond", ["input", "seq", "chan"])
def test_language_conditioned_encoders_are_padding_invariant(cond):
    language = torch.tensor([0, 2, 1, 1, 0, 2])
    _assert_padding_invariant(_tiny(language_conditioning=cond, num_languages=3), language=language)


def test_resdavenet_shapes_projection_normalisation_and_refusals():
    model = _tiny(embed_dim=24, normalize=True)
    x, lens = pad_batch(_utterances([30, 64, 3]))
    feats, out = model.frames(x, lens)
    assert feats.shape == (3, 24, 4) and out.tolist() == [2, 4, 1]
    z = model(x, lens)
    assert z.shape == (3, 24) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-6)
    with pytest.raises(ValueError, match="log-mel"):
        model(x[..., :39], lens)
    with pytest.raises(ValueError, match="lengths"):
        model(x, torch.tensor([30, 65, 3]))
    with pytest.raises(ValueError, match="lengths"):
        model(x, torch.tensor([30, 64, 0]))
    with pytest.raises(ValueError, match="odd"):
        ResDAVEnet(TINY, **LOG_MEL, pooling="avg", kernel_size=8)
    with pytest.raises(ValueError, match="num_languages"):
        ResDAVEnet(TINY, **LOG_MEL, pooling="avg", language_conditioning="seq")
    with pytest.raises(ValueError, match="language ids"):
        _tiny(language_conditioning="input", num_languages=2)(x, lens)
    with pytest.raises(ValueError, match="outside"):
        _tiny(language_conditioning="input", num_languages=2)(x, lens, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="variant"):
        resdavenet("cpu", **LOG_MEL, variant="max")


# -- attention poolers ----------------------------------------------------------------------------------
POOLERS = {
    "mhsa": lambda d: MHSAPooling(d),
    "mhsa_nocls": lambda d: MHSAPooling(d, cls_token=False),
    "transformer": lambda d: TransformerPooling(d, dim_feedforward=16),
    "avg": lambda d: MeanPooling(),
}


@pytest.mark.parametrize("name", sorted(POOLERS))
def test_poolers_ignore_padding(name):
    torch.manual_seed(0)
    pool = POOLERS[name](16).eval()
    lens = torch.tensor([1, 4, 9])
    mask = lengths_to_mask(lens, 9)
    h = torch.randn(3, 9, 16)
    poisoned = h.clone()
    poisoned[~mask] = 1e4
    poisoned[0, 5] = float("nan")
    out = pool(poisoned, mask)
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    wider = torch.cat([poisoned, torch.full((3, 4, 16), float("inf"))], dim=1)
    assert torch.allclose(pool(wider, lengths_to_mask(lens, 13)), out, atol=1e-5)
    for i, n in enumerate(lens.tolist()):
        alone = pool(h[i:i + 1, :n], torch.ones(1, n, dtype=torch.bool))
        assert torch.allclose(alone[0], out[i], atol=1e-5), (name, n)


def test_mhsa_pooling_is_row_zero_of_full_self_attention_with_scaled_positions():
    torch.manual_seed(0)
    d = 16
    for cls in (True, False):
        pool = MHSAPooling(d, cls_token=cls, dropout=0.0).eval()
        h = torch.randn(2, 5, d)
        mask = lengths_to_mask(torch.tensor([5, 3]), 5)
        assert torch.allclose(pool(h, mask), pool.full_sequence(h, mask)[:, 0], atol=1e-6)
        # by hand: [CLS;] frames, + PE / sqrt(d), attention over real positions, read position 0
        seq = torch.cat([pool.cls.expand(2, -1, -1), h], 1) if cls else h
        seq = seq + sinusoidal_encoding(seq.shape[1], d) / math.sqrt(d)
        kpm = ~torch.cat([torch.ones(2, 1, dtype=torch.bool), mask], 1) if cls else ~mask
        ref, _ = pool.attention(seq, seq, seq, key_padding_mask=kpm)
        assert torch.allclose(pool(h, mask), ref[:, 0], atol=1e-6)
    assert count_parameters(MHSAPooling(d)) == 4 * d * d + 4 * d + d
    assert count_parameters(MHSAPooling(d, cls_token=False)) == 4 * d * d + 4 * d
    assert MHSAPooling(d).attention.num_heads == 8


def test_positional_encoding_is_scaled_by_inverse_sqrt_d_and_followed_by_dropout():
    pe = PositionalEncoding(8, dropout=0.0)
    out = pe(torch.zeros(1, 3, 8))
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 1.0] * 4) / math.sqrt(8))
    assert torch.allclose(out[0, 2, :2], torch.tensor([math.sin(2.0), math.cos(2.0)]) / math.sqrt(8))
    drop = PositionalEncoding(8, dropout=0.5).train()
    assert (drop(torch.ones(1, 50, 8)) == 0).any()
    with pytest.raises(ValueError, match="max_len"):
        PositionalEncoding(8, max_len=4)(torch.zeros(1, 5, 8))


def test_transformer_pooling_uses_a_full_block_with_configurable_feed_forward():
    pool = TransformerPooling(16, dim_feedforward=32)
    assert pool.block.linear1.out_features == 32 and pool.block.self_attn.num_heads == 8
    assert TransformerPooling(16).block.linear1.out_features == 2048  # paper default
    d, f = 16, 32
    block = 4 * d * d + 4 * d + (d * f + f) + (f * d + d) + 2 * 2 * d
    assert count_parameters(pool) == block + d


def test_internal_mhsa_keeps_shape_and_ignores_padding():
    torch.manual_seed(0)
    layer = InternalMHSA(16).eval()
    x = torch.randn(2, 16, 7)
    lens = torch.tensor([7, 3])
    mask = lengths_to_mask(lens, 7)
    poisoned = x.clone()
    poisoned[1, :, 3:] = 1e4
    out = layer(poisoned, mask)
    assert out.shape == (2, 16, 7) and (out[1, :, 3:] == 0).all()
    alone = layer(x[1:, :, :3], torch.ones(1, 3, dtype=torch.bool))
    assert torch.allclose(alone[0], out[1, :, :3], atol=1e-5)


def test_make_pooling_names():
    assert isinstance(make_pooling("avg", 8), MeanPooling)
    assert make_pooling("mhsa", 8).cls_token and not make_pooling("mhsa_nocls", 8).cls_token
    assert isinstance(make_pooling("transformer", 8, dim_feedforward=4), TransformerPooling)
    with pytest.raises(ValueError, match="unknown pooling"):
        make_pooling("max", 8)
    with pytest.raises(ValueError, match="no options"):
        make_pooling("avg", 8, dropout=0.1)
    with pytest.raises(ValueError, match="divisible"):
        MHSAPooling(12)
    x, mask = torch.randn(2, 3, 8), lengths_to_mask(torch.tensor([3, 1]), 3)
    assert torch.equal(MeanPooling()(x, mask), masked_mean(x, mask))


# -- ResNet ---------------------------------------------------------------------------------------------
def _bottleneck_trunk_count(layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), in_channels=3, stem=64):
    """Standard ResNet-50 trunk (no fc): 7x7 stem + BN, bottlenecks 1x1-3x3-1x1 (x4 expansion), BN after
    every conv, Conv1x1+BN projection shortcut on the first block of each stage."""
    total = in_channels * stem * 49 + 2 * stem
    c = stem
    for n, p in zip(layers, widths):
        for j in range(n):
            total += c * p + 2 * p + p * p * 9 + 2 * p + p * 4 * p + 2 * 4 * p
            if j == 0:
                total += c * 4 * p + 2 * 4 * p
            c = 4 * p
    return total


def test_resnet50_preset_parameter_count():
    trunk = _bottleneck_trunk_count()
    assert trunk == 23_508_032  # torchvision resnet50 (25,557,032) minus its fc (2048 * 1000 + 1000)
    with torch.device("meta"):
        model = resnet_encoder("resnet50", pooling="avg")
        grey = resnet_encoder("resnet50", in_channels=1, pooling="avg")
    assert model.in_channels == 3 and model.embed_dim == 1024
    assert count_parameters(model.trunk) == trunk
    assert count_parameters(model) == trunk + 2048 * 1024 + 1024 == 25_606_208
    assert count_parameters(grey) == 25_606_208 - 2 * 64 * 49


def test_resnet50_shaped_trunk_maps_224_to_7x7():
    # same strides as ResNet-50 with one tiny bottleneck per stage (cheap): 224 -> 7 x 7 x embed
    cfg = ResNetConfig("bottleneck", (1, 1, 1, 1), (2, 2, 2, 2), stem_channels=2, embed_dim=8)
    model = ResNetEncoder(cfg, in_channels=3, pooling="avg").eval()
    assert model.feature_map(torch.randn(1, 3, 224, 224)).shape == (1, 8, 7, 7)


def test_resnet_cpu_preset_on_grey_64x64():
    torch.manual_seed(0)
    model = resnet_encoder("cpu", pooling="avg")
    assert model.in_channels == 1 and model.embed_dim == 256
    images = torch.randn(3, 1, 64, 64)
    assert model.feature_map(images).shape == (3, 256, 2, 2)
    z = model(images)
    assert z.shape == (3, 256)
    assert torch.allclose(z, model.feature_map(images).mean(dim=(2, 3)), atol=1e-5)
    print("resnet cpu parameters", count_parameters(model))
    for pooling in ("mhsa", "mhsa_nocls", "transformer"):
        m = resnet_encoder("cpu", pooling=pooling, pooling_options={"dim_feedforward": 16}
                           if pooling == "transformer" else None).eval()
        assert m(images).shape == (3, 256)
    with pytest.raises(ValueError, match="images"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown ResNet preset"):
        resnet_encoder("resnet18", pooling="avg")
