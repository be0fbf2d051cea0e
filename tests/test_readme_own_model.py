"""The README section "Your own model and data" runs as written (on small subsets).

Blocks are taken from the section in order, one test per `###` subsection:
- a ```python or ```yaml block whose first line is `# NAME.py` / `# NAME.yaml` is a file the
  reader writes: it is written into the working directory (all of them first);
- other ```python blocks run in one namespace per subsection;
- each `robustfair ...` line of a ```bash block runs through the CLI and must exit 0;
- ```text blocks are layouts, not code.
What a reader brings that the README cannot write (their image folder, a published .pth)
is made by `reader_files`. Every config the blocks load gets SMALL appended, so the
runs use a few images per class and short attacks.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import robustfair.engine.config as config_module
from robustfair.cli import main
from robustfair.data import load_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Your own model and data"
SMALL = [
    "data.train_per_class=6",
    "data.val_per_class=2",
    "data.test_per_class=3",
    "train.batch_size=30",
    "method.steps=2",
    "eval.sanity_checks=false",
    "train.val_attack=pgd10",
]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
FILE_LINE = re.compile(r"^# ([\w./-]+\.(?:py|yaml))\s*$")


def section_text() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def subsections() -> dict[str, list[tuple[str, str]]]:
    """{### title: [(language, code), ...]} in README order."""
    parts = re.split(r"^### (.+)$", section_text(), flags=re.M)
    return {title.strip(): BLOCK.findall(body) for title, body in zip(parts[1::2], parts[2::2])}


def file_name(code: str) -> str | None:
    match = FILE_LINE.match(code.splitlines()[0]) if code.strip() else None
    return match.group(1) if match else None


def reader_files(directory: Path) -> None:
    """What a reader already has: an image folder, and a published state dict for small_net."""
    from PIL import Image

    digits = load_dataset("digits")
    for split, ds in (("train", digits.train), ("test", digits.test)):
        for c in range(3):
            folder = directory / "my_images" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i, image in enumerate(ds.x[ds.y == c][:10]):
                Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    sys.path.insert(0, str(directory))
    try:
        from my_models import small_net
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("my_models", None)
    state = small_net(num_classes=10, in_channels=1, input_size=8).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 100}, directory / "published.pth")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("readme")
    for blocks in subsections().values():
        for _, code in blocks:
            name = file_name(code)
            if name:
                (directory / name).write_text(code)
    reader_files(directory)
    return directory


def test_the_section_has_the_promised_examples():
    titles = list(subsections())
    assert titles == [
        "A method in your own training loop",
        "Your model in the engine",
        "Your own data on disk",
        "Checkpoints you have",
    ]
    text = section_text()
    for needle in (
        'robustfair.methods.build("bat"',
        "robustfair.methods.epochs(",
        "model.name",
        "kwargs",
        "robustfair.train(",
        "train_data=train_loader",
        "data.name=arrays",
        "data.name=imagefolder",
        "--weights published.pth",
        "robustfair eval runs/my_run",
    ):
        assert needle in text, needle


@pytest.mark.parametrize("title", list(subsections()))
def test_readme_blocks_run(title, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    original = config_module.parse_config
    monkeypatch.setattr(config_module, "parse_config", lambda raw, overrides=(): original(raw, [*overrides, *SMALL]))
    namespace: dict = {"__name__": "__readme__"}
    try:
        for language, code in subsections()[title]:
            if file_name(code) or language == "text":
                continue
            if language == "python":
                exec(compile(code, f"README.md ({title})", "exec"), namespace)
            elif language == "bash":
                for line in code.splitlines():
                    argv = shlex.split(line, comments=True)
                    if argv[:1] == ["robustfair"]:
                        code_ = main(argv[1:])
                        assert code_ == 0, f"{line!r} exited {code_}: {capsys.readouterr().err[-2000:]}"
            else:
                pytest.fail(f"unexpected ```{language} block in {title!r}")
    finally:
        sys.modules.pop("my_models", None)
