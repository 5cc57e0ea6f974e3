"""--data PATH.csv: image folders (PNG, DICOM) and tables, generated into tmp_path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swarm.csv_data import load_csv_federation
from swarm.errors import ConfigError, DataError
from swarm.image_folder import read_pixels
from swarm.partition import parse_partition
from swarm.task import DataRequest


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def png(path: Path, value: int, size: int = 12, mode: str = "L") -> str:
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path)
    return path.name


def write_dicom(path: Path, pixels: np.ndarray, *, slope=1.0, intercept=0.0, window=None,
                photometric="MONOCHROME2") -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def folder(tmp_path):
    """Two hospitals of 6 images each (dark = benign, bright = malignant) and 4 global test rows."""
    rows = []
    for s, site in enumerate(("west", "east")):
        for i in range(6):
            label = ("benign", "malignant")[i % 2]
            name = png(tmp_path / f"{site}{i}.png", 40 + 160 * (i % 2) + s)
            rows.append([name, label, "train" if i < 4 else "val", site])
    for i in range(4):
        rows.append([png(tmp_path / f"g{i}.png", 40 + 160 * (i % 2)), ("benign", "malignant")[i % 2], "test", ""])
    return write_csv(tmp_path / "labels.csv", ["image", "label", "split", "site"], rows)


def load(path, partition="sites", n_sites=None, **options):
    request = DataRequest(str(path), n_sites, partition, seed=options.pop("seed", 0), **options)
    return load_csv_federation(request, parse_partition(partition))


def test_an_image_folder_becomes_its_named_sites_with_a_global_test_set(folder):
    fed = load(folder, image_size=8)
    assert [s.name for s in fed.sites] == ["east", "west"]  # sorted
    assert fed.class_names == ("benign", "malignant")
    assert fed.input_shape == (1, 8, 8)
    assert [(len(s.train), len(s.test)) for s in fed.sites] == [(4, 2), (4, 2)]
    assert len(fed.global_test) == 4
    west = fed.sites[1].train
    assert np.allclose(west.x[west.y == 1], 200 / 255) and np.allclose(west.x[west.y == 0], 40 / 255)


def test_without_a_split_column_each_site_keeps_a_seeded_fifth_as_its_test(tmp_path):
    rows = [[png(tmp_path / f"{i}.png", i), i % 2, f"h{i % 3}"] for i in range(30)]
    path = write_csv(tmp_path / "l.csv", ["image", "label", "site"], rows)
    a, b = load(path, seed=1), load(path, seed=1)
    assert [(len(s.train), len(s.test)) for s in a.sites] == [(8, 2)] * 3
    assert len(a.global_test) == 6  # the union of the local tests
    assert all(np.array_equal(x.test.x, y.test.x) for x, y in zip(a.sites, b.sites))
    other = load(path, seed=2)
    assert not all(np.array_equal(x.test.x, y.test.x) for x, y in zip(a.sites, other.sites))


def test_other_partitions_pool_the_rows_and_keep_test_rows_global(folder):
    fed = load(folder, "iid", 3)
    assert len(fed.sites) == 3 and len(fed.global_test) == 4
    assert sum(len(s.train) + len(s.test) for s in fed.sites) == 12


def test_channels_follow_the_files_or_the_option(tmp_path):
    rows = [[png(tmp_path / f"{i}.png", 30 * i, mode="RGB"), i % 2, "a" if i < 4 else "b"] for i in range(8)]
    path = write_csv(tmp_path / "l.csv", ["image", "label", "site"], rows)
    assert load(path).input_shape == (3, 12, 12)
    assert load(path, channels=1, image_size=6).input_shape == (1, 6, 6)


def test_dicom_is_rescaled_windowed_and_monochrome1_inverted(tmp_path):
    raw = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    # values -1000..3000 after rescale; window 1000 +- 1000 maps 0 -> 0, 1000 -> 127.5, 2000 -> 255
    plain = write_dicom(tmp_path / "a.dcm", raw, intercept=-1000, window=(1000, 2000))
    assert read_pixels(plain).tolist() == [[0, 0], [128, 255]]
    inverted = write_dicom(tmp_path / "b.dcm", raw, intercept=-1000, window=(1000, 2000), photometric="MONOCHROME1")
    assert read_pixels(inverted).tolist() == [[255, 255], [128, 0]]  # 255 - 127.5, rounded to even
    assert read_pixels(plain, window=(0, 2000)).tolist() == [[0, 128], [255, 255]]
    unwindowed = write_dicom(tmp_path / "c.dcm", np.array([[10, 20], [30, 10]], dtype=np.uint8))
    assert read_pixels(unwindowed).tolist() == [[0, 128], [255, 0]]  # own min..max


def test_a_16_bit_png_is_stretched_to_8_bits(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[1000, 3000], [5000, 5000]], dtype=np.uint16)).save(path)
    assert read_pixels(path).tolist() == [[0, 128], [255, 255]]


def test_a_dicom_folder_loads_through_the_csv(tmp_path):
    rows = []
    for i in range(8):
        write_dicom(tmp_path / f"{i}.dcm", np.full((16, 16), 100 * (i % 2) + i, dtype=np.uint16), window=(50, 200))
        rows.append([f"{i}.dcm", i % 2, "ab"[i // 4]])
    fed = load(write_csv(tmp_path / "d.csv", ["image", "label", "site"], rows), image_size=8)
    assert fed.input_shape == (1, 8, 8) and len(fed.sites) == 2


@pytest.mark.parametrize("breakage, message", [
    (lambda p: (p / "west1.png").unlink(), r"labels.csv, row 3: .*west1.png: no such file"),
    (lambda p: (p / "west2.png").write_bytes(b"not an image"), r"labels.csv, row 4: .*west2.png: not a readable"),
])
def test_a_missing_or_unreadable_image_names_the_row_and_file(folder, breakage, message):
    breakage(folder.parent)
    with pytest.raises(DataError, match=message):
        load(folder)


def test_a_corrupt_dicom_names_the_row_and_file(tmp_path):
    rows = [[png(tmp_path / f"{i}.png", i), i % 2, "a"] for i in range(4)]
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    rows.append(["bad.dcm", 0, "a"])
    with pytest.raises(DataError, match=r"l.csv, row 6: .*bad.dcm: not a readable image"):
        load(write_csv(tmp_path / "l.csv", ["image", "label", "site"], rows))


@pytest.mark.parametrize("header, rows, error, message", [
    (["image", "site"], [["a.png", "x"]], DataError, "no 'label' column"),
    (["image", "label", "site"], [["a.png", "", "x"]], DataError, "row 2: empty 'label'"),
    (["image", "label", "site"], [["a.png", 0, "x"], ["a.png", 2, "x"]], DataError, "class 1 has no examples"),
    (["image", "label", "site"], [["a.png", 0, "x"], ["a.png", -1, "x"]], DataError, "row 3: label -1 is negative"),
    (["image", "label", "split", "site"], [["a.png", 0, "train", "x"], ["a.png", 1, "fit", "x"]], DataError,
     "row 3: split 'fit'"),
    (["image", "label", "site"], [["a.png", 0, "x"], ["a.png", 1, "x"], ["a.png", 1, "y"]], DataError,
     "site 'y' has 1 row"),
    (["image", "label"], [["a.png", 0], ["a.png", 1]], ConfigError, "'sites' needs a 'site' column"),
    (["age", "label"], [[1, 0], [2, 1]], ConfigError, "needs --label-column"),
])
def test_bad_csvs_are_one_line_errors_naming_the_file(tmp_path, header, rows, error, message):
    png(tmp_path / "a.png", 9)
    path = write_csv(tmp_path / "l.csv", header, rows)
    with pytest.raises(error, match=message) as err:
        load(path)
    assert "\n" not in str(err.value)


def test_the_site_count_must_match_an_explicit_peer_count(folder):
    with pytest.raises(ConfigError, match="has 2 sites .* got 3"):
        load(folder, n_sites=3)


# ------------------------------------------------------------------ tables


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for site, offset in (("a", 0.0), ("b", 100.0)):
        for i in range(10):
            age = "" if i == 3 else f"{offset + rng.normal(50, 5):.1f}"
            smoker = ["yes", "no", ""][i % 3]
            rows.append([age, smoker, ["sick", "well"][i % 2], site])
    return write_csv(tmp_path / "t.csv", ["age", "smoker", "outcome", "site"], rows)


def test_a_table_is_one_hot_imputed_and_standardized_per_site(table):
    fed = load(table, label_column="outcome")
    assert fed.input_shape == (5,)  # age, smoker=no, smoker=yes, age_missing, smoker_missing
    assert fed.class_names == ("sick", "well")
    for site in fed.sites:
        # fitted on the site's own training rows: their age column is centred on 0 at both sites,
        # although site b's ages are 100 years higher
        assert abs(site.train.x[:, 0].mean()) < 1e-5
        assert np.isfinite(site.train.x).all() and np.isfinite(site.test.x).all()


def test_a_missing_label_column_in_a_table_is_named(table):
    with pytest.raises(DataError, match="no 'target' column"):
        load(table, label_column="target")


def test_image_options_on_a_table_are_refused(table):
    with pytest.raises(ConfigError, match="is a table"):
        load(table, label_column="outcome", image_size=8)


def test_simulate_on_an_image_folder_runs_one_peer_per_site_and_reports_the_class_names(folder, tmp_path):
    import json

    from peers.cli import main

    out = tmp_path / "run"
    code = main(["simulate", "--data", str(folder), "--partition", "sites", "--image-size", "8", "--rounds", "2",
                 "--arms", "swarm,fedavg", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["peers"] == 2
    assert report["dataset"]["class_names"] == ["benign", "malignant"]
    assert report["dataset"]["site_names"] == ["east", "west"]
    assert report["dataset"]["input_shape"] == [1, 8, 8]


def test_a_bad_csv_on_the_command_line_is_one_line_and_a_nonzero_exit(folder, capsys):
    from peers.cli import main

    (folder.parent / "east3.png").unlink()
    assert main(["simulate", "--data", str(folder), "--partition", "sites", "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "labels.csv, row" in err and "east3.png" in err


def test_the_natural_site_count_is_read_from_the_csv_text_alone(folder):
    from swarm.config import LearningConfig
    from swarm.task import natural_site_count

    (folder.parent / "west0.png").unlink()  # images are not read
    assert natural_site_count(LearningConfig(data=str(folder), partition="sites")) == 2
    assert natural_site_count(LearningConfig(data="heart")) == 4
    assert natural_site_count(LearningConfig(data=str(folder), partition="iid")) is None


def test_only_large_folders_show_a_progress_bar():
    from swarm.csv_data import PROGRESS_FROM, _progress

    with _progress(PROGRESS_FROM - 1, "small") as small:
        assert small is None
    with _progress(PROGRESS_FROM, "large") as large:
        large(1, PROGRESS_FROM)  # a rich bar on stderr, gone when done (transient)
