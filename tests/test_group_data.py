"""Adult and COMPAS readers, preprocessing, checksums and the download hook."""

import os
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from robustfair.errors import ChecksumError, ConfigError, DataError, UnknownNameError
from robustfair.group.data import load_group_data
from robustfair.group.files import DATA_FILES, default_data_dir, download_dataset_files, md5sum
from robustfair.group.tabular import encode_tables, stratified_split

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROBUSTFAIR_DATA") or REPO.parent / "shared" / "data")


def need(*files):
    missing = [f for f in files if not (DATA / f).is_file()]
    if missing:
        pytest.skip(f"real data not found: {', '.join(missing)} missing in {DATA} (set ROBUSTFAIR_DATA)")


# ---- encoding, on a hand-made table ----


def test_encoding_standardises_with_train_statistics_and_one_hots_train_categories():
    train = [{"a": "1", "c": "x"}, {"a": "3", "c": "y"}]
    test = [{"a": "5", "c": "z"}]  # category z unseen in training
    x_train, x_test, layout, stats = encode_tables(train, test, ["a"], ["c"])
    assert stats == {"a": (2.0, 1.0)}  # mean 2, population std 1
    assert layout.names == ("a", "c=x", "c=y")
    assert layout.continuous == (0,)
    assert [(b.name, b.start, b.stop) for b in layout.blocks] == [("c", 1, 3)]
    assert torch.equal(x_train, torch.tensor([[-1.0, 1, 0], [1.0, 0, 1]]))
    assert torch.equal(x_test, torch.tensor([[3.0, 0, 0]]))  # (5 - 2) / 1; unseen -> all zeros
    assert torch.equal(layout.continuous_mask(), torch.tensor([True, False, False]))


def test_encoding_rejects_a_non_number_naming_the_column():
    with pytest.raises(DataError, match="column 'a'"):
        encode_tables([{"a": "old"}], [], ["a"], [])


def test_stratified_split_is_seeded_and_keeps_each_cell_share():
    y = torch.tensor([0] * 50 + [1] * 50).numpy()
    s = torch.tensor(([0] * 20 + [1] * 30) * 2).numpy()
    train, test = stratified_split(y, s, 0.3, seed=3)
    again, _ = stratified_split(y, s, 0.3, seed=3)
    other, _ = stratified_split(y, s, 0.3, seed=4)
    assert (train == again).all() and not (train == other).all()
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 100
    assert sorted(((y[test] == 1) & (s[test] == 1)).nonzero()[0].shape) == [9]  # round(0.3 * 30)
    assert int(((y[test] == 0) & (s[test] == 0)).sum()) == 6  # round(0.3 * 20)


# ---- real files ----


