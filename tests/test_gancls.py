"""GAN-CLS: tokenizer and caption encoder, networks, the matching-aware loss, captioned data, training, resume, CLI."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fastgan import checkpoint, config
from fastgan.data import CaptionedFashionMNIST, CaptionedImageFolder, DefaultCaptionedPhotos, read_captions
from fastgan.data.captions import default_photo_stems, fashion_mnist_captions, shipped_captions
from fastgan.data.idx import FASHION_MNIST_CLASSES, IDXDataset
from fastgan.families import build_family
from fastgan.models import DCGANGenerator, MatchingAwareDiscriminator, TextConditionedGenerator
from fastgan.sample import main as sample_main
from fastgan.text import (PAD, UNKNOWN, VOCAB_SIZE, CaptionEncoder, load_caption_encoder, save_caption_encoder,
                          tokenize)
from fastgan.train import main as train_main
from train_helpers import final_weights, loss_trace, write_idx, write_images

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.family", "gancls", "--data.crop_size", "32", "--data.load_size", "32", "--model.ngf", "8",
        "--model.ndf", "8", "--model.nz", "16", "--model.text_dim", "16", "--model.text_embed_dim", "8",
        "--model.caption_len", "64", "--train.batch_size", "4", "--train.log_every", "1",
        "--train.sample_every", "1000", "--train.progress", "false", "--optim.schedule", "constant"]


def train(out_dir, *args) -> int:
    return train_main([*TINY, "--train.out_dir", str(out_dir), *args])


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- tokenizer and encoder

def test_tokenizer_lowercases_pads_cuts_and_marks_unknown_characters():
    # a=2, b=3 ... z=27, digits 28-37, space 38; "é" is outside the alphabet
    assert tokenize(["Ab é"], 6).tolist() == [[2, 3, 38, UNKNOWN, PAD, PAD]]
    assert torch.equal(tokenize(["  A\tB \n"], 5), tokenize(["a b"], 5))
    assert tokenize(["abcdef", "z9"], 3).tolist() == [[2, 3, 4], [27, 37, PAD]]
    with pytest.raises(ValueError, match=r"caption ' \\t ' is empty"):
        tokenize(["ok", " \t "], 8)
    with pytest.raises(TypeError, match="captions must be a list of str, not one str"):
        tokenize("a cat", 8)
    with pytest.raises(ValueError, match="max_len must be a positive int, got 0"):
        tokenize(["a"], 0)


def test_encoder_ignores_padding_and_tells_captions_apart():
    torch.manual_seed(0)
    encoder = CaptionEncoder(char_dim=8, text_dim=16).eval()
    caption = "a red flower"
    alone = encoder(tokenize([caption], 20))
    torch.testing.assert_close(encoder(tokenize([caption], 60)), alone)
    batch = encoder(tokenize([caption, "a tall white rocket standing on the launch pad at dusk"], 60))
    torch.testing.assert_close(batch[:1], alone)
    assert (batch[1] - batch[0]).abs().max() > 1e-3
    assert alone.shape == (1, 16)
    with pytest.raises(ValueError, match="a row of tokens is all padding"):
        encoder(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"tokens must be in \[0, {VOCAB_SIZE}\)"):
        encoder(torch.full((1, 3), VOCAB_SIZE))
    with pytest.raises(ValueError, match="tokens must be int64 character ids"):
        encoder(tokenize([caption], 20).float())


def test_encoder_files_round_trip_and_bad_files_are_named(tmp_path):
    torch.manual_seed(1)
    encoder = CaptionEncoder(char_dim=4, text_dim=8)
    args, weights = load_caption_encoder(save_caption_encoder(encoder, tmp_path / "enc.pt"))
    assert args == {"vocab_size": VOCAB_SIZE, "char_dim": 4, "text_dim": 8}
    assert all(torch.equal(weights[k], v) for k, v in encoder.state_dict().items())
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=f"{tmp_path}/other.pt is neither a caption encoder file"):
        load_caption_encoder(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="caption encoder file not found: /nowhere.pt"):
        load_caption_encoder("/nowhere.pt")


# ----------------------------------------------------------------------------- networks

def encoder_params(text_dim: int, char_dim: int = 32) -> int:
    """Embedding, Conv1d(char_dim -> T), two Conv1d(T -> T) (kernel 3, with bias), Linear(T, T)."""
    return (VOCAB_SIZE * char_dim + 3 * char_dim * text_dim + text_dim + 2 * (3 * text_dim ** 2 + text_dim)
            + text_dim ** 2 + text_dim)


def test_parameter_counts_at_the_paper_size_and_shapes():
    """64x64, nz 100, ngf = ndf = 64, text 1024 -> 128, batch norm (no conv bias before it)."""
    G = TextConditionedGenerator(nz=100, ngf=64, embed_dim=128, encoder={"vocab_size": VOCAB_SIZE, "char_dim": 32,
                                                                          "text_dim": 1024})
    compress = 1024 * 128 + 128
    dcgan_g = ((100 + 128) * 512 * 16 + 2 * 512 + 512 * 256 * 16 + 2 * 256 + 256 * 128 * 16 + 2 * 128
               + 128 * 64 * 16 + 2 * 64 + 64 * 3 * 16)
    assert count(G.net) == dcgan_g == count(DCGANGenerator(nz=228, ngf=64))
    assert count(G) == encoder_params(1024) + compress + dcgan_g == 12_200_640
    D = MatchingAwareDiscriminator(ndf=64, embed_dim=128, encoder={"vocab_size": VOCAB_SIZE, "char_dim": 32,
                                                                    "text_dim": 1024})
    image = 3 * 64 * 16 + 64 * 128 * 16 + 2 * 128 + 128 * 256 * 16 + 2 * 256 + 256 * 512 * 16 + 2 * 512
    joint = (512 + 128) * 512 + 2 * 512 + 512 * 16
    assert count(D) == encoder_params(1024) + compress + image + joint == 10_669_632

    tokens = tokenize(["a cat", "an orange flower", "a rocket"], 30)
    for size in (32, 64, 128):
        G = TextConditionedGenerator(nz=10, ngf=4, image_size=size, embed_dim=6, encoder={"text_dim": 8})
        D = MatchingAwareDiscriminator(ndf=4, image_size=size, embed_dim=6, encoder={"text_dim": 8})
        fake = G(torch.randn(3, 10), tokens)
        assert fake.shape == (3, 3, size, size) and fake.abs().max() <= 1
        assert D(fake, tokens).shape == D(fake, tokens, mix=0.5).shape == (3,)
    with pytest.raises(ValueError, match=r"tokens must have shape \[2, length\]"):
        G(torch.randn(2, 10), tokens)
    with pytest.raises(ValueError, match="mix must be in \\[0, 1\\]"):
        D(fake, tokens, mix=1.5)


def test_mix_interpolates_neighbouring_caption_embeddings():
    torch.manual_seed(2)
    D = MatchingAwareDiscriminator(ndf=4, image_size=32, embed_dim=6, encoder={"text_dim": 8}).eval()
    tokens = tokenize(["a cat", "a rocket", "a flower"], 20)
    text = D.encoder(tokens)
    expected = D.text.compress(0.25 * text + 0.75 * text.roll(1, 0))
    torch.testing.assert_close(D.text(tokens, mix=0.25), expected)


def test_fused_and_stock_discriminators_are_interchangeable():
    torch.manual_seed(0)
    stock = MatchingAwareDiscriminator(ndf=8, image_size=32, embed_dim=6, encoder={"text_dim": 8}, fused=False)
    fused = MatchingAwareDiscriminator(ndf=8, image_size=32, embed_dim=6, encoder={"text_dim": 8}, fused=True)
    assert stock.state_dict().keys() == fused.state_dict().keys()
    assert sum(type(m).__name__ == "BatchNormLeakyReLU2d" for m in fused.modules()) == 3
    fused.load_state_dict(stock.state_dict())
    images, tokens = torch.rand(4, 3, 32, 32) * 2 - 1, tokenize(["a", "bb", "a cat", "x"], 10)
    torch.testing.assert_close(fused(images, tokens), stock(images, tokens), atol=1e-5, rtol=1e-5)
    G = TextConditionedGenerator(nz=4, ngf=4, image_size=32, embed_dim=6, encoder={"text_dim": 8})
    assert sum(type(m).__name__ == "BatchNormLeakyReLU2d" for m in G.modules()) == 3


# ----------------------------------------------------------------------------- the matching-aware loss

class ScoreStub(nn.Module):
    """A discriminator whose logits are a simple known function of image and caption."""

    def forward(self, images, tokens, mix=1.0):
        text = tokens.float().mean(1)
        text = mix * text + (1 - mix) * text.roll(1, 0)
        return images.flatten(1).mean(1) * 3 + (text - 20) * 0.1


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_three_way_discriminator_loss_matches_a_hand_computation():
    family = build_family(config.parse_config(TINY))
    torch.manual_seed(3)
    images, fake = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    tokens = tokenize(["a cat", "a cat face", "a red flower", "galaxies on black"], 24)
    batch = {"image": images, "tokens": tokens, "source": torch.tensor([0, 0, 1, 2])}
    D = ScoreStub()
    real = D(images, tokens).tolist()
    fakes = D(fake, tokens).tolist()
    rolled = D(images, tokens.roll(1, 0)).tolist()
    wrong = [rolled[0], rolled[2], rolled[3]]  # sample 1's neighbour (sample 0) shows the same photo: left out
    expected = (sum(softplus(-r) for r in real) / 4
                + 0.5 * (sum(softplus(f) for f in fakes) / 4 + sum(softplus(w) for w in wrong) / 3))
    loss, logs = family.d_loss(D, batch, fake)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logs["logit_real_wrong"].item() == pytest.approx(sum(wrong) / 3, rel=1e-6)

    same = {**batch, "source": torch.zeros(4, dtype=torch.long)}  # no wrong pair at all: real + fake
    loss, logs = family.d_loss(D, same, fake)
    assert loss.item() == pytest.approx(sum(softplus(-r) for r in real) / 4 + sum(softplus(f) for f in fakes) / 4,
                                        rel=1e-6)
    assert "logit_real_wrong" not in logs


def test_the_wrong_caption_pass_is_always_in_the_backward():
    """A process whose shard has no wrong pair must still run the wrong-caption pass's backward, with
    zero gradient: under synchronized BatchNorm the processes' backward all-reduces must line up
    (one of two torchrun processes skipping it crashed the run in gloo)."""
    family = build_family(config.parse_config(TINY))
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    tokens = tokenize(["a cat", "a cat face", "a red flower", "galaxies on black"], 24)
    outputs = []

    class Recording(ScoreStub):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs) * self.scale
            out.retain_grad()
            outputs.append(out)
            return out

    same = {"image": images, "tokens": tokens, "source": torch.zeros(4, dtype=torch.long)}
    loss, _ = family.d_loss(Recording(), same, torch.rand(4, 3, 32, 32) * 2 - 1)
    loss.backward()
    assert len(outputs) == 3 and all(out.grad is not None for out in outputs)
    assert torch.equal(outputs[2].grad, torch.zeros(4))  # the wrong pass: in the graph, weight 0


def test_gancls_needs_two_samples_per_process():
    with pytest.raises(config.ConfigError, match=r"needs 2 or more samples per process; train.batch_size 4 over "
                                                 r"4 process\(es\) gives 1"):
        config.validate(config.parse_config([*TINY, "--train.batch_size", "4"]), world_size=4)


def test_gan_int_generator_loss_adds_the_interpolated_term():
    family = build_family(config.parse_config([*TINY, "--model.gan_int", "true", "--model.gan_int_beta", "0.25"]))
    torch.manual_seed(4)
    fake = torch.rand(6, 3, 32, 32) * 2 - 1
    tokens = tokenize(["a cat", "a rocket", "an eye"], 24)
    D = ScoreStub()
    right, mixed = D(fake[:3], tokens).tolist(), D(fake[3:], tokens, mix=0.25).tolist()
    loss, logs = family.g_loss(D, {"image": fake[:3], "tokens": tokens}, fake)
    assert logs["loss_G_int"].item() == pytest.approx(sum(softplus(-m) for m in mixed) / 3, rel=1e-6)
    assert loss.item() == pytest.approx(sum(softplus(-r) for r in right) / 3 + sum(softplus(-m) for m in mixed) / 3,
                                        rel=1e-6)
    G = family.models["G"]
    assert family.generate(G, {"tokens": tokens}).shape == (6, 3, 32, 32)


# ----------------------------------------------------------------------------- data

def test_caption_folder_format_and_its_errors(tmp_path):
    write_images(tmp_path, 3, size=40)
    (tmp_path / "000.txt").write_text("A cat\n\n  a small  cat \n")
    (tmp_path / "001.txt").write_text("a rocket\n")
    with pytest.raises(FileNotFoundError, match=r"caption file\(s\) not found: .*002\.txt; each image of"):
        CaptionedImageFolder(tmp_path, image_size=32)
    (tmp_path / "002.txt").write_text(" \n\n")
    with pytest.raises(ValueError, match=re.escape(f"caption file {tmp_path / '002.txt'} holds no captions")):
        CaptionedImageFolder(tmp_path, image_size=32)
    (tmp_path / "002.txt").write_text("noise")
    assert read_captions(tmp_path / "000.txt") == ["a cat", "a small cat"]
    data = CaptionedImageFolder(tmp_path, image_size=32, caption_len=16)
    sample = data[0]
    assert sample["image"].shape == (3, 32, 32) and sample["source"].item() == 0
    assert any(torch.equal(sample["tokens"], row) for row in tokenize(["a cat", "a small cat"], 16))
    drawn = set()
    for epoch in range(8):
        data.set_epoch(epoch)
        drawn.add(tuple(data[0]["tokens"].tolist()))
    assert len(drawn) == 2, "each epoch draws one of the image's captions"
    with pytest.raises(FileNotFoundError, match="caption file /nowhere.txt not found"):
        read_captions("/nowhere.txt")
    (tmp_path / "001.txt").write_bytes("a café noir".encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(f"caption file {tmp_path / '001.txt'} is not UTF-8 text "
                                                   f"(invalid continuation byte at byte 5)")):
        CaptionedImageFolder(tmp_path, image_size=32)


def test_a_byte_order_mark_is_not_part_of_the_first_caption(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffA cat\n".encode("utf-8"))
    (tmp_path / "only_bom.txt").write_bytes("\ufeff\n\n".encode("utf-8"))
    assert read_captions(tmp_path / "bom.txt") == ["a cat"]
    with pytest.raises(ValueError, match="holds no captions"):
        read_captions(tmp_path / "only_bom.txt")


def test_shipped_captions_cover_every_photo_and_class():
    stems = default_photo_stems()
    assert len(stems) == 9
    for stem in stems:
        assert len(shipped_captions(f"{stem}.txt")) >= 4, stem
    assert len(FASHION_MNIST_CLASSES) == 10
    assert all(len(fashion_mnist_captions(label)) >= 4 for label in range(10))
    assert "an ankle boot" in fashion_mnist_captions(9)
    data = DefaultCaptionedPhotos(image_size=32, caption_len=128)
    assert len(data) == 512
    for index in range(6):
        sample = data[index]
        stem = stems[sample["source"].item()]
        assert sample["image"].shape == (3, 32, 32)
        assert any(torch.equal(sample["tokens"], row) for row in tokenize(shipped_captions(f"{stem}.txt"), 128))


def test_fashion_mnist_samples_carry_their_class_captions(tmp_path):
    labels = np.array([9, 1, 9, 0], np.uint8)
    images = write_idx(tmp_path / "images", np.zeros((4, 28, 28), np.uint8))
    idx = IDXDataset(images, write_idx(tmp_path / "labels", labels), 32, classes=list(FASHION_MNIST_CLASSES))
    data = CaptionedFashionMNIST(idx, caption_len=64)
    for index, label in enumerate(labels):
        sample = data[index]
        assert sample["image"].shape == (1, 32, 32) and sample["source"].item() == label
        assert any(torch.equal(sample["tokens"], row) for row in tokenize(fashion_mnist_captions(label), 64))


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("args, message", [
    (["--data.dataset", "aligned", "--data.root", "x"], "model.family=gancls needs captioned images"),
    (["--data.dataset", "fashion_mnist"], "data.dataset='fashion_mnist' has 1-channel images; set model.channels 1"),
    (["--data.crop_size", "48", "--data.load_size", "48"], r"data.crop_size \(48\) must be 32, 64 or 128"),
    (["--model.gan_int_beta", "1.5"], r"model.gan_int_beta must be in \[0, 1\], got 1.5"),
    (["--model.text_encoder", "/nowhere/enc.pt"], "model.text_encoder: file not found: /nowhere/enc.pt"),
    (["--model.caption_len", "0"], "model.caption_len must be > 0, got 0"),
])
def test_config_errors(args, message, capsys):
    with pytest.raises(SystemExit):
        config.parse_config([*TINY, *args])
    assert re.search(message, capsys.readouterr().err)


def test_configs_load():
    cpu, fashion, paper = config.Config(), config.Config(), config.Config()
    config.load_yaml(cpu, ROOT / "configs" / "gancls_cpu.yaml")
    config.load_yaml(fashion, ROOT / "configs" / "gancls_fashion_mnist.yaml")
    config.load_yaml(paper, ROOT / "configs" / "gancls_paper.yaml")
    for cfg in (cpu, fashion, paper):
        config.validate(cfg)
        assert cfg.model.family == "gancls"
    assert (cpu.data.dataset, fashion.data.dataset, fashion.model.channels) == ("default", "fashion_mnist", 1)
    m = paper.model
    assert (paper.data.crop_size, m.nz, m.ngf, m.ndf, m.text_dim, m.text_embed_dim) == (64, 100, 64, 64, 1024, 128)
    assert (m.gan_int, m.gan_int_beta, paper.train.batch_size, paper.optim.lr) == (True, 0.5, 64, 2e-4)
    o = paper.optim  # the authors' scripts: lr_decay 0.5 every 100 of 600 epochs
    assert (o.schedule, o.step_epochs, o.step_gamma, o.epochs) == ("step", 100, 2.0, 600)


# ----------------------------------------------------------------------------- training and CLI

@pytest.mark.parametrize("gan_int", [False, True], ids=["cls", "cls+int"])
def test_training_steps_give_finite_changing_losses(tmp_path, gan_int, capsys):
    assert train(tmp_path, "--train.max_steps", "3", "--model.gan_int", str(gan_int).lower()) == 0
    out = capsys.readouterr().out
    assert "gancls caption encoder: character-level, trained jointly" in out
    assert ("GAN-INT" in out) == gan_int
    keys = ["loss_D", "loss_G", "logit_real_right"] + (["loss_G_int"] if gan_int else [])
    for key in keys:
        values = loss_trace(tmp_path, key)
        assert len(values) == 3 and all(map(math.isfinite, values)) and len(set(values)) > 1, key


def test_resume_is_exact(tmp_path):
    common = ["--model.gan_int", "true"]
    assert train(tmp_path / "straight", "--train.max_steps", "4", *common) == 0
    assert train(tmp_path / "split", "--train.max_steps", "2", *common) == 0
    assert train(tmp_path / "split", "--train.max_steps", "4", "--train.resume", "auto", *common) == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrained_encoder_is_loaded_and_stays_frozen(tmp_path, capsys):
    torch.manual_seed(5)
    encoder = CaptionEncoder(char_dim=4, text_dim=12)
    path = save_caption_encoder(encoder, tmp_path / "enc.pt")
    assert train(tmp_path / "run", "--train.max_steps", "2", "--model.text_encoder", str(path)) == 0
    assert f"pretrained, frozen ({path}), 12-d" in capsys.readouterr().out
    state = checkpoint.load(tmp_path / "run" / "ckpt_00000002.pt")
    assert state["model_args"]["G"]["encoder"]["text_dim"] == 12
    for role in ("G", "D"):
        weights = state["models"][role]
        assert all(torch.equal(weights[f"text.encoder.{k}"], v) for k, v in encoder.state_dict().items()), role
    args, reloaded = load_caption_encoder(tmp_path / "run" / "ckpt_00000002.pt")  # a checkpoint's encoder
    assert args["char_dim"] == 4 and torch.equal(reloaded["proj.weight"], encoder.proj.weight)


def test_sample_cli_with_text(tmp_path, capsys):
    assert train(tmp_path / "run", "--train.max_steps", "1") == 0
    ckpt = str(tmp_path / "run" / "ckpt_00000001.pt")
    out = tmp_path / "grid.png"
    assert sample_main(["--checkpoint", ckpt, "--text", "a red flower", "--text", "A Cat!", "--n", "4",
                        "--per-row", "2", "--output", str(out), "--device", "cpu"]) == 0
    assert "wrote 8 image(s) in 4 row(s)" in capsys.readouterr().out
    assert Image.open(out).size == (2 * 34 + 2, 4 * 34 + 2)
    again = tmp_path / "again.png"
    sample_main(["--checkpoint", ckpt, "--text", "a red flower", "--text", "A Cat!", "--n", "4", "--per-row", "2",
                 "--output", str(again), "--device", "cpu"])
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))
    with pytest.raises(SystemExit, match="--text goes with gancls checkpoints, and they need it"):
        sample_main(["--checkpoint", ckpt, "--output", str(out)])
    with pytest.raises(SystemExit, match="--text: caption '  ' is empty"):
        sample_main(["--checkpoint", ckpt, "--text", "  ", "--output", str(out)])
