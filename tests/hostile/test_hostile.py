"""Each attack folder is refused with its one-line error, no traceback, no output, input untouched;
symlinked side files that leave the folder are not copied; model code is never imported."""

import os

import pytest
from click.testing import CliRunner

from cli.main import main
from fixtures.checkpoints import random_model, write_gptq
from repack.convert import convert
from tests.conftest import leftovers, tree_hash
from tests.hostile import ATTACKS


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__ for a in ATTACKS])
@pytest.mark.parametrize("command", ["inspect", "convert", "verify"])
def test_attack_is_refused_in_one_line(tmp_path, attack, command):
    src, words = attack(tmp_path)
    before = tree_hash(src)
    args = {"inspect": ["inspect", src], "convert": ["convert", src, tmp_path / "out", "--to", "auto_awq"],
            "verify": ["verify", src, src]}[command]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repack: error: ") and words in lines[0], r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)
    assert tree_hash(src) == before


def test_side_file_symlink_out_of_the_folder_is_not_copied(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=91), "v1")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    os.symlink(secret, src / "special_tokens_map.json")
    convert(src, tmp_path / "out", "auto_awq")
    assert not (tmp_path / "out" / "special_tokens_map.json").exists()
    assert (tmp_path / "out" / "tokenizer.json").exists()
    assert (tmp_path / "out" / "modeling_custom.py").exists()  # copied as a file; importing it would raise
