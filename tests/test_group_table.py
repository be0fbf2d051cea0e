"""A user's CSV table: reading, column roles, label and sensitive binarisation, split, encoding,
and the one-line errors for malformed input."""

import dataclasses
import json

import pytest
import torch

from group_tables import COLUMNS, credit_csv, credit_rows, write_csv
from robustfair.errors import ConfigError, DataError
from robustfair.group.config import DataConfig, load_group_config
from robustfair.group.csv_table import read_csv_table
from robustfair.group.data import load_group_data_from_config
from robustfair.group.encoding import TableEncoder


def table(path, **fields):
    fields = {
        "name": "credit",
        "csv": str(path),
        "label": "credit",
        "positive": "good",
        "sensitive": "sex",
        "privileged": "male",
        "drop": ("id",),
        **fields,
    }
    return DataConfig(**fields)


@pytest.fixture
def credit(tmp_path):
    return credit_csv(tmp_path / "credit.csv", n=400)


def test_roles_are_detected_and_the_encoding_is_fit_on_training_rows(credit):
    data = load_group_data_from_config(table(credit))
    info = data.info["columns"]
    assert info["continuous"] == ["age", "duration", "amount"]
    assert info["categorical"] == ["purpose", "housing", "foreign"]  # text, and a two-valued column
    assert info["integer"] == ["age", "duration"]  # whole numbers; amount has cents
    assert data.group_names == ("female", "male") and data.label_names == ("not good", "good")
    assert len(data.train) + len(data.test) == 400 and len(data.test) == pytest.approx(120, abs=2)
    assert not any(n.startswith(("sex", "id", "credit")) for n in data.layout.names)
    cont = data.train.x[:, list(data.layout.continuous)]
    assert torch.allclose(cont.mean(0), torch.zeros(3), atol=1e-5)
    ages = [float(r["age"]) for r in credit_rows(400)]
    assert data.layout.low[0] <= min(ages) and data.layout.high[0] <= max(ages)  # training range
    assert data.layout.integer == (True, True, False)
    # the split is seeded and stratified by (label, group), fixed by split_seed
    again = load_group_data_from_config(table(credit))
    other = load_group_data_from_config(table(credit, split_seed=1))
    assert torch.equal(again.test.x, data.test.x) and data.fingerprint == again.fingerprint
    assert data.fingerprint["test"] != other.fingerprint["test"]


def test_a_numeric_sensitive_column_is_binarised_by_a_threshold(credit):
    data = load_group_data_from_config(table(credit, sensitive="age", privileged=None, threshold=25.0))
    rows = credit_rows(400)
    assert data.group_names == ("age < 25", "age >= 25")
    assert int(data.train.s.sum() + data.test.s.sum()) == sum(int(r["age"]) >= 25 for r in rows)
    assert "age" not in data.layout.names
    kept = load_group_data_from_config(
        table(credit, sensitive="age", privileged=None, threshold=25.0, include_sensitive=True)
    )
    assert kept.layout.protected_block == "age" and "age" in kept.layout.names
    assert not bool(kept.layout.continuous_mask()[kept.layout.names.index("age")])  # never attacked


def test_named_roles_a_given_test_file_and_declared_bounds(tmp_path):
    rows = credit_rows(300)
    train = write_csv(tmp_path / "train.csv", rows[:200])
    test = write_csv(tmp_path / "test.csv", rows[200:])
    data = load_group_data_from_config(
        table(train, test_csv=str(test), categorical=("duration",), integer=("age",), bounds={"amount": [0, 100000]})
    )
    assert (len(data.train), len(data.test)) == (200, 100)
    assert data.info["columns"]["categorical"][0] == "duration"
    assert data.info["columns"]["integer"] == ["age"]
    amount = data.layout.names.index("amount")
    assert (data.layout.low[amount], data.layout.high[amount]) == (0.0, 100000.0)


def test_the_encoder_round_trips_through_json(credit):
    data = load_group_data_from_config(table(credit))
    reloaded = TableEncoder.from_dict(json.loads(json.dumps(data.encoder.to_dict())))
    assert reloaded == data.encoder
    rebuilt = load_group_data_from_config(table(credit), encoder=reloaded)
    assert torch.equal(rebuilt.test.x, data.test.x)