def test_adult_official_split_sizes_and_features():
    need("adult.data", "adult.test")
    data = load_group_data("adult", DATA, sensitive="sex")
    assert (len(data.train), len(data.test)) == (30162, 15060)  # rows with ' ?' dropped
    assert data.layout.num_features == 85 and len(data.layout.continuous) == 5
    assert not any(n.startswith("sex=") for n in data.layout.names)  # sensitive attribute excluded
    assert data.group_names == ("Female", "Male")
    assert int(data.train.s.sum()) == 20380 and int(data.train.y.sum()) == 7508
    assert int(data.test.y.sum()) == 3700  # '>50K.' labels of adult.test are read as positive
    cont = data.train.x[:, list(data.layout.continuous)]
    assert torch.allclose(cont.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(cont.std(0, unbiased=False), torch.ones(5), atol=1e-4)
    with_s = load_group_data("adult", DATA, sensitive="race", include_sensitive=True)
    assert "race=White" in with_s.layout.names and with_s.layout.protected_block == "race"
    assert with_s.layout.num_features == 85 + 2  # sex is a plain feature now (2 columns); race (5) stays
    assert int(with_s.train.s.sum()) == 25933


def test_adult_test_file_is_read_the_same_with_its_upstream_comment_line(tmp_path):
    need("adult.data", "adult.test")
    shutil.copy(DATA / "adult.data", tmp_path / "adult.data")
    # the upstream adult.test is the shared copy plus its first comment line
    (tmp_path / "adult.test").write_bytes(b"|1x3 Cross validator\n" + (DATA / "adult.test").read_bytes())
    assert md5sum(tmp_path / "adult.test") == DATA_FILES["adult.test"].md5
    upstream = load_group_data("adult", tmp_path, sensitive="sex")
    shared = load_group_data("adult", DATA, sensitive="sex")
    assert torch.equal(upstream.test.x, shared.test.x) and torch.equal(upstream.test.y, shared.test.y)


def test_a_changed_file_fails_its_checksum(tmp_path):
    need("compas-scores-two-years.csv")
    text = (DATA / "compas-scores-two-years.csv").read_bytes()
    (tmp_path / "compas-scores-two-years.csv").write_bytes(text.replace(b"Male", b"male", 1))
    with pytest.raises(ChecksumError, match="md5"):
        load_group_data("compas", tmp_path, sensitive="race")
    loaded = load_group_data("compas", tmp_path, sensitive="race", verify_checksums=False)
    assert len(loaded.train) + len(loaded.test) == 6172


def test_compas_filtering_split_and_features():
    need("compas-scores-two-years.csv")
    data = load_group_data("compas", DATA, sensitive="race")
    assert (len(data.train), len(data.test)) == (4320, 1852)  # 6,172 rows after ProPublica's filter
    assert data.layout.names[:6] == (
        "age",
        "priors_count",
        "juv_fel_count",
        "juv_misd_count",
        "juv_other_count",
        "length_of_stay",
    )
    assert not any(n.startswith("race=") for n in data.layout.names)
    assert not any("decile" in n or "score" in n or "recid" in n for n in data.layout.names)
    assert int(data.train.s.sum() + data.test.s.sum()) == 2103  # Caucasian
    assert int(data.train.y.sum() + data.test.y.sum()) == 2809  # two_year_recid
    again = load_group_data("compas", DATA, sensitive="race")
    assert torch.equal(again.test.x, data.test.x)
    other = load_group_data("compas", DATA, sensitive="race", split_seed=1)
    assert not torch.equal(other.test.y, data.test.y) or not torch.equal(other.test.x, data.test.x)
    by_sex = load_group_data("compas", DATA, sensitive="sex", include_sensitive=True)
    assert by_sex.layout.protected_block == "sex" and "race=Caucasian" in by_sex.layout.names


def test_missing_files_and_bad_names_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="adult.data not found"):
        load_group_data("adult", tmp_path, sensitive="sex")
    with pytest.raises(UnknownNameError, match="adult, compas"):
        load_group_data("german", tmp_path, sensitive="sex")
    need("compas-scores-two-years.csv")
    with pytest.raises(ConfigError, match="data.sensitive"):
        load_group_data("compas", DATA, sensitive="age")


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTFAIR_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("ROBUSTFAIR_DATA")
    assert default_data_dir() == REPO.parent / "shared" / "data"


def test_download_uses_the_official_urls_and_md5s(monkeypatch, tmp_path):
    calls = []

    def fake_download_file(url, dest, md5=None):
        calls.append((url, Path(dest).name, md5))
        Path(dest).write_text("not the real file")

    fake = types.ModuleType("robustfair.data.download")
    fake.download_file = fake_download_file
    monkeypatch.setitem(sys.modules, "robustfair.data.download", fake)
    download_dataset_files("adult", tmp_path)
    assert calls == [
        (
            "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.data",
            "adult.data",
            "5d7c39d7b8804f071cdd1f2a7c460872",
        ),
        (
            "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.test",
            "adult.test",
            "35238206dfdf7f1fe215bbb874adecdc",
        ),
    ]
    calls.clear()
    need("compas-scores-two-years.csv")
    shutil.copy(DATA / "compas-scores-two-years.csv", tmp_path)
    download_dataset_files("compas", tmp_path)  # a present, valid file is kept
    assert calls == []


def test_any_column_of_a_builtin_dataset_can_be_the_sensitive_attribute():
    need("adult.data", "adult.test", "compas-scores-two-years.csv")
    by_age = load_group_data("adult", DATA, sensitive="age", threshold=40.0)
    assert by_age.group_names == ("age < 40", "age >= 40") and "age" not in by_age.layout.names
    assert by_age.layout.num_features == 85 - 1 + 2  # age leaves, sex (2 columns) joins the features
    assert by_age.layout.integer == (True, True, True, True)
    assert int(by_age.train.s.sum()) == 13167
    by_charge = load_group_data("compas", DATA, sensitive="c_charge_degree", privileged="M")
    assert by_charge.group_names == ("F", "M") and "race=Caucasian" in by_charge.layout.names
    with pytest.raises(ConfigError, match="fixed by its preprocessing"):
        load_group_data("compas", DATA, sensitive="race", continuous=("age",))
