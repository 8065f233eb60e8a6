"""Mortazavi (2020) encoders: Table 1 counts (exact, instantiated), the count equations, padding
invariance of the speech embedder, masked pooling, DenseNet shapes and the CPU presets."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vgs.nn.densenet import (DENSENET_PRESETS, DenseNetConfig, densenet_config, densenet_config_dict,
                             densenet_embedder)
from vgs.nn.pooling import SelfAttentionPooling, lengths_to_mask, masked_mean, masked_softmax
from vgs.nn.recurrent import pad_batch
from vgs.nn.speech_rnn import (CPU_PAIRS, PAPER_PAIRS, BiGRU, SpeechRNNEmbedder, count_parameters,
                               embedder_pair, parameter_table, reverse_within_lengths)

# Mortazavi 2020, Table 1: (audio branch, image branch) trainable parameters. Typed in here on
# purpose (not imported), so that editing the module's copy cannot make this test pass.
TABLE1 = {
    "DG4A2048": (63_898_816, 36_155_776),
    "DG4A1024": (16_228_544, 33_402_240),
    "DG3A1024": (11_503_808, 33_402_240),
    "DG2A2048": (26_125_504, 36_155_776),
    "DG2A1024": (6_779_072, 33_402_240),
}


# -- Table 1 ------------------------------------------------------------------------------------------
def test_table1_counts_are_matched_exactly_by_instantiated_modules():
    rows = {r["pair"]: r for r in parameter_table("paper")}
    assert set(rows) == set(TABLE1)
    got = {name: (rows[name]["audio"], rows[name]["image"]) for name in TABLE1}
    assert got == TABLE1
    for name, (g, d) in [("DG4A2048", (4, 2048)), ("DG4A1024", (4, 1024)), ("DG3A1024", (3, 1024)),
                         ("DG2A2048", (2, 2048)), ("DG2A1024", (2, 1024))]:
        assert (rows[name]["G"], rows[name]["d"], rows[name]["in_channels"]) == (g, d, 3)


def _audio_count(G: int, d: int, conv_bias: int = 1, att_hidden: int = 128) -> int:
    """Closed form: Conv1d(40->64, k=6) + G BiGRU layers (h = d/2, two bias vectors) + vectorial attention."""
    h = d // 2
    conv = 64 * (40 * 6 + conv_bias)
    gru = lambda n: 2 * 3 * (n * h + h * h + 2 * h)  # noqa: E731
    attention = d * att_hidden + att_hidden + att_hidden * d + d
    return conv + gru(64) + (G - 1) * gru(d) + attention


def test_count_equations_match_instantiation_and_pin_the_unknowns():
    for (G, d) in [(4, 2048), (2, 1024), (3, 64), (1, 10)]:
        assert count_parameters(SpeechRNNEmbedder(d, G)) == _audio_count(G, d)
    for name, (audio, _) in TABLE1.items():
        G, d = PAPER_PAIRS[name].gru_layers, PAPER_PAIRS[name].embed_dim
        assert _audio_count(G, d) == audio
        # each alternative is off: conv without bias, or another attention width
        assert _audio_count(G, d, conv_bias=0) != audio
        assert _audio_count(G, d, att_hidden=64) != audio
    # The image branch: DenseNet-264 ends with 2688 maps; the two d's differ by 1024 * (2688 + 1),
    # i.e. the final linear layer has a bias.
    assert DENSENET_PRESETS["densenet264"].num_features == 2688
    assert TABLE1["DG2A2048"][1] - TABLE1["DG2A1024"][1] == 1024 * (2688 + 1)
    # and the stem reads 3 channels: a grey stem would be 2 * 64 * 7 * 7 smaller
    grey = count_parameters(densenet_embedder("densenet264", 1024, in_channels=1))
    assert grey == TABLE1["DG2A1024"][1] - 2 * 64 * 7 * 7


def test_count_parameters_counts_trainable_parameters_once():
    lin = nn.Linear(3, 4)
    net = nn.Sequential(lin, nn.ReLU(), lin, nn.Linear(4, 2, bias=False))
    assert count_parameters(net) == 16 + 8
    net[3].weight.requires_grad_(False)
    assert count_parameters(net) == 16


# -- speech embedder: padding never matters --------------------------------------------------------------
def _utterances(lengths, dim=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=g) for n in lengths]


def test_speech_embedding_is_the_same_alone_or_padded_in_a_batch():
    torch.manual_seed(0)
    model = SpeechRNNEmbedder(embed_dim=16, num_gru_layers=3, attention_hidden=8)
    # 6 = one conv output; odd/even remainders of (L - 6) / 2; all far shorter than the longest
    lengths = [6, 7, 20, 33, 61]
    utts = _utterances(lengths)
    x, lens = pad_batch(utts)
    junk = x.clone()
    mask = lengths_to_mask(lens, x.shape[1])
    junk[~mask] = 1e3  # loud padding: any leak through conv, GRU or attention would show
    wide = torch.cat([junk, torch.full((len(utts), 9, 40), -7.0)], dim=1)  # even more padding
    batched = model(junk, lens)
    assert torch.allclose(model(wide, lens), batched, atol=1e-5)
    for i, u in enumerate(utts):
        alone = model(u[None], torch.tensor([len(u)]))
        assert torch.allclose(alone[0], batched[i], atol=1e-5), (i, (alone[0] - batched[i]).abs().max())


def test_conv_output_lengths_read_only_real_frames():
    model = SpeechRNNEmbedder(embed_dim=8, num_gru_layers=1)
    lengths = torch.tensor([6, 7, 8, 150])
    out = model.conv_output_lengths(lengths)
    assert out.tolist() == [1, 1, 2, 73]
    # the last kept output reads frames [2 t, 2 t + 5], all real; one more would read padding
    assert ((out - 1) * 2 + 6 <= lengths).all() and (out * 2 + 6 > lengths).all()
    # conv outputs agree with a conv on the unpadded utterance over those frames
    x = torch.randn(1, 7, 40)
    padded = torch.cat([x, torch.full((1, 20, 40), 50.0)], dim=1)
    a = model.conv(x.transpose(1, 2))[..., :1]
    b = model.conv(padded.transpose(1, 2))[..., :1]
    # oneDNN may pick another convolution algorithm for another input length, which rounds float32
    # differently (seen ~1e-7 on AMD EPYC); a frame of padding (50.0) leaking in would move outputs
    # by O(1). So: equal to float32 rounding, far from a leak.
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bigru_matches_torch_bidirectional_gru_on_packed_sequences():
    torch.manual_seed(1)
    ours = BiGRU(5, 4, num_layers=3)
    ref = nn.GRU(5, 4, num_layers=3, bidirectional=True, batch_first=True)
    assert count_parameters(ours) == count_parameters(ref)
    with torch.no_grad():
        for layer in range(3):
            for suffix, module in [("", ours.forward_layers[layer]), ("_reverse", ours.backward_layers[layer])]:
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(module, f"{kind}_l0").copy_(getattr(ref, f"{kind}_l{layer}{suffix}"))
    x, lens = pad_batch(_utterances([9, 3, 6, 1], dim=5, seed=2))
    packed, _ = ref(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
    expected, _ = pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])
    assert torch.allclose(ours(x, lens), expected, atol=1e-6)


def test_reverse_within_lengths_keeps_padding_in_place():
    x = torch.arange(5.0).view(1, 5, 1).repeat(2, 1, 1)
    r = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert r[..., 0].tolist() == [[4, 3, 2, 1, 0], [2, 1, 0, 3, 4]]


def test_speech_embedder_shapes_norms_and_refusals():
    model = SpeechRNNEmbedder(embed_dim=32, num_gru_layers=2)
    x, lens = pad_batch(_utterances([40, 12, 25]))
    z = model(x, lens)
    assert z.shape == (3, 32)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-6)
    with pytest.raises(ValueError, match="at least 6 frames"):
        model(x, torch.tensor([40, 5, 25]))
    with pytest.raises(ValueError, match="lengths"):
        model(x, torch.tensor([41, 12, 25]))
    with pytest.raises(ValueError, match="MFCC"):
        model(x[..., :39], lens)
    with pytest.raises(ValueError, match="even"):
        SpeechRNNEmbedder(embed_dim=33, num_gru_layers=1)


# -- masked pooling -------------------------------------------------------------------------------------
def test_lengths_to_mask():
    assert lengths_to_mask(torch.tensor([2, 0, 3]), 4).tolist() == [
        [True, True, False, False], [False, False, False, False], [True, True, True, False]]
    assert lengths_to_mask(torch.tensor([1, 2])).shape == (2, 2)
    with pytest.raises(ValueError):
        lengths_to_mask(torch.tensor([5]), 3)


def test_masked_mean_averages_real_frames_only():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("inf"), float("nan")]],
                      [[5.0, -1.0], [1e9, 1e9], [1e9, 1e9]]])
    mask = lengths_to_mask(torch.tensor([2, 1]), 3)
    assert torch.equal(masked_mean(x, mask, dim=1), torch.tensor([[2.0, 3.0], [5.0, -1.0]]))
    assert torch.equal(masked_mean(x, mask, dim=-1), masked_mean(x, mask, dim=1))
    with pytest.raises(ValueError, match="no real frame"):
        masked_mean(x, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError):
        masked_mean(x, mask.float())


def test_masked_softmax_gives_padding_zero_weight():
    scores = torch.tensor([[1.0, 2.0, 100.0], [0.0, 0.0, 0.0]])
    w = masked_softmax(scores, lengths_to_mask(torch.tensor([2, 3]), 3))
    assert w[0, 2] == 0 and torch.allclose(w[0, :2], torch.softmax(torch.tensor([1.0, 2.0]), 0))
    assert torch.allclose(w[1], torch.full((3,), 1 / 3))


def test_attention_pooling_ignores_padding_and_matches_its_formula():
    torch.manual_seed(3)
    pool = SelfAttentionPooling(6, hidden_size=5)
    assert count_parameters(pool) == 2 * 6 * 5 + 5 + 6
    h = torch.randn(2, 7, 6)
    lens = torch.tensor([4, 7])
    mask = lengths_to_mask(lens, 7)
    poisoned = h.clone()
    poisoned[0, 4:] = float("nan")
    out = pool(poisoned, mask)
    assert torch.isfinite(out).all()
    alone = pool(h[:1, :4], lengths_to_mask(torch.tensor([4]), 4))
    assert torch.allclose(out[0], alone[0], atol=1e-6)
    # by hand: a = softmax over time of W2 tanh(W1 h + b1) + b2, per feature; out = sum_t a * h
    a = torch.softmax(pool.out(torch.tanh(pool.hidden(h[1]))), dim=0)
    assert torch.allclose(out[1], (a * h[1]).sum(0), atol=1e-6)
    w = pool.weights(poisoned, mask)
    assert (w[0, 4:] == 0).all() and torch.allclose(w.sum(1), torch.ones(2, 6))


# -- DenseNet -------------------------------------------------------------------------------------------
def test_densenet_forward_on_grey_64x64_batch():
    torch.manual_seed(0)
    model = densenet_embedder("densenet_cpu", embed_dim=24, in_channels=1)
    images = torch.rand(5, 1, 64, 64)
    maps = model.features(images)
    assert maps.shape == (5, DENSENET_PRESETS["densenet_cpu"].num_features, 2, 2)
    z = model(images)
    assert z.shape == (5, 24)
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-6)
    raw = densenet_embedder("densenet_cpu", 24, in_channels=1, normalize=False)
    raw.load_state_dict(model.state_dict())
    assert torch.allclose(torch.nn.functional.normalize(raw(images), dim=1), z, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(5, 3, 64, 64))


def test_densenet_configs_from_names_and_dicts():
    cfg = densenet_config({"growth_rate": 8, "block_config": [1, 2], "num_init_features": 16})
    assert cfg == DenseNetConfig(8, (1, 2), 16)
    assert cfg.num_features == (16 + 8) // 2 + 16
    assert densenet_config(densenet_config_dict(DENSENET_PRESETS["densenet264"])) == DENSENET_PRESETS["densenet264"]
    m = densenet_embedder(cfg, 10, in_channels=3)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown DenseNet preset"):
        densenet_config("densenet999")
    with pytest.raises(ValueError, match="unknown DenseNet config keys"):
        densenet_config({"growth": 8, "block_config": [1], "num_init_features": 4})


# -- CPU presets ----------------------------------------------------------------------------------------
def test_cpu_presets_keep_structure_and_their_counts():
    rows = {r["pair"]: r for r in parameter_table("cpu")}
    assert set(rows) == {f"{n}-cpu" for n in TABLE1}
    for name in TABLE1:
        paper, cpu = PAPER_PAIRS[name], CPU_PAIRS[f"{name}-cpu"]
        assert cpu.gru_layers == paper.gru_layers and paper.embed_dim == 8 * cpu.embed_dim
        assert cpu.in_channels == 1 and cpu.densenet == "densenet_cpu"
    got = {n: (r["audio"], r["image"]) for n, r in rows.items()}
    assert got == {"DG4A2048-cpu": (1_119_680, 227_044), "DG4A1024-cpu": (321_856, 209_252),
                   "DG3A1024-cpu": (247_360, 209_252), "DG2A2048-cpu": (526_784, 227_044),
                   "DG2A1024-cpu": (172_864, 209_252)}
    for name in rows:  # and the closed form holds at this scale too
        assert rows[name]["audio"] == _audio_count(CPU_PAIRS[name].gru_layers, CPU_PAIRS[name].embed_dim)


def test_cpu_pair_embeds_a_small_batch():
    speech, image = embedder_pair("DG2A1024-cpu")
    x, lens = pad_batch(_utterances([30, 18]))
    a, v = speech(x, lens), image(torch.rand(2, 1, 64, 64))
    assert a.shape == v.shape == (2, 128)