def test_missing_values_drop_their_rows(tmp_path):
    rows = credit_rows(200)
    rows[3]["amount"] = "?"
    rows[7]["purpose"] = ""
    rows[9]["id"] = "NA"  # a dropped column does not count
    data = load_group_data_from_config(table(write_csv(tmp_path / "t.csv", rows)))
    assert len(data.train) + len(data.test) == 198
    assert any("dropped rows with a missing value" in n for n in data.notes)


def test_text_overrides_are_taken_verbatim(credit):
    config = load_group_config(
        "table",
        [
            f"data.csv={credit}",
            "data.name=credit",
            "data.label=credit",
            "data.positive=1",
            "data.privileged=yes",
            "data.sensitive=foreign",
        ],
    )
    assert (config.data.positive, config.data.privileged) == ("1", "yes")


def read_error(tmp_path, text: bytes | str, **fields):
    path = tmp_path / "bad.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises((DataError, ConfigError)) as err:
        load_group_data_from_config(table(path, **fields))
    message = str(err.value)
    assert "\n" not in message
    return message


HEADER = ",".join(COLUMNS) + "\n"
ROW = "1,30,male,12,1000.00,car,own,no,good\n"
OTHER = "2,40,female,24,2000.00,car,rent,no,bad\n"
CELLS = HEADER + (ROW + OTHER + "3,50,female,6,500.00,car,own,no,good\n" + "4,22,male,36,900.00,car,own,no,bad\n") * 3


@pytest.mark.parametrize(
    "text,fields,expected",
    [
        ("", {}, "empty file"),
        (HEADER, {}, "a header but no data rows"),
        (HEADER + ROW + "3,50,male\n", {}, "line 3: expected 9 fields like the header, got 3"),
        ("a,a,b\n1,2,3\n", {}, "column 'a' appears twice"),
        ("a,,b\n1,2,3\n", {}, "column 2 of the header has no name"),
        (b"\xff\xfe\x00a,b\n", {}, "not UTF-8"),
        ('a,b\n"1,2\n', {}, "malformed CSV"),
        (HEADER + ROW + OTHER, {"label": "outcome"}, "label column 'outcome' is not in"),
        (HEADER + ROW + OTHER, {"sensitive": "gender"}, "sensitive column 'gender' is not in"),
        (HEADER + ROW + ROW, {}, "label column 'credit' has one value ('good')"),
        (HEADER + ROW + OTHER, {"positive": "god"}, "did you mean 'good'"),
        (HEADER + ROW + OTHER, {"privileged": "men"}, "data.privileged 'men' does not occur"),
        (HEADER + ROW + ROW.replace("good", "bad"), {}, "sensitive column 'sex' has one value ('male')"),
        (HEADER + ROW + OTHER, {"privileged": None}, "say which group is s = 1 with data.privileged"),
        (HEADER + ROW + OTHER, {"sensitive": "purpose", "privileged": None, "threshold": 3.0}, "numeric"),
        (CELLS, {"continuous": ("purpose",)}, "column 'purpose': 'car' is not a finite number"),
        (HEADER + ROW + OTHER, {"continuous": ("salary",)}, "data.continuous column 'salary' is not in"),
        (CELLS, {"integer": ("purpose",)}, "not a continuous feature column"),
        (HEADER + ROW + OTHER, {}, "the test part is empty"),
    ],
)
def test_malformed_tables_give_one_line_errors(tmp_path, text, fields, expected):
    assert expected in read_error(tmp_path, text, **fields)


def test_a_group_missing_from_a_part_is_an_error(tmp_path):
    rows = credit_rows(100)
    for r in rows[:95]:
        r["sex"] = "male"
    train = write_csv(tmp_path / "train.csv", rows[:95])
    test = write_csv(tmp_path / "test.csv", rows[95:])
    with pytest.raises(DataError, match="the training part has no row of group 'female'"):
        load_group_data_from_config(table(train, test_csv=str(test)))


def test_config_errors_name_the_field(tmp_path, credit):
    with pytest.raises(ConfigError, match="not both"):
        table(credit, threshold=3.0)
    with pytest.raises(ConfigError, match=r"data.bounds.age"):
        table(credit, bounds={"age": [90, 10]})
    with pytest.raises(ConfigError, match="is a built-in dataset"):
        load_group_data_from_config(dataclasses.replace(table(credit), name="compas"))
    with pytest.raises(ConfigError, match="give its CSV file with data.csv"):
        load_group_data_from_config(DataConfig(name="german", sensitive="age"))
    with pytest.raises(DataError, match="no such file"):
        read_csv_table(tmp_path / "nope.csv")
