"""Configuration: YAML + command line, and start-up errors that name the key."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fastgan.config import Config, ConfigError, build_parser, load_yaml, parse_config, validate

ROOT = Path(__file__).resolve().parents[1]


def error_of(argv, capsys, world_size: int = 1) -> str:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv, world_size)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_defaults_and_overrides():
    cfg = parse_config(["--optim.lr", "1e-3", "--model.fused", "false", "--train.batch_size", "16"])
    assert cfg.optim.lr == 1e-3 and cfg.model.fused is False and cfg.train.batch_size == 16
    assert cfg.model.family == "pix2pix" and cfg.data.dataset == "default"


def test_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.001\n  beta1: 0.9\ntrain:\n  batch_size: 16\n")
    cfg = parse_config(["--config", str(path), "--optim.lr", "0.003"])
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.train.batch_size) == (0.003, 0.9, 16)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = Config()
    load_yaml(cfg, ROOT / "configs" / name)
    validate(cfg)


def test_shipped_reference_settings():
    cfg = Config()
    load_yaml(cfg, ROOT / "configs" / "pix2pix_edges.yaml")
    assert (cfg.model.num_downs, cfg.model.ngf, cfg.model.patch_size, cfg.train.batch_size) == (8, 64, 70, 1)
    assert (cfg.loss.lambda_rec, cfg.loss.reconstruction, cfg.data.load_size, cfg.data.crop_size) == (100, "l1", 286, 256)
    talk = Config()
    load_yaml(talk, ROOT / "configs" / "edges2photo_talk.yaml")
    assert (talk.loss.reconstruction, talk.loss.lambda_rec, talk.loss.lambda_adv) == ("l2", 1.0, 1e-3)
    assert (talk.optim.beta1, talk.optim.schedule, talk.optim.step_epochs, talk.train.batch_size) == (0.9, "step", 50, 32)
    assert talk.model.num_downs == 7


def test_unknown_key_suggests_and_lists(capsys):
    err = error_of(["--train.batch_sze", "3"], capsys)
    assert "unknown config key 'train.batch_sze' (did you mean 'train.batch_size'?)" in err
    assert "valid keys:" in err and "optim.lr" in err


def test_a_yaml_section_with_every_key_commented_out_is_empty(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  # lr: 0.001\ntrain:\n  batch_size: 3\n")
    cfg = Config()
    load_yaml(cfg, path)
    assert cfg.train.batch_size == 3 and cfg.optim.lr == Config().optim.lr
    path.write_text("optimizer:\n")
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        load_yaml(Config(), path)


def test_unknown_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'optim.learning_rate'.*valid keys: optim.lr"):
        load_yaml(Config(), path)


@pytest.mark.parametrize("argv, message", [
    (["--train.batch_size", "x"], "train.batch_size: expected int, got 'x'"),
    (["--model.fused", "maybe"], "model.fused: expected bool, got 'maybe'"),
    (["--optim.lr", "-1"], "optim.lr must be > 0, got -1.0"),
    (["--data.dataset", "aligned", "--data.root", "d", "--data.crop_size", "320", "--model.num_downs", "6"],
     "data.crop_size (320) cannot be larger than data.load_size (72)"),
    (["--model.family", "gan"], "model.family='gan' is not one of pix2pix, dcgan, conditional"),
    (["--model.patch_size", "50"], "model.patch_size=50 is not one of 1, 16, 34, 70, 142, 286"),
    (["--data.crop_size", "48", "--data.load_size", "64"], "must be divisible by 2^model.num_downs (64)"),
    (["--loss.lambda_rec", "0", "--loss.lambda_adv", "0"], "both 0"),
    (["--model.init_generator", "g.pt"], "model.init_generator='g.pt' would be ignored: only model.family srresnet "
                                         "or srgan reads it, not pix2pix"),
    (["--model.family", "srgan", "--loss.lambda_adv", "0.01"],
     "loss.lambda_adv=0.01 would be ignored: only model.family pix2pix reads it, not srgan"),
    (["--model.nz", "5"], "model.nz=5 would be ignored: only model.family dcgan or conditional or gancls or lapgan "
                          "reads it, not pix2pix"),
    (["--model.family", "dcgan", "--data.dataset", "folder", "--data.root", "d", "--model.num_downs", "7"],
     "model.num_downs=7 would be ignored: only model.family pix2pix reads it, not dcgan"),
    (["--model.family", "dcgan"], "data.dataset='default' holds image pairs; model.family=dcgan needs"),
    (["--data.dataset", "aligned"], "data.dataset='aligned' needs data.root"),
    (["--optim.beta1", "1.0"], "optim.beta1 and optim.beta2 must be in [0, 1)"),
    (["--optim.ema", "1.5"], "optim.ema is a decay in [0, 1)"),
    (["--data.edge_blur", "4"], "data.edge_blur must be odd"),
    (["--optim.schedule", "constant", "--optim.epochs", "0"], "optim.epochs must be > 0 for optim.schedule=constant"),
    (["--optim.schedule", "step", "--optim.epochs", "0", "--optim.epochs_decay", "5"],
     "optim.epochs must be > 0 for optim.schedule=step"),
    (["--data.crop_size", "32", "--data.load_size", "36", "--model.num_downs", "5", "--model.patch_size", "286"],
     "model.patch_size 286 needs data.crop_size >= 96 (its discriminator halves the image 5 times), got 32: use "
     "model.patch_size 1 or 16 or 34 or 70"),
    (["--loss.gan_mode", "wgan", "--loss.target_real", "0.9"],
     "loss.target_real (0.9) smooths the vanilla and lsgan losses only; loss.gan_mode=wgan has fixed margins"),
])
def test_bad_values_are_rejected(argv, message, capsys):
    assert message in error_of(argv, capsys)


@pytest.mark.parametrize("argv", [
    ["--loss.lambda_rec", "nan"], ["--optim.ema", "nan"], ["--loss.tv_weight", "NaN"], ["--optim.lr", "inf"],
    ["--loss.lambda_adv", "inf"], ["--loss.penalty", "r1", "--loss.penalty_weight", "inf"],
    ["--optim.schedule", "step", "--optim.step_gamma", "nan"],
    ["--model.family", "srgan", "--loss.sr_lambda_adv", "nan"],
])
def test_non_finite_numbers_are_rejected(argv, capsys):
    """nan slips past every `value < 0` check (and inf past `> 0`); it would train on NaN losses."""
    assert f"{argv[-2][2:]}: expected a finite number, got {argv[-1]!r}" in error_of(argv, capsys)


def test_non_finite_yaml_number_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  ema: .nan\n")
    with pytest.raises(ConfigError, match="c.yaml: optim.ema: expected a finite number, got nan"):
        load_yaml(Config(), path)


def test_linear_schedule_may_run_only_decay_epochs():
    assert parse_config(["--optim.epochs", "0", "--optim.epochs_decay", "3"]).optim.epochs == 0


def test_another_familys_option_at_its_default_is_accepted():
    """Spelling out a default changes nothing, so it is no mistake: a shared YAML may list such keys."""
    cfg = parse_config(["--model.nz", "100", "--loss.sr_lambda_adv", "1e-3", "--model.dropout", "true"])
    assert cfg.model.family == "pix2pix" and cfg.model.nz == 100


def test_largest_patch_that_fits_the_crop_is_accepted():
    cfg = parse_config(["--data.crop_size", "32", "--data.load_size", "36", "--model.num_downs", "5",
                        "--model.patch_size", "70"])
    assert cfg.model.patch_size == 70


def test_yaml_syntax_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("optim:\n  lr: 0.001\n bad: 2\n")
    err = error_of(["--config", str(path)], capsys)
    assert (f"error: {path}: invalid YAML at line 3, column 2: expected <block end>, but found "
            f"'<block mapping start>'\n") in err
    assert "Traceback" not in err


def test_config_file_that_is_not_text_is_one_line(tmp_path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    err = error_of(["--config", str(path)], capsys)
    assert f"error: {path}: not a UTF-8 text file (invalid start byte at byte 0)\n" in err
    assert "Traceback" not in err


def test_batch_divisible_by_processes(capsys):
    err = error_of(["--train.batch_size", "6"], capsys, world_size=4)
    assert "train.batch_size (6) must be divisible by the number of processes (4)" in err


def test_help_lists_every_option_with_its_default():
    text = build_parser().format_help()
    cfg = Config()
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            flag = f"--{section.name}.{f.name}"
            assert flag in text, flag
            assert f"(default: {getattr(getattr(cfg, section.name), f.name)!r})" in " ".join(text.split()), flag


def test_help_texts_render_verbatim():
    """argparse %-formats help strings: a bare '%' (as in '~10% slower') printed its internal dict."""
    text = build_parser().format_help()
    assert "%(" not in text and "option_strings" not in text
    squeezed, cfg = "".join(text.split()), Config()  # line wrapping may split words at hyphens
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            assert "".join(f.metadata["help"].split()) in squeezed, f"{section.name}.{f.name}"
    assert "~10% slower" in " ".join(text.split())


def test_yaml_booleans_set_on_off_auto_switches(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  channels_last: false\n")
    cfg = parse_config(["--config", str(path)])
    assert cfg.train.channels_last == "false"
    assert parse_config(["--train.channels_last", "true"]).train.channels_last == "true"
    assert parse_config([]).train.channels_last == "auto"


def test_load_size_binds_only_the_datasets_that_read_it():
    """Only aligned/paired data resize to data.load_size, so only they need crop_size <= load_size."""
    cfg = parse_config(["--data.crop_size", "128", "--model.num_downs", "7"])
    assert (cfg.data.crop_size, cfg.data.load_size) == (128, 72)
    cfg = parse_config(["--model.family", "dcgan", "--data.dataset", "folder", "--data.root", "d",
                        "--data.crop_size", "128"])
    assert cfg.data.crop_size == 128
