"""The floor for a lean feature build: the least code that writes the same table.

    python benchmarks/lean_floor.py DATA OUT --workers 2

Per train tile, in ``--workers`` forked processes: read the image and mask, keep every kelp
pixel, every other pixel within 5 px of kelp (Euclidean) and 1,000 random pixels of the
rest, then only at those pixels the 5 bands, the 2nd-place set of 16 spectral indices on
clear water (QA == 0, DEM <= 0, all bands present) and QA/DEMWM, written as one zstd
Parquet file per tile. No statistics, no resumption, no manifest, no checks: that is the
work ``configs/lean.toml`` asks of ``kelp build-features`` less what makes it a pipeline
stage, so ``benchmarks/build_features.py`` prints kelp's speed as a ratio to this one. The
index formulas are kelp's (``kelp.features.indices``): the floor is about the structure of
the build, not about how an index is written.
"""

import argparse
import multiprocessing
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from scipy import ndimage

from kelp.features.indices import compute_index

LEAN_INDICES = (
    "NDVI", "ATSAVI", "AVI", "CI", "ClGreen", "GBNDVI", "GVMI", "IPVI", "KIVU", "MCARI",
    "MVI", "NormNIR", "PNDVI", "SABI", "WDRVI", "mCRIG",
)  # fmt: skip
BANDS = ("swir", "nir", "red", "green", "blue")  # file order: these, then qa, dem
MISSING = -32768


def one_tile(job: tuple[Path, Path, Path, int]) -> int:
    """Write one tile's rows; returns the row count."""
    image_path, mask_path, out, seed = job
    with rasterio.open(image_path) as src:
        image = src.read()
    with rasterio.open(mask_path) as src:
        kelp = src.read(1).astype(bool)
    w = kelp.shape[1]
    ring = ~kelp & (ndimage.distance_transform_edt(~kelp) <= 5) if kelp.any() else kelp & False
    rest = np.flatnonzero(~kelp & ~ring)
    rng = np.random.default_rng([seed, zlib.crc32(image_path.name.encode())])
    drawn = np.sort(rng.choice(rest, min(1000, rest.size), replace=False))
    flat = np.concatenate([np.flatnonzero(kelp), np.flatnonzero(ring), drawn])
    pixels = image.reshape(image.shape[0], -1)[:, flat]
    values = np.where(pixels == MISSING, np.nan, pixels.astype(np.float32))
    bands = dict(zip(BANDS, values[:5], strict=True))
    qa, dem = pixels[5], pixels[6]
    clear = (qa == 0) & ~((dem > 0) & (dem != MISSING)) & np.all(pixels[:5] != MISSING, axis=0)
    rows, cols = np.divmod(flat, w)
    columns = {
        "tile_id": pa.array([image_path.name] * len(flat)),
        "row": pa.array(rows.astype(np.int32)),
        "col": pa.array(cols.astype(np.int32)),
        "label": pa.array(kelp.reshape(-1)[flat].astype(np.uint8)),
        **{name: pa.array(band) for name, band in bands.items()},
    }
    for name in LEAN_INDICES:
        columns[name] = pa.array(np.where(clear, compute_index(name, bands), np.float32(np.nan)))
    columns["qa"] = pa.array((qa == 1).astype(np.float32))
    columns["DEMWM"] = pa.array(np.maximum(values[6], 0).astype(np.float32))
    pq.write_table(pa.table(columns), out / f"{image_path.name}.parquet", compression="zstd")
    return len(flat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    images = sorted((args.data / "train_satellite").glob("*_satellite.tif"))
    masks = args.data / "train_kelp"
    jobs = [(p, masks / p.name.replace("_satellite", "_kelp"), args.out, args.seed) for p in images]
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        rows = sum(pool.imap_unordered(one_tile, jobs, chunksize=4))
    seconds = time.perf_counter() - start
    print(f"lean floor: {len(jobs)} tiles, {rows} rows in {seconds:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
